"""Attention two ways: the textbook algorithm and FlashAttention's tiled one, with their HBM traffic.

Standard (naive) attention materialises the (seq x seq) score matrix S = Q K^T, its softmax
P, and only then O = P V. Each of S and P is written to and read back from HBM, so the
memory traffic grows as seq^2 whatever the head size: Theta(N d + N^2) elements.

Tiled attention (Dao et al. 2022, "FlashAttention") never writes S or P. It walks over
blocks of K and V for each block of Q rows, keeping three running quantities on chip:

    m   the running maximum of each row's scores seen so far       shape (..., block_q)
    l   the running sum of exp(score - m)                          shape (..., block_q)
    acc the running, unnormalised output sum_j exp(s_j - m) v_j    shape (..., block_q, dim)

When a new block raises the maximum from m to m', the old l and acc are rescaled by
exp(m - m') (the "online softmax"), so the result after the last block equals the exact
softmax, with no approximation. HBM traffic falls to Theta(N^2 d^2 / M) for on-chip
memory of M elements, because K and V are streamed once per block of Q rows and a block
of Q rows can be Theta(M / d) long.

`merge_partials` is the same rescaling applied to two finished partial results (each with
its log-sum-exp): flash-decoding (chapter 11) and ring attention (chapter 16) reuse it.

Tensors are (..., seq, dim): any leading dimensions (batch, heads) are carried along.
Everything here is plain PyTorch, to be read; `llminfra_lab.kernels` has the Triton kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from llminfra_lab import precision, roofline
from llminfra_lab.checks import positive_int

__all__ = [
    "HBMTraffic",
    "naive_attention",
    "tiled_attention",
    "online_softmax_step",
    "merge_partials",
    "blocks_for_sram",
    "naive_attention_hbm_elements",
    "naive_attention_hbm_bytes",
    "tiled_attention_hbm_elements",
    "tiled_attention_hbm_bytes",
    "attention_io_table",
    "plot_attention_io",
]


@dataclass
class HBMTraffic:
    """A tally of elements an algorithm reads from and writes to HBM (off-chip memory).

    The algorithms below call `read` and `write` with every tensor they move between
    HBM and on-chip memory, so the tally is a count of what the loops actually do.
    """

    read_elements: int = 0
    write_elements: int = 0

    def read(self, t: torch.Tensor) -> None:
        self.read_elements += t.numel()

    def write(self, t: torch.Tensor) -> None:
        self.write_elements += t.numel()

    @property
    def elements(self) -> int:
        return self.read_elements + self.write_elements

    def bytes(self, dtype_bytes: int = 2) -> int:
        """Total bytes moved if every element is `dtype_bytes` wide (2 for fp16/bf16)."""
        positive_int("dtype_bytes", dtype_bytes)
        return self.elements * dtype_bytes


# --------------------------------------------------------------------------- the algorithms


def naive_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    scale: float | None = None,
    traffic: HBMTraffic | None = None,
) -> torch.Tensor:
    """softmax(Q K^T * scale) V, materialising the full score matrix.

    q: (..., seq_q, dim), k: (..., seq_k, dim), v: (..., seq_k, dim_v) -> (..., seq_q, dim_v).
    `causal` masks key j from query i when j > i (as `is_causal` in
    `torch.nn.functional.scaled_dot_product_attention`). `scale` defaults to 1/sqrt(dim).
    If `traffic` is given, it is charged with the three HBM round trips of the standard
    algorithm (Dao et al. 2022, Algorithm 0): S = QK^T written, read back for P = softmax(S),
    P written and read back with V for O = PV.
    """
    scale = _check_qkv(q, k, v, causal, scale)
    s = (q @ k.transpose(-2, -1)) * scale                 # (..., seq_q, seq_k): on HBM
    if causal:
        s = s.masked_fill(_causal_mask(q.shape[-2], k.shape[-2], 0, 0, q.device), float("-inf"))
    p = torch.softmax(s, dim=-1)
    out = p @ v
    if traffic is not None:
        traffic.read(q), traffic.read(k), traffic.write(s)    # 1. S = Q K^T
        traffic.read(s), traffic.write(p)                     # 2. P = softmax(S)
        traffic.read(p), traffic.read(v), traffic.write(out)  # 3. O = P V
    return out


def tiled_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    block_q: int = 64,
    block_k: int = 64,
    scale: float | None = None,
    return_lse: bool = False,
    traffic: HBMTraffic | None = None,
):
    """FlashAttention-style attention: online softmax over blocks of K and V.

    Same inputs and output as `naive_attention`. For each block of `block_q` query rows
    it loads Q once, streams K and V in blocks of `block_k` rows (stopping at the diagonal
    when `causal`), and writes the output block and its log-sum-exp once. No (seq x seq)
    tensor is ever built: the largest temporary is one (block_q x block_k) tile.

    With `return_lse` it returns (out, lse), lse of shape (..., seq_q): the natural log of
    each row's softmax denominator, sum_j exp(scale * q.k_j). `traffic` is charged with
    every tile the loops load from or store to HBM.
    """
    scale = _check_qkv(q, k, v, causal, scale)
    positive_int("block_q", block_q)
    positive_int("block_k", block_k)
    n_q, n_k = q.shape[-2], k.shape[-2]
    lead = q.shape[:-2]
    out = torch.empty(*lead, n_q, v.shape[-1], dtype=q.dtype, device=q.device)
    lse = torch.empty(*lead, n_q, dtype=torch.float32, device=q.device)

    for i0 in range(0, n_q, block_q):
        i1 = min(i0 + block_q, n_q)
        qi = q[..., i0:i1, :].float()                                  # load once
        m = torch.full((*lead, i1 - i0), float("-inf"), device=q.device)
        l = torch.zeros((*lead, i1 - i0), device=q.device)
        acc = torch.zeros((*lead, i1 - i0, v.shape[-1]), device=q.device)
        if traffic is not None:
            traffic.read(qi)
        # Causal: query i sees keys 0..i, so blocks starting after the last row i1-1 are skipped.
        last_key = min(n_k, i1) if causal else n_k
        for j0 in range(0, last_key, block_k):
            j1 = min(j0 + block_k, n_k)
            kj, vj = k[..., j0:j1, :].float(), v[..., j0:j1, :].float()
            if traffic is not None:
                traffic.read(kj), traffic.read(vj)
            s = (qi @ kj.transpose(-2, -1)) * scale                     # (..., bq, bk) on chip
            if causal:
                s = s.masked_fill(_causal_mask(i1 - i0, j1 - j0, i0, j0, q.device), float("-inf"))
            m, l, acc = _online_softmax_step(m, l, acc, s, vj)
        out_i = (acc / l.unsqueeze(-1)).to(q.dtype)
        lse_i = m + torch.log(l)
        out[..., i0:i1, :] = out_i                                      # store once
        lse[..., i0:i1] = lse_i
        if traffic is not None:
            traffic.write(out_i), traffic.write(lse_i)
    return (out, lse) if return_lse else out


def online_softmax_step(
    m: torch.Tensor, l: torch.Tensor, acc: torch.Tensor, s: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fold one tile of scores into the running softmax: the step FlashAttention repeats.

    m: (..., rows) the running maximum of each row's scores (-inf before the first tile);
    l: (..., rows) the running sum of exp(score - m); acc: (..., rows, dim) the running
    unnormalised output sum_j exp(s_j - m) v_j; s: (..., rows, cols) this tile's scaled
    scores; v: (..., cols, dim) its values. Returns the new (m, l, acc). After the last
    tile, acc / l is the softmax-weighted sum of all values, exactly.
    """
    for name, t in (("m", m), ("l", l), ("acc", acc), ("s", s), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    rows, cols = tuple(s.shape[:-1]), s.shape[-1]
    if s.dim() < 2 or tuple(m.shape) != rows or tuple(l.shape) != rows:
        raise ValueError(f"m and l must have the shape of s without its last axis: s {tuple(s.shape)}, "
                         f"m {tuple(m.shape)}, l {tuple(l.shape)}")
    if v.dim() < 2 or v.shape[-2] != cols or tuple(acc.shape) != (*rows, v.shape[-1]):
        raise ValueError(f"v must be (..., {cols}, dim) and acc (..., rows, dim): s {tuple(s.shape)}, "
                         f"v {tuple(v.shape)}, acc {tuple(acc.shape)}")
    return _online_softmax_step(m, l, acc, s, v)


def _online_softmax_step(m, l, acc, s, v):
    m_new = torch.maximum(m, s.amax(dim=-1))                 # the new running maximum
    # A row whose every score so far is masked keeps m = -inf; shift by 0 there.
    shift = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
    p = torch.exp(s - shift.unsqueeze(-1))                   # this tile's weights
    alpha = torch.exp(m - shift)                             # rescales the old l and acc
    l = alpha * l + p.sum(dim=-1)
    acc = alpha.unsqueeze(-1) * acc + p @ v
    return m_new, l, acc


def merge_partials(
    out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor, lse_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine attention over two disjoint sets of keys into attention over their union.

    out_a, out_b: (..., seq, dim) softmax-normalised outputs over key sets A and B;
    lse_a, lse_b: (..., seq) their log-sum-exps (natural log, of the scaled scores).
    Returns (out, lse) equal to attention over A and B together:

        lse = log(exp(lse_a) + exp(lse_b))
        out = exp(lse_a - lse) * out_a + exp(lse_b - lse) * out_b

    A row that saw no keys in one part carries lse = -inf there and gets weight 0.
    This is the step flash-decoding and ring attention use to join their partial results.
    """
    for name, o, s in (("a", out_a, lse_a), ("b", out_b, lse_b)):
        if not (isinstance(o, torch.Tensor) and isinstance(s, torch.Tensor)):
            raise ValueError(f"out_{name} and lse_{name} must be torch tensors")
        if o.dim() < 1 or tuple(s.shape) != tuple(o.shape[:-1]):
            raise ValueError(
                f"lse_{name} must have the shape of out_{name} without its last (dim) axis: "
                f"out_{name} {tuple(o.shape)} needs lse_{name} {tuple(o.shape[:-1])}, got {tuple(s.shape)}"
            )
    if out_a.shape != out_b.shape:
        raise ValueError(f"out_a and out_b must have the same shape, got {tuple(out_a.shape)} and {tuple(out_b.shape)}")
    return _merge_partials(out_a, lse_a, out_b, lse_b)


def _merge_partials(out_a, lse_a, out_b, lse_b):
    lse_a, lse_b = lse_a.float(), lse_b.float()
    lse = torch.logaddexp(lse_a, lse_b)                      # log(e^lse_a + e^lse_b), overflow-safe
    safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    w_a = torch.where(torch.isfinite(lse_a), torch.exp(lse_a - safe), torch.zeros_like(lse_a))
    w_b = torch.where(torch.isfinite(lse_b), torch.exp(lse_b - safe), torch.zeros_like(lse_b))
    out = w_a.unsqueeze(-1) * out_a.float() + w_b.unsqueeze(-1) * out_b.float()
    return out.to(out_a.dtype), lse


# --------------------------------------------------------------------------- IO analysis


def blocks_for_sram(sram_bytes: int, head_dim: int, dtype_bytes: int = 2) -> int:
    """Rows per tile so that the Q, O, K and V tiles of one step fit in on-chip memory.

    With M = sram_bytes / dtype_bytes elements, four (rows x head_dim) tiles fit when
    rows = floor(M / (4 * head_dim)), FlashAttention's B_c = ceil(M / 4d) (Dao et al. 2022,
    Algorithm 1) rounded down so the tiles really fit. This is an idealised size: it ignores
    the (block_q x block_k) score tile, which is why Algorithm 1 caps its query block at
    min(ceil(M / 4d), d) and real kernels use 64- to 128-row tiles. In `tiled_attention`'s
    query-outer loop the non-causal traffic depends only on block_q, so the bound it gives
    with block_q = rows is the best case of the model, reachable with a smaller block_k.
    """
    positive_int("sram_bytes", sram_bytes)
    positive_int("head_dim", head_dim)
    positive_int("dtype_bytes", dtype_bytes)
    rows = sram_bytes // dtype_bytes // (4 * head_dim)
    if rows < 1:
        raise ValueError(
            f"sram_bytes={sram_bytes} cannot hold four tiles of one {head_dim}-wide row at "
            f"{dtype_bytes} bytes per element; need at least {4 * head_dim * dtype_bytes}"
        )
    return rows


def naive_attention_hbm_elements(seq_len: int, head_dim: int, batch_heads: int = 1) -> int:
    """Elements standard attention moves to and from HBM: 4 N d + 4 N^2 per (batch, head).

    Reads Q, K (2Nd), writes S (N^2); reads S, writes P (2 N^2); reads P, V and writes O
    (N^2 + 2Nd). Causal masking does not help: S is still N x N. Theta(N d + N^2).
    This is chapter 2's count (`roofline.attention_cost_naive`), taken in elements.
    """
    positive_int("seq_len", seq_len)
    positive_int("head_dim", head_dim)
    positive_int("batch_heads", batch_heads)
    cost = roofline.attention_cost_naive(1, batch_heads, seq_len, seq_len, head_dim, dtype="fp32")
    return int(cost.bytes // precision.bytes_per_element("fp32"))


def naive_attention_hbm_bytes(seq_len: int, head_dim: int, dtype_bytes: int = 2, batch_heads: int = 1) -> int:
    """`naive_attention_hbm_elements` in bytes, `dtype_bytes` per element (2 for fp16/bf16)."""
    positive_int("dtype_bytes", dtype_bytes)
    return dtype_bytes * naive_attention_hbm_elements(seq_len, head_dim, batch_heads)


def tiled_attention_hbm_elements(
    seq_len: int, head_dim: int, block_q: int, block_k: int, causal: bool = False, batch_heads: int = 1
) -> int:
    """Elements `tiled_attention` moves to and from HBM, per the loops above.

    Per (batch, head): Q read once (N d), O written once (N d), the log-sum-exp written once
    (N), and for each of the ceil(N / block_q) query blocks the K and V rows it needs read
    again (2 d per key row). Non-causal that is N keys per block, so the total is
    2 N d + N + 2 N d ceil(N / block_q); with block_q = Theta(M / d) this is Theta(N^2 d^2 / M).
    Causal, a query block ending at row r reads the key blocks that start at or before r.
    """
    for name, val in (("seq_len", seq_len), ("head_dim", head_dim), ("block_q", block_q),
                      ("block_k", block_k), ("batch_heads", batch_heads)):
        positive_int(name, val)
    n, d = seq_len, head_dim
    key_rows = 0
    for i0 in range(0, n, block_q):
        if not causal:
            key_rows += n
            continue
        last_row = min(i0 + block_q, n) - 1
        n_blocks = last_row // block_k + 1                 # key blocks starting at or before last_row
        key_rows += min(n, n_blocks * block_k)
    return batch_heads * (2 * n * d + n + 2 * d * key_rows)


def tiled_attention_hbm_bytes(
    seq_len: int, head_dim: int, block_q: int, block_k: int, causal: bool = False,
    dtype_bytes: int = 2, batch_heads: int = 1,
) -> int:
    """`tiled_attention_hbm_elements` in bytes, `dtype_bytes` per element."""
    positive_int("dtype_bytes", dtype_bytes)
    return dtype_bytes * tiled_attention_hbm_elements(seq_len, head_dim, block_q, block_k, causal, batch_heads)


def attention_io_table(
    seq_lens: list[int], head_dim: int = 128, sram_bytes: int = 192 * 1024, dtype_bytes: int = 2
) -> list[dict]:
    """Rows of HBM bytes for naive and tiled attention (one head, non-causal) per sequence length.

    Tiles are sized by `blocks_for_sram`. The default on-chip memory, 192 KiB, is an A100
    SM's shared memory/L1 as quoted by Dao et al. (2022); head_dim 128 is common in LLMs.
    """
    if not seq_lens or any(not isinstance(n, int) or n < 1 for n in seq_lens):
        raise ValueError(f"seq_lens must be a non-empty list of positive ints, got {seq_lens!r}")
    block = blocks_for_sram(sram_bytes, head_dim, dtype_bytes)
    rows = []
    for n in seq_lens:
        naive = naive_attention_hbm_bytes(n, head_dim, dtype_bytes)
        tiled = tiled_attention_hbm_bytes(n, head_dim, block, block, False, dtype_bytes)
        rows.append({"seq_len": n, "block": block, "naive_bytes": naive, "tiled_bytes": tiled,
                     "ratio": naive / tiled})
    return rows


def plot_attention_io(
    seq_lens: list[int] | None = None, head_dim: int = 128, sram_bytes: int = 192 * 1024,
    dtype_bytes: int = 2, block: int | None = None, ax=None,
):
    """Log-log plot of HBM bytes moved by naive and tiled attention against sequence length.

    `block` overrides the SRAM-derived tile size (the lab's slider uses it). Returns the axes.
    """
    import matplotlib.pyplot as plt

    seq_lens = seq_lens or [2 ** p for p in range(8, 17)]
    if block is None:
        block = blocks_for_sram(sram_bytes, head_dim, dtype_bytes)
    positive_int("block", block)
    naive = [naive_attention_hbm_bytes(n, head_dim, dtype_bytes) / 2**20 for n in seq_lens]
    tiled = [tiled_attention_hbm_bytes(n, head_dim, block, block, False, dtype_bytes) / 2**20 for n in seq_lens]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    ax.loglog(seq_lens, naive, "o-", label="naive: 4Nd + 4N² elements")
    ax.loglog(seq_lens, tiled, "s-", label=f"tiled, {block}-row blocks")
    ax.set_xlabel("sequence length N (tokens)")
    ax.set_ylabel("HBM traffic per head (MiB)")
    ax.set_title(f"Attention HBM traffic, head_dim={head_dim}, {8 * dtype_bytes}-bit")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return ax


# --------------------------------------------------------------------------- helpers


def _check_qkv(q, k, v, causal, scale) -> float:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape (..., seq, dim), got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., seq, dim), got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
        if t.shape[-2] < 1 or t.shape[-1] < 1:
            raise ValueError(f"{name} must have seq >= 1 and dim >= 1, got {tuple(t.shape)}")
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2]:
        raise ValueError(
            f"q, k, v must share leading (batch, heads) dims, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same head dim, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same seq length, got {k.shape[-2]} and {v.shape[-2]}")
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be a bool, got {causal!r}")
    if scale is None:
        return 1.0 / math.sqrt(q.shape[-1])
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number or None, got {scale!r}")
    return float(scale)


def _causal_mask(rows: int, cols: int, row0: int, col0: int, device) -> torch.Tensor:
    """True where key (col0 + c) is in the future of query (row0 + r): to be masked."""
    r = torch.arange(row0, row0 + rows, device=device).unsqueeze(-1)
    c = torch.arange(col0, col0 + cols, device=device).unsqueeze(0)
    return c > r
