"""Post-training quantization methods, each on one linear layer y = x W^T.

    rtn_weight            round-to-nearest: the baseline every method is measured against
    gptq_quantize         GPTQ (Frantar et al. 2022): quantize columns one by one, spreading
                          each column's error over the not-yet-quantized columns through the
                          inverse Hessian H^-1 of the layer loss, H = 2 X^T X; lazy batches, groups
    awq_search            AWQ (Lin et al. 2023): scale salient input channels up before rounding,
                          by s = mean|x|^alpha, alpha found by grid search on the layer output
    smoothquant_scales    SmoothQuant (Xiao et al. 2022): move activation outliers into the weights,
                          s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)
    int8_decomposed_matmul  LLM.int8() (Dettmers et al. 2022): outlier input features in 16-bit,
                          the rest in INT8 with vector-wise scales
    bitnet_ternary        BitNet b1.58 (Ma et al. 2024): absmean ternary weights {-1, 0, +1} * gamma
    quantize_kv, kv_attention_error   KV-cache INT8 / FP8 and the attention error it causes
"""
from __future__ import annotations

import torch

from llminfra_lab.checks import positive_int, positive_number
from llminfra_lab.model import causal_attention
from llminfra_lab.quant.formats import _int_params, _int_round, fake_quant, round_to_format

__all__ = [
    "rtn_weight", "gptq_quantize", "awq_search", "smoothquant_scales", "quantize_activations",
    "int8_decomposed_matmul", "bitnet_ternary", "quantize_kv", "kv_attention_error", "output_error",
]


def rtn_weight(w: torch.Tensor, bits: int, group_size: int | None = None, symmetric: bool = False) -> torch.Tensor:
    """Round-to-nearest fake-quantized weight: per output channel, or per group of inputs."""
    if group_size is None:
        return fake_quant(w, bits, symmetric, "channel")
    return fake_quant(w, bits, symmetric, "group", group_size)


def gptq_quantize(w: torch.Tensor, x: torch.Tensor, bits: int, group_size: int | None = None,
                  symmetric: bool = False, block_size: int = 128, damp: float = 0.01) -> torch.Tensor:
    """GPTQ: w (out, n) quantized column by column, with calibration inputs x (tokens, n).

    Column i is rounded, and its error e = (w_i - q_i) / [H^-1]_ii is subtracted from the
    remaining columns along row i of the upper Cholesky factor of H^-1 (the OBS update).
    Lazy batches: the update reaches columns beyond the current block of `block_size`
    only once per block, as one matrix product (same result, fewer memory passes).
    Groups: each group's (scale, zero) is fixed when its first column is reached, from the
    already-updated weights. `damp` x mean(diag H) is added to H's diagonal. Computed in float64.
    """
    positive_int("bits", bits)
    positive_int("block_size", block_size)
    positive_number("damp", damp)
    W, X = _check_layer(w, x)
    out, n = W.shape
    if group_size is not None:
        positive_int("group_size", group_size)
    W = W.double().clone()
    H = 2 * X.double().T @ X.double() / X.shape[0]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * torch.diag(H).mean() * torch.eye(n, dtype=H.dtype)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    scale, zero = _int_params(W, bits, symmetric)                # per channel unless groups
    Q = torch.zeros_like(W)
    for i1 in range(0, n, block_size):
        i2 = min(i1 + block_size, n)
        W1, Err1, Hinv1 = W[:, i1:i2].clone(), torch.zeros_like(W[:, i1:i2]), Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if group_size is not None and col % group_size == 0:
                upcoming = torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, :group_size]
                scale, zero = _int_params(upcoming, bits, symmetric)
            wcol = W1[:, i:i + 1]
            q = (_int_round(wcol, scale, zero, bits, symmetric) - zero) * scale
            Q[:, col:col + 1] = q
            err = (wcol - q) / Hinv1[i, i]
            W1[:, i:] -= err @ Hinv1[i:i + 1, i:]
            Err1[:, i:i + 1] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]                      # the lazy batch update
    return Q.to(w.dtype)


def awq_search(w: torch.Tensor, x: torch.Tensor, bits: int, group_size: int | None = None,
               n_grid: int = 20, symmetric: bool = False) -> tuple[torch.Tensor, float]:
    """AWQ: per-input-channel scales s = mean|x_j|^alpha, alpha in {0, 1/n_grid, ..., 1 - 1/n_grid}.

    For each alpha the weight is quantized as Q(W diag(s)) diag(s)^-1 (equal to feeding x / s
    to the scaled weight, which a deployment folds into the previous layer), and the alpha
    with the smallest output error ||x W^T - x Wq^T||^2 wins; alpha = 0 is plain RTN.
    Returns (the fake-quantized weight, the chosen alpha).
    """
    positive_int("n_grid", n_grid)
    W, X = _check_layer(w, x)
    x_mean = X.abs().mean(0).clamp(min=1e-8)
    ref = X @ W.T
    best, best_alpha, best_err = None, 0.0, float("inf")
    for k in range(n_grid):
        alpha = k / n_grid
        s = x_mean.pow(alpha)
        s = s / (s.max() * s.min()).sqrt()
        wq = rtn_weight(W * s, bits, group_size, symmetric) / s
        err = (X @ wq.T - ref).pow(2).mean().item()
        if err < best_err:
            best, best_alpha, best_err = wq, alpha, err
    return best, best_alpha


