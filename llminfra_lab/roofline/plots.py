"""The roofline figures: several chips' rooflines with kernels placed on them, and intensity
against problem size. Each returns a matplotlib Figure (matplotlib is imported when drawing)."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from llminfra_lab import hardware
from llminfra_lab.roofline.cost import (
    KernelCost,
    _check_positive,
    _check_sizes,
    attainable_flops,
    attention_cost_flash,
    attention_cost_naive,
    gemm_cost,
)
from llminfra_lab.roofline.measure import MachineMeasurement

__all__ = ["roofline_plot", "intensity_vs_size_plot"]


def roofline_plot(accelerators: Sequence[str] = ("A100-SXM-80GB", "H100-SXM", "B200", "MI300X", "Ascend-910C"),
                  precision: str = "bf16", kernels: Iterable[KernelCost] = (),
                  measured: MachineMeasurement | None = None, on: str | None = None,
                  intensity_range: tuple[float, float] = (0.05, 5000.0), ax=None):
    """Log-log roofline of several accelerators, with kernels placed as points.

    Each kernel is drawn at (intensity, attainable FLOP/s) on the roofline of `on`
    (default: the first accelerator). A `measured` machine adds its own dashed roofline
    and its measured matmul as a point. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    accs = [hardware.accelerator(n) for n in accelerators]
    if not accs and measured is None:
        raise ValueError("give at least one accelerator or a measured machine to draw")
    lo, hi = intensity_range
    _check_positive(intensity_lo=lo, intensity_hi=hi)
    if lo >= hi:
        raise ValueError(f"intensity_range must be increasing, got {intensity_range}")
    kernels = list(kernels)
    for k in kernels:
        if not isinstance(k, KernelCost):
            raise ValueError(f"kernels must be KernelCost values, got {type(k).__name__}")
    target = hardware.accelerator(on) if on is not None else (accs[0] if accs else None)
    if kernels and target is None:
        raise ValueError("placing kernels needs an accelerator (`on` or `accelerators`)")

    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
    else:
        fig = ax.figure
    x = np.logspace(math.log10(lo), math.log10(hi), 256)
    for a in accs:
        peak, bw = a.peak_flops(precision), a.hbm_bytes_per_s
        ax.plot(x, np.minimum(peak, x * bw), lw=1.8, label=f"{a.name} ({precision}, ridge {a.ridge_point(precision):.0f})")
    if measured is not None:
        ax.plot(x, np.minimum(measured.matmul_flops_per_s, x * measured.bandwidth_bytes_per_s), "k--", lw=1.4,
                label=f"this machine ({measured.device}, fp32, ridge {measured.ridge_point:.1f})")
        ax.plot([measured.matmul_intensity], [measured.matmul_flops_per_s], "k*", ms=11)
    for i, k in enumerate(sorted(kernels, key=lambda k: k.intensity)):
        y = attainable_flops(k.intensity, target.peak_flops(precision), target.hbm_bytes_per_s)
        ax.plot([k.intensity], [y], "o", ms=6, color="0.25")
        # alternate labels below-right and above-left so neighbouring kernels stay readable
        offset, align = ((5, -12), "left") if i % 2 == 0 else ((-5, 7), "right")
        ax.annotate(k.name, (k.intensity, y), textcoords="offset points", xytext=offset, fontsize=7, ha=align)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("attainable FLOP/s")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"Rooflines, dense {precision}" + (f"; kernels placed on {target.name}" if kernels else ""),
                 fontsize=9)
    return fig


def intensity_vs_size_plot(sizes: Sequence[int] = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384),
                           head_dim: int = 128, dtype: str = "bf16",
                           ridge_of: Sequence[str] = ("A100-SXM-80GB", "H200-SXM", "H100-SXM"), ax=None):
    """Arithmetic intensity against size: square GEMM (n x n x n), and attention at sequence
    length n (naive vs FlashAttention), with the chosen chips' ridge points as horizontal lines."""
    import matplotlib.pyplot as plt

    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError("sizes must list at least two sizes")
    _check_sizes(**{f"sizes[{i}]": s for i, s in enumerate(sizes)})
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
    else:
        fig = ax.figure
    gemm = [gemm_cost(n, n, n, dtype).intensity for n in sizes]
    naive = [attention_cost_naive(1, 1, n, n, head_dim, dtype).intensity for n in sizes]
    flash = [attention_cost_flash(1, 1, n, n, head_dim, dtype).intensity for n in sizes]
    ax.plot(sizes, gemm, "o-", label="GEMM n x n x n")
    ax.plot(sizes, flash, "s-", label=f"attention, FlashAttention (d={head_dim})")
    ax.plot(sizes, naive, "^-", label=f"attention, naive S and P in HBM (d={head_dim})")
    for i, name in enumerate(ridge_of):
        a = hardware.accelerator(name)
        ax.axhline(a.ridge_point(dtype), ls=":", lw=1, color="0.4")
        x_text = sizes[min(2 * i, len(sizes) - 1)]  # stagger labels so close ridges stay legible
        ax.text(x_text, a.ridge_point(dtype) * 1.06, f"{a.name} ridge", fontsize=7, color="0.3")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("n (matrix size, or sequence length)")
    ax.set_ylabel(f"arithmetic intensity, FLOP/byte ({dtype})")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
