"""Quantizing the tiny GPT: every method of methods.py applied to the shipped checkpoint.

    heldout_ids, calibration_ids   held-out stories (the seed chapter 5 evaluates on) and
                                   calibration stories (another seed, never evaluated on)
    quantize_model                 a quantized copy of a GPT: weight-only (RTN, GPTQ, AWQ, NF4,
                                   MXFP4, BitNet), W8A8 (naive or SmoothQuant), LLM.int8(), KV cache
    activation_absmax              the largest |input| per feature of every linear layer
    weight_bytes, kv_bytes_per_token   memory of a method (bytes per element from `precision`)

The embedding (tied with the output head) and the norms stay in full precision, as GPTQ and
AWQ leave them; only the 42 linear layers of the six blocks are quantized.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from llminfra_lab.checks import positive_int
from llminfra_lab.data import stories
from llminfra_lab.model import GPT
from llminfra_lab.precision import bytes_per_element
from llminfra_lab.quant.formats import mx_quantize, nf4_double_quant
from llminfra_lab.quant.methods import (
    awq_search,
    bitnet_ternary,
    gptq_quantize,
    int8_decomposed_matmul,
    quantize_activations,
    quantize_kv,
    rtn_weight,
    smoothquant_scales,
)

__all__ = ["METHODS", "heldout_ids", "calibration_ids", "linear_layers", "collect_inputs", "activation_absmax",
           "quantize_model", "weight_bytes", "kv_bytes_per_token"]

#: method -> what it quantizes; `bits` applies to the weight-only integer methods
METHODS = {
    "rtn": "weights, round to nearest", "gptq": "weights, GPTQ", "awq": "weights, AWQ scale search",
    "nf4": "weights, NF4 blocks of 64 + double quantization", "mxfp4": "weights, MXFP4 (E2M1, blocks of 32)",
    "bitnet": "weights, ternary absmean (post-training)", "w8a8": "weights and activations INT8, per tensor",
    "smoothquant": "W8A8 after SmoothQuant migration (alpha 0.5)", "llm.int8": "LLM.int8() decomposition",
    "kv_int8": "KV cache INT8 per token", "kv_fp8": "KV cache FP8 E4M3 per tensor",
}


def heldout_ids(tokenizer, n_chars: int = 40_000) -> torch.Tensor:
    """Token ids of the held-out stories chapter 5 measures perplexity on (seed data_seed + 2 = 2)."""
    positive_int("n_chars", n_chars)
    return torch.tensor(tokenizer.encode(stories(n_chars, seed=2)), dtype=torch.long)


def calibration_ids(tokenizer, n_seqs: int = 32, seq_len: int = 128) -> torch.Tensor:
    """(n_seqs, seq_len) calibration windows from stories of seed 11 (neither trained nor evaluated on)."""
    positive_int("n_seqs", n_seqs)
    positive_int("seq_len", seq_len)
    ids = tokenizer.encode(stories(n_seqs * seq_len * 6, seed=11))
    if len(ids) < n_seqs * seq_len:
        raise ValueError("not enough calibration text")
    return torch.tensor(ids[:n_seqs * seq_len], dtype=torch.long).reshape(n_seqs, seq_len)


def linear_layers(model: GPT) -> dict[str, nn.Linear]:
    """The quantized layers: every nn.Linear inside the blocks, by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.startswith("blocks.")}