def smoothquant_scales(x_absmax: torch.Tensor, w: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """SmoothQuant per-input-channel factors s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha).

    x_absmax (n,) from calibration, w (out, n). The layer then computes (X / s)(W diag(s))^T,
    the same product, with activations whose outlier channels are divided down.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if x_absmax.dim() != 1 or w.dim() != 2 or w.shape[1] != x_absmax.numel():
        raise ValueError(f"expected x_absmax (n,) and w (out, n), got {tuple(x_absmax.shape)}, {tuple(w.shape)}")
    w_absmax = w.abs().amax(0)
    return (x_absmax.clamp(min=1e-5).pow(alpha) / w_absmax.clamp(min=1e-5).pow(1 - alpha)).clamp(min=1e-5)


def quantize_activations(x: torch.Tensor, bits: int = 8, per_token: bool = False) -> torch.Tensor:
    """Dynamic symmetric fake quantization of activations: one scale per tensor or per token (row)."""
    positive_int("bits", bits)
    qmax = 2 ** (bits - 1) - 1
    amax = x.abs().amax(-1, keepdim=True) if per_token else x.abs().amax()
    scale = (amax / qmax).clamp(min=1e-12)
    return torch.clamp(torch.round(x / scale), -qmax, qmax) * scale


def int8_decomposed_matmul(x: torch.Tensor, w: torch.Tensor, threshold: float = 6.0) -> tuple[torch.Tensor, int]:
    """LLM.int8(): x (tokens, n) @ w (out, n)^T with mixed-precision decomposition.

    Input features with any |x| >= threshold are multiplied in full precision; the rest in
    INT8 with one absmax scale per row of x and per row of w (vector-wise quantization),
    accumulated exactly in int32-valued floats and rescaled by the outer product of scales.
    Returns (y (tokens, out), number of outlier features).
    """
    positive_number("threshold", threshold)
    W, X = _check_layer(w, x)
    outlier = (X.abs() >= threshold).any(0)
    xr, wr = X[:, ~outlier], W[:, ~outlier]
    sx = (xr.abs().amax(1, keepdim=True) / 127).clamp(min=1e-12)
    sw = (wr.abs().amax(1, keepdim=True) / 127).clamp(min=1e-12)
    qx, qw = torch.round(xr / sx), torch.round(wr / sw)
    y = (qx.double() @ qw.double().T).float() * (sx @ sw.T)
    return y + X[:, outlier] @ W[:, outlier].T, int(outlier.sum())


def bitnet_ternary(w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """BitNet b1.58 absmean quantization: gamma = mean|W|, W~ = clip(round(W / (gamma + eps)), -1, 1) * gamma."""
    W = _as_matrix(w)
    gamma = W.abs().mean()
    return torch.clamp(torch.round(W / (gamma + eps)), -1, 1) * gamma


def quantize_kv(t: torch.Tensor, fmt: str = "int8") -> torch.Tensor:
    """Fake-quantize cached keys or values t (batch, heads, seq, head_dim).

    "int8": symmetric, one scale per (token, head) vector; "fp8_e4m3" / "fp8_e5m2": one
    scale per tensor (amax / max of the format), the way FP8 KV caches keep a per-layer scale.
    """
    if not isinstance(t, torch.Tensor) or t.dim() != 4:
        raise ValueError("t must be a 4-D tensor (batch, heads, seq, head_dim)")
    if fmt == "int8":
        return quantize_activations(t, 8, per_token=True)
    fmax = {"fp8_e4m3": 448.0, "fp8_e5m2": 57344.0}
    if fmt not in fmax:
        raise KeyError(f"unknown KV format {fmt!r}; valid: ['int8', 'fp8_e4m3', 'fp8_e5m2']")
    scale = (t.abs().amax() / fmax[fmt]).clamp(min=1e-12)
    return round_to_format(t / scale, fmt) * scale


def kv_attention_error(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fmt: str = "int8") -> float:
    """Relative error ||A(q, Q(k), Q(v)) - A(q, k, v)|| / ||A(q, k, v)|| of causal attention."""
    ref = causal_attention(q, k, v)
    got = causal_attention(q, quantize_kv(k, fmt), quantize_kv(v, fmt))
    return float((got - ref).norm() / ref.norm())


def output_error(w: torch.Tensor, wq: torch.Tensor, x: torch.Tensor) -> float:
    """Mean squared error of the layer output, mean((x W^T - x Wq^T)^2): what GPTQ and AWQ minimise."""
    return float((x @ (w - wq).T).pow(2).mean())


def _check_layer(w, x) -> tuple[torch.Tensor, torch.Tensor]:
    W = _as_matrix(w)
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != W.shape[1]:
        raise ValueError(f"x must be (tokens, {W.shape[1]}) to match w (out, in) = {tuple(W.shape)}")
    return W, x.float()


def _as_matrix(w) -> torch.Tensor:
    if not isinstance(w, torch.Tensor) or w.dim() != 2 or not w.is_floating_point():
        raise ValueError("w must be a 2-D floating-point tensor (out_features, in_features)")
    return w.float()
