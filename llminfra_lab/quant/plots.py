"""The chapter's figures: a schematic of the formats and MX blocks, and the data plots."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from llminfra_lab.quant.formats import fake_quant, mx_quantize, nf4_quantize
from llminfra_lab.quant.methods import rtn_weight

__all__ = ["plot_formats_schematic", "plot_error_vs_bits", "plot_outliers", "plot_perplexity_table"]

_LAYOUTS = [("FP32", 8, 23), ("BF16", 8, 7), ("FP16", 5, 10), ("FP8 E5M2", 5, 2), ("FP8 E4M3", 4, 3),
            ("FP4 E2M1", 2, 1)]


def plot_formats_schematic():
    """Schematic: sign/exponent/mantissa bits of each float format, and an MXFP4 block of 32
    E2M1 elements sharing one 8-bit power-of-two scale."""
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(10, 5.6), gridspec_kw={"height_ratios": [3, 1.2]})
    colors = {"s": "#d62728", "e": "#1f77b4", "m": "#2ca02c"}
    for row, (name, e, m) in enumerate(_LAYOUTS):
        y = len(_LAYOUTS) - row
        x = 0.0
        width = 32 / (1 + e + m) * 0.25 if 1 + e + m < 32 else 0.25       # short formats drawn wider
        for kind, n in (("s", 1), ("e", e), ("m", m)):
            for _ in range(n):
                ax.add_patch(plt.Rectangle((x, y), width, 0.7, color=colors[kind], ec="white"))
                x += width
        ax.text(-0.3, y + 0.35, name, ha="right", va="center")
        ax.text(x + 0.2, y + 0.35, f"{1 + e + m} bits: 1 sign, {e} exponent, {m} mantissa", va="center", fontsize=8)
    ax.set_xlim(-2.5, 14)
    ax.set_ylim(0.8, len(_LAYOUTS) + 1)
    ax.axis("off")
    ax.set_title("Float formats (sign red, exponent blue, mantissa green)")
    for i in range(32):
        bx.add_patch(plt.Rectangle((i * 0.3, 0), 0.28, 0.6, color="#2ca02c", ec="white"))
    bx.add_patch(plt.Rectangle((-1.2, 0), 1.0, 0.6, color="#1f77b4"))
    bx.text(-0.7, 0.3, "E8M0\nscale", ha="center", va="center", color="white", fontsize=7)
    bx.text(4.8, -0.35, "32 FP4 E2M1 elements: value = 2^scale x element; 4 + 8/32 = 4.25 bits each",
            ha="center", fontsize=8)
    bx.set_xlim(-2.5, 14)
    bx.set_ylim(-0.6, 0.9)
    bx.axis("off")
    bx.set_title("One MXFP4 block (OCP MX)")
    fig.tight_layout()
    return fig


def plot_error_vs_bits(w: torch.Tensor, seed: int = 0):
    """Relative RMS error of a weight matrix vs bits: INT per tensor / channel / group 32, and
    the 4-bit float formats (NF4, MXFP4, FP8) as points."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    bits = [2, 3, 4, 5, 6, 8]
    rel = lambda q: float((q - w).norm() / w.norm())  # noqa: E731
    for label, fn in (("INT per tensor", lambda b: fake_quant(w, b, True, "tensor")),
                      ("INT per channel", lambda b: rtn_weight(w, b, None, True)),
                      ("INT group 32", lambda b: rtn_weight(w, b, 32, True))):
        ax.semilogy(bits, [rel(fn(b)) for b in bits], "o-", label=label)
    pad = (-w.shape[1]) % 32
    mx = mx_quantize(torch.nn.functional.pad(w, (0, pad)))[0][:, :w.shape[1]]
    ax.semilogy([4], [rel(nf4_quantize(w)[0])], "s", label="NF4 (block 64)")
    ax.semilogy([4.25], [rel(mx)], "^", label="MXFP4 (block 32)")
    ax.set_xlabel("bits per weight")
    ax.set_ylabel("relative RMS error")
    ax.set_title("Quantization error of a tiny-GPT weight")
    ax.legend(fontsize=8)
    return fig


def plot_outliers(absmax: dict[str, torch.Tensor], layer: str):
    """max |x_j| per input feature of one linear layer: the outlier channels SmoothQuant moves."""
    if layer not in absmax:
        raise KeyError(f"unknown layer {layer!r}; valid: {sorted(absmax)[:6]}...")
    fig, ax = plt.subplots(figsize=(7, 3.2))
    v = absmax[layer]
    ax.bar(range(v.numel()), v.tolist(), width=1.0)
    ax.set_xlabel("input feature")
    ax.set_ylabel("max |x| on calibration")
    ax.set_title(f"Activation outliers: input of {layer}")
    return fig


def plot_perplexity_table(rows: list[dict]):
    """Held-out perplexity of RTN, GPTQ and AWQ at 8, 4 and 3 bits (per channel and group 32)."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    base = next(r["ppl"] for r in rows if r["key"] == "fp")
    labels, x = [], 0
    for bits in (8, 4, 3):
        for group in (None, 32):
            for i, m in enumerate(("rtn", "gptq", "awq")):
                r = next(r for r in rows if r["key"] == f"{m}-{bits}-{group}")
                ax.bar(x + i * 0.27, r["ppl"] - base, width=0.25, color=f"C{i}", label=m.upper() if x == 0 else None)
            labels.append(f"{bits}b {'g32' if group else 'ch'}")
            x += 1
    ax.set_xticks([i + 0.27 for i in range(len(labels))])
    ax.set_xticklabels(labels)
    ax.set_ylabel("perplexity increase over BF16")
    ax.set_title("Tiny GPT: weight-only quantization")
    ax.legend()
    return fig