@torch.no_grad()
def collect_inputs(model: GPT, calib: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """Inputs (tokens, in_features) that the layers `names` see on the calibration batch."""
    layers, seen, hooks = linear_layers(model), {}, []
    for n in names:
        hooks.append(layers[n].register_forward_pre_hook(
            lambda mod, args, n=n: seen.__setitem__(n, args[0].reshape(-1, args[0].shape[-1]).clone())))
    try:
        model.eval()
        model(calib)
    finally:
        for h in hooks:
            h.remove()
    return seen


def activation_absmax(model: GPT, calib: torch.Tensor) -> dict[str, torch.Tensor]:
    """max |x_j| over calibration tokens, per input feature j, for every quantized layer."""
    names = list(linear_layers(model))
    return {n: x.abs().amax(0) for n, x in collect_inputs(model, calib, names).items()}


class _ActQuantLinear(nn.Module):
    """A linear layer computing with quantized activations: W8A8 or LLM.int8()."""

    def __init__(self, weight: torch.Tensor, mode: str, smooth: torch.Tensor | None = None):
        super().__init__()
        self.mode, self.smooth = mode, smooth
        self.weight = nn.Parameter(weight, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        if self.mode == "llm.int8":
            y, _ = int8_decomposed_matmul(x, self.weight)
        else:
            if self.smooth is not None:
                x = x / self.smooth
            y = quantize_activations(x, 8) @ self.weight.T
        return y.reshape(*shape[:-1], -1)


@torch.no_grad()
def quantize_model(model: GPT, method: str, bits: int = 4, group_size: int | None = None,
                   calib: torch.Tensor | None = None) -> GPT:
    """A quantized copy of `model` (the original is untouched). Fake quantization: weights are
    stored dequantized in float32, so the arithmetic is what a quantized kernel computes.

    GPTQ and AWQ are sequential: block by block, each layer's calibration inputs come from the
    model whose earlier blocks are already quantized (GPTQ's procedure).
    """
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; valid: {sorted(METHODS)}")
    positive_int("bits", bits)
    if method in ("gptq", "awq", "smoothquant") and calib is None:
        raise ValueError(f"method {method!r} needs calibration ids (calib)")
    q = copy.deepcopy(model).eval()
    layers = linear_layers(q)
    if method.startswith("kv_"):
        fmt = "int8" if method == "kv_int8" else "fp8_e4m3"
        for block in q.blocks:
            for lin in (block.attn.wk, block.attn.wv):       # K and V as written to the cache
                lin.register_forward_hook(lambda m, a, out, fmt=fmt: _kv_hook(out, m, fmt))
        return q
    if method in ("gptq", "awq"):
        for b in range(len(q.blocks)):
            names = [n for n in layers if n.startswith(f"blocks.{b}.")]
            inputs = collect_inputs(q, calib, names)
            for n in names:
                w = layers[n].weight
                w.copy_(gptq_quantize(w, inputs[n], bits, group_size) if method == "gptq"
                        else awq_search(w, inputs[n], bits, group_size)[0])
        return q
    absmax = activation_absmax(q, calib) if method == "smoothquant" else {}
    for name, lin in layers.items():
        w = lin.weight
        if method == "rtn":
            w.copy_(rtn_weight(w, bits, group_size))
        elif method == "nf4":
            w.copy_(nf4_double_quant(w)[0])
        elif method == "mxfp4":
            pad = (-w.shape[1]) % 32                        # a zero pad never changes a block's amax
            w.copy_(mx_quantize(nn.functional.pad(w, (0, pad)), "fp4_e2m1", 32)[0][:, :w.shape[1]])
        elif method == "bitnet":
            w.copy_(bitnet_ternary(w))
        else:                                             # w8a8, smoothquant, llm.int8
            smooth = smoothquant_scales(absmax[name], w) if method == "smoothquant" else None
            wq = rtn_weight(w * smooth if smooth is not None else w, 8, None, symmetric=True)
            parent, attr = name.rsplit(".", 1)
            setattr(q.get_submodule(parent), attr,
                    _ActQuantLinear(w.clone() if method == "llm.int8" else wq, method, smooth))
    return q


def _kv_hook(out: torch.Tensor, lin: nn.Linear, fmt: str) -> torch.Tensor:
    """Quantize a K or V projection output (batch, T, kv_heads * head_dim) per head vector."""
    b, t, d = out.shape
    head_dim = 32 if d % 32 == 0 else d
    t4 = out.reshape(b, t, d // head_dim, head_dim).transpose(1, 2)
    return quantize_kv(t4, fmt).transpose(1, 2).reshape(b, t, d)


def weight_bytes(model: GPT, method: str, bits: int = 4, group_size: int | None = None) -> dict[str, float]:
    """Bytes of the quantized linear weights (codes + scales/zeros) and of the rest in BF16.

    Integer methods store a BF16 scale and a `bits`-bit zero point per group (per row without
    groups); NF4 4.127 bits with double quantization; MXFP4 4 + 8/32 bits; BitNet log2(3) bits
    packed as 2; W8A8 / SmoothQuant / LLM.int8() 8 bits + a BF16 scale per row.
    """
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; valid: {sorted(METHODS)}")
    layers = linear_layers(model)
    bf16 = bytes_per_element("bf16")
    rest = sum(p.numel() for p in model.parameters()) - sum(m.weight.numel() for m in layers.values())
    total = 0.0
    for lin in layers.values():
        out, n = lin.weight.shape
        if method in ("rtn", "gptq", "awq"):
            groups = -(-n // group_size) if group_size else 1
            total += out * n * bits / 8 + out * groups * (bf16 + bits / 8)
        elif method == "nf4":
            total += out * n * nf4_double_quant(torch.zeros(64))[1] / 8
        elif method == "mxfp4":
            total += out * n * (bytes_per_element("fp4") + 1 / 32)
        elif method == "bitnet":
            total += out * n * 2 / 8 + bf16
        elif method.startswith("kv_"):
            total += out * n * bf16
        else:
            total += out * n * bytes_per_element("int8") + out * bf16
    return {"linear": total, "rest_bf16": rest * bf16, "total": total + rest * bf16}


def kv_bytes_per_token(model: GPT, fmt: str = "bf16") -> float:
    """KV-cache bytes per token: 2 (K, V) x layers x kv_heads x head_dim x bytes per element,
    plus a BF16 scale per (token, head) vector for INT8."""
    cfg = model.cfg
    elems = 2 * cfg.n_layer * cfg.n_kv_head * cfg.head_dim
    if fmt == "int8":
        return elems * bytes_per_element("int8") + 2 * cfg.n_layer * cfg.n_kv_head * bytes_per_element("bf16")
    return elems * bytes_per_element(fmt)
