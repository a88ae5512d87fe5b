"""The roofline model: will this kernel be limited by arithmetic or by memory?

A kernel does `flops` floating-point operations and moves `bytes` to and from HBM.
Its arithmetic intensity is I = flops / bytes (FLOP/byte). On a chip with peak
P FLOP/s and memory bandwidth B bytes/s, the kernel can run no faster than

    attainable FLOP/s = min(P, I x B)                (Williams, Waterman, Patterson 2009)

The two lines meet at the ridge point I* = P / B. Left of it a kernel is
memory-bound (more FLOP/s only comes from fewer bytes); right of it, compute-bound.

This module counts FLOPs and bytes for the kernels an LLM spends its time in
(GEMM, batched GEMM, attention with and without FlashAttention's tiling,
elementwise ops and reductions), places them on the rooflines of real
accelerators (`llminfra_lab.hardware`), and measures the reader's own machine
(a matmul for P, a STREAM-like kernel for B) so it can go on the same plot.

Conventions: sizes are element counts; `dtype` is a key of `DTYPE_BYTES`;
FLOPs count a multiply-add as 2; bytes are HBM (or DRAM) traffic assuming each
operand is read once and each result written once unless the function says
otherwise. Used in chapter 2 and by later chapters that estimate kernel times.
"""
from __future__ import annotations

import math
import numbers
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from llminfra_lab import hardware
from llminfra_lab.checks import positive_int, positive_number

__all__ = [
    "DTYPE_BYTES", "KernelCost",
    "gemm_cost", "batched_gemm_cost", "attention_cost_naive", "attention_cost_flash", "flash_block_sizes",
    "elementwise_cost", "reduction_cost",
    "arithmetic_intensity", "attainable_flops", "ridge_point", "roofline_time_s", "is_memory_bound",
    "accelerator_rows", "accelerator_table_markdown",
    "roofline_plot", "intensity_vs_size_plot",
    "MachineMeasurement", "measure_cpu", "measure_gpu", "measure_machine",
]

#: Bytes per element of each precision (fp4 packs two values per byte; tf32 is stored as fp32).
DTYPE_BYTES: dict[str, float] = {
    "fp64": 8, "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "fp4": 0.5,
}

# On-chip SRAM per SM that Dao et al. (2022) use in their IO analysis of the A100 (192 KB).
A100_SRAM_BYTES_PER_SM = 192 * 1024


@dataclass(frozen=True)
class KernelCost:
    """FLOPs and HBM bytes of one kernel invocation."""

    name: str
    flops: float          # floating-point operations (multiply-add = 2)
    bytes: float          # bytes read from + written to HBM
    dtype: str = "bf16"

    def __post_init__(self) -> None:
        if isinstance(self.flops, bool) or not isinstance(self.flops, numbers.Real) \
                or not math.isfinite(self.flops) or self.flops < 0:
            raise ValueError(f"flops must be a finite number >= 0, got {self.flops!r}")
        _check_positive(bytes=self.bytes)
        _dtype_bytes(self.dtype)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP/byte."""
        return self.flops / self.bytes


# ----------------------------------------------------------------------------------------------
# 1. Counting FLOPs and bytes
# ----------------------------------------------------------------------------------------------

def gemm_cost(m: int, k: int, n: int, dtype: str = "bf16") -> KernelCost:
    """C[m, n] = A[m, k] @ B[k, n]: 2mkn FLOPs; A, B read once and C written once.

    Intensity = 2mkn / (bytes x (mk + kn + mn)). For a square n x n x n GEMM this is
    2n / (3 x bytes), n / 3 in bf16: it grows with n, which is why big matmuls are compute-bound.
    """
    _check_sizes(m=m, k=k, n=n)
    e = _dtype_bytes(dtype)
    return KernelCost(f"GEMM {m}x{k}x{n}", 2.0 * m * k * n, e * (m * k + k * n + m * n), dtype)


def batched_gemm_cost(batch: int, m: int, k: int, n: int, dtype: str = "bf16",
                      shared_b: bool = False) -> KernelCost:
    """`batch` independent GEMMs C_i = A_i @ B_i (torch.bmm), or with one B shared by all (`shared_b`).

    Independent operands: the batch multiplies FLOPs and bytes alike, so the intensity
    equals one GEMM's. A shared B (the same weight applied to `batch` inputs) is read
    once, so batching raises intensity: it is the same GEMM as (batch*m) x k x n.
    """
    _check_sizes(batch=batch, m=m, k=k, n=n)
    e = _dtype_bytes(dtype)
    b_elems = k * n if shared_b else batch * k * n
    return KernelCost(
        f"batched GEMM {batch}x({m}x{k}x{n})" + (" shared B" if shared_b else ""),
        2.0 * batch * m * k * n, e * (batch * m * k + b_elems + batch * m * n), dtype,
    )


def attention_cost_naive(batch: int, heads: int, seq_q: int, seq_k: int, head_dim: int,
                         dtype: str = "bf16") -> KernelCost:
    """Standard attention that materialises S = QK^T and P = softmax(S) in HBM.

    Per (batch, head), following Dao et al. (2022), Algorithm 0: read Q, K; write S;
    read S, write P; read P, V; write O. HBM traffic is Theta(N d + N^2): the N x N
    matrices dominate for long sequences.
    FLOPs are the two matmuls, 4 x seq_q x seq_k x head_dim (softmax's few FLOPs per
    score are left out, as PyTorch's FLOP counter does).
    """
    _check_sizes(batch=batch, heads=heads, seq_q=seq_q, seq_k=seq_k, head_dim=head_dim)
    e = _dtype_bytes(dtype)
    bh = batch * heads
    flops = 4.0 * bh * seq_q * seq_k * head_dim
    per_head = (seq_q * head_dim + seq_k * head_dim      # read Q, K
                + 2 * seq_q * seq_k                      # write S, read S
                + 2 * seq_q * seq_k                      # write P, read P
                + seq_k * head_dim                       # read V
                + seq_q * head_dim)                      # write O
    return KernelCost(f"attention (naive) N={seq_q}", flops, e * bh * per_head, dtype)


def flash_block_sizes(head_dim: int, sram_bytes: int, dtype: str = "bf16") -> tuple[int, int]:
    """Block sizes (B_r, B_c) of FlashAttention's Algorithm 1 for an SRAM of `sram_bytes`.

    With M = SRAM size in elements: B_c = ceil(M / 4d), B_r = min(B_c, d) (Dao et al. 2022).
    """
    _check_sizes(head_dim=head_dim, sram_bytes=sram_bytes)
    m_elems = sram_bytes / _dtype_bytes(dtype)
    if m_elems < 4 * head_dim:
        raise ValueError(f"sram_bytes={sram_bytes} holds fewer than 4*head_dim={4 * head_dim} {dtype} "
                         "elements; FlashAttention needs at least one row of Q, K, V and O on chip")
    b_c = math.ceil(m_elems / (4 * head_dim))
    return min(b_c, head_dim), b_c


def attention_cost_flash(batch: int, heads: int, seq_q: int, seq_k: int, head_dim: int,
                         dtype: str = "bf16", sram_bytes: int = A100_SRAM_BYTES_PER_SM) -> KernelCost:
    """IO-aware attention (FlashAttention, Dao et al. 2022, Algorithm 1): S and P never reach HBM.

    K and V are loaded once, block by block (T_c = ceil(seq_k / B_c) blocks). For each
    K/V block the algorithm streams all of Q and the running O, plus the fp32 softmax
    statistics l and m, through SRAM: it reads Q_i, O_i, l_i, m_i and writes O_i, l_i,
    m_i. HBM traffic per head is therefore

        bytes = e x 2 N_k d  +  T_c x N_q x (3 e d + 4 x 4)

    which is Theta(N^2 d^2 / M) for SRAM size M (Theorem 2 of the paper), far below
    the naive Theta(N^2) once d^2 < M. FLOPs are the same as the naive kernel's.
    """
    _check_sizes(batch=batch, heads=heads, seq_q=seq_q, seq_k=seq_k, head_dim=head_dim)
    e = _dtype_bytes(dtype)
    _, b_c = flash_block_sizes(head_dim, sram_bytes, dtype)
    t_c = math.ceil(seq_k / b_c)
    bh = batch * heads
    flops = 4.0 * bh * seq_q * seq_k * head_dim
    per_head = e * 2 * seq_k * head_dim + t_c * seq_q * (3 * e * head_dim + 4 * 4)
    return KernelCost(f"attention (flash) N={seq_q}", flops, bh * per_head, dtype)


def elementwise_cost(n_elements: int, dtype: str = "bf16", n_inputs: int = 1, n_outputs: int = 1,
                     flops_per_element: float = 1.0) -> KernelCost:
    """An elementwise op (add, GELU, scale...): reads `n_inputs` and writes `n_outputs` arrays once.

    Intensity = flops_per_element / (bytes x (n_inputs + n_outputs)): 1/6 FLOP/byte for a
    bf16 residual add, 2 for a bf16 GELU at 8 FLOPs per element; far left of every ridge
    point, so such ops are always memory-bound.
    """
    _check_sizes(n_elements=n_elements, n_inputs=n_inputs, n_outputs=n_outputs)
    _check_positive(flops_per_element=flops_per_element)
    e = _dtype_bytes(dtype)
    return KernelCost(f"elementwise x{n_elements}", float(flops_per_element) * n_elements,
                      e * (n_inputs + n_outputs) * n_elements, dtype)


def reduction_cost(rows: int, cols: int, dtype: str = "bf16") -> KernelCost:
    """Sum over the last axis of a (rows, cols) array: rows x (cols - 1) additions.

    Reads rows x cols elements and writes rows results; intensity is about 1/bytes.
    """
    _check_sizes(rows=rows, cols=cols)
    e = _dtype_bytes(dtype)
    return KernelCost(f"reduction {rows}x{cols}", float(rows * (cols - 1)), e * (rows * cols + rows), dtype)


def arithmetic_intensity(flops: float, bytes_moved: float) -> float:
    """FLOP per byte; both arguments must be positive and finite."""
    _check_positive(flops=flops, bytes_moved=bytes_moved)
    return flops / bytes_moved


# ----------------------------------------------------------------------------------------------
# 2. The roofline
# ----------------------------------------------------------------------------------------------

def attainable_flops(intensity: float, peak_flops_per_s: float, bandwidth_bytes_per_s: float) -> float:
    """Roofline: min(peak FLOP/s, intensity x bandwidth), in FLOP/s."""
    _check_positive(intensity=intensity, peak_flops_per_s=peak_flops_per_s,
                    bandwidth_bytes_per_s=bandwidth_bytes_per_s)
    return min(peak_flops_per_s, intensity * bandwidth_bytes_per_s)


def ridge_point(peak_flops_per_s: float, bandwidth_bytes_per_s: float) -> float:
    """The intensity (FLOP/byte) where the memory slope meets the compute roof: peak / bandwidth."""
    _check_positive(peak_flops_per_s=peak_flops_per_s, bandwidth_bytes_per_s=bandwidth_bytes_per_s)
    return peak_flops_per_s / bandwidth_bytes_per_s


def roofline_time_s(kernel: KernelCost, accelerator: str, precision: str | None = None) -> float:
    """Lower bound on a kernel's run time on `accelerator`: max(flops / peak, bytes / bandwidth).

    `precision` defaults to the kernel's dtype (fp32 maps to the chip's fp32 figure).
    """
    if not isinstance(kernel, KernelCost):
        raise ValueError(f"kernel must be a KernelCost, got {type(kernel).__name__}")
    acc = hardware.accelerator(accelerator)
    peak = acc.peak_flops(precision or kernel.dtype)
    return max(kernel.flops / peak, kernel.bytes / acc.hbm_bytes_per_s)


def is_memory_bound(kernel: KernelCost, accelerator: str, precision: str | None = None) -> bool:
    """True when the kernel's intensity lies left of the chip's ridge point."""
    if not isinstance(kernel, KernelCost):
        raise ValueError(f"kernel must be a KernelCost, got {type(kernel).__name__}")
    acc = hardware.accelerator(accelerator)
    return kernel.intensity < acc.ridge_point(precision or kernel.dtype)


def accelerator_rows(names: Sequence[str] | None = None) -> list[dict]:
    """One dict per accelerator: the columns of the chapter's spec table (dense figures)."""
    accs = [hardware.accelerator(n) for n in (names if names is not None else hardware.accelerator_names())]
    if not accs:
        raise ValueError("names must list at least one accelerator")
    rows = []
    for a in accs:
        rows.append({
            "name": a.name, "vendor": a.vendor, "year": a.year,
            "bf16_tflops": a.dense_tflops.get("bf16"), "fp8_tflops": a.dense_tflops.get("fp8"),
            "fp4_tflops": a.dense_tflops.get("fp4"),
            "hbm_gb": a.hbm_gb, "hbm_tbps": a.hbm_tbps, "ridge_bf16": a.ridge_point("bf16"),
            "scaleup_gbps": a.scaleup_gbps, "tdp_w": a.tdp_w, "source": a.source,
        })
    return rows


def accelerator_table_markdown(names: Sequence[str] | None = None) -> str:
    """A MyST Markdown table of `accelerator_rows`, with a {cite} role for each row's source."""
    def fmt(x: float | None, digits: int = 0) -> str:
        if x is None:
            return "-"
        if isinstance(x, float) and math.isnan(x):
            return "n/p"
        return f"{x:,.{digits}f}"

    head = ("| Accelerator | Year | BF16 dense TFLOP/s | FP8 dense TFLOP/s | FP4 dense TFLOP/s | HBM GB "
            "| HBM TB/s | Ridge (BF16) FLOP/B | Scale-up GB/s | Power W | Source |")
    lines = [head, "|" + "---|" * 11]
    for r in accelerator_rows(names):
        lines.append(
            f"| {r['name']} | {r['year']} | {fmt(r['bf16_tflops'], 1)} | {fmt(r['fp8_tflops'], 1)} "
            f"| {fmt(r['fp4_tflops'])} | {fmt(r['hbm_gb'])} | {fmt(r['hbm_tbps'], 2)} | {fmt(r['ridge_bf16'])} "
            f"| {fmt(r['scaleup_gbps'])} | {fmt(r['tdp_w'])} | {{cite:p}}`{r['source']}` |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# 3. Figures
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# 4. Measuring the reader's machine
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MachineMeasurement:
    """Measured fp32 matmul throughput and STREAM-like bandwidths of one device."""

    device: str                               # "cpu" or "cuda:0 (<name>)"
    matmul_n: int                             # square matmul size used
    matmul_flops_per_s: float                 # best of `repeats`
    stream_elements: int                      # fp32 elements per STREAM array
    stream_bytes_per_s: dict[str, float] = field(default_factory=dict)  # copy, scale, add, triad

    def __post_init__(self) -> None:
        _check_sizes(matmul_n=self.matmul_n, stream_elements=self.stream_elements)
        _check_positive(matmul_flops_per_s=self.matmul_flops_per_s)
        missing = set(_STREAM_ARRAYS) - set(self.stream_bytes_per_s)
        if missing:
            raise ValueError(f"stream_bytes_per_s needs the keys {sorted(_STREAM_ARRAYS)}; missing {sorted(missing)}")
        _check_positive(**{f"stream_bytes_per_s[{k!r}]": v for k, v in self.stream_bytes_per_s.items()})

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """The bandwidth used for the roofline: STREAM triad."""
        return self.stream_bytes_per_s["triad"]

    @property
    def ridge_point(self) -> float:
        """Measured ridge point, FLOP/byte (fp32)."""
        return self.matmul_flops_per_s / self.bandwidth_bytes_per_s

    @property
    def matmul_intensity(self) -> float:
        """Arithmetic intensity of the measured matmul (fp32, A, B read and C written once)."""
        return gemm_cost(self.matmul_n, self.matmul_n, self.matmul_n, "fp32").intensity


# Bytes per element that each STREAM kernel moves (fp32 arrays): copy c=a, scale b=s*c,
# add c=a+b, triad a=b+s*c (McCalpin's STREAM counts reads plus writes, no write-allocate).
_STREAM_ARRAYS = {"copy": 2, "scale": 2, "add": 3, "triad": 3}


def measure_cpu(matmul_n: int = 768, stream_elements: int = 6_000_000, repeats: int = 3,
                threads: int | None = None) -> MachineMeasurement:
    """Measure this CPU: fp32 torch.matmul FLOP/s and STREAM copy/scale/add/triad bytes/s.

    Best of `repeats` for each kernel. Arrays of `stream_elements` fp32 values (24 MB at
    the default, 3 arrays) should be much larger than the last-level cache; otherwise
    the figure is cache bandwidth, not DRAM bandwidth. Defaults take about a second.
    `threads` sets torch's intra-op thread count for the measurement only (None keeps the
    current setting); on a busy shared machine one thread often measures more than two.
    """
    import torch

    _check_sizes(matmul_n=matmul_n, stream_elements=stream_elements, repeats=repeats)
    if threads is not None:
        _check_sizes(threads=threads)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return measure_cpu(matmul_n, stream_elements, repeats, None)
        finally:
            torch.set_num_threads(previous)

    def timed(fn) -> float:
        fn()  # warm-up: first touch of pages, thread pool start
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return max(best, 1e-9)

    g = torch.Generator().manual_seed(0)
    a = torch.randn(matmul_n, matmul_n, generator=g)
    b = torch.randn(matmul_n, matmul_n, generator=g)
    c = torch.empty(matmul_n, matmul_n)
    t_mm = timed(lambda: torch.matmul(a, b, out=c))
    flops = 2.0 * matmul_n ** 3 / t_mm

    bw = _stream(torch, stream_elements, "cpu", timed)
    return MachineMeasurement("cpu", matmul_n, flops, stream_elements, bw)


def measure_gpu(matmul_n: int = 4096, stream_elements: int = 64_000_000, repeats: int = 5,
                device: str = "cuda") -> MachineMeasurement:
    """The same measurement on a CUDA GPU, timed with CUDA events (fp32 matmul: TF32 disabled).

    Raises RuntimeError when no CUDA device is available.
    """
    import torch

    _check_sizes(matmul_n=matmul_n, stream_elements=stream_elements, repeats=repeats)
    if not torch.cuda.is_available():
        raise RuntimeError("measure_gpu needs a CUDA device; torch.cuda.is_available() is False")
    dev = torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f"device must be a CUDA device such as 'cuda' or 'cuda:0', got {device!r}")

    def timed(fn) -> float:
        fn()
        torch.cuda.synchronize(dev)
        best = math.inf
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(dev)
            best = min(best, start.elapsed_time(end) / 1e3)
        return max(best, 1e-9)

    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        g = torch.Generator(device=dev).manual_seed(0)
        a = torch.randn(matmul_n, matmul_n, generator=g, device=dev)
        b = torch.randn(matmul_n, matmul_n, generator=g, device=dev)
        c = torch.empty(matmul_n, matmul_n, device=dev)
        t_mm = timed(lambda: torch.matmul(a, b, out=c))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_tf32
    flops = 2.0 * matmul_n ** 3 / t_mm
    bw = _stream(torch, stream_elements, dev, timed)
    idx = dev.index if dev.index is not None else torch.cuda.current_device()
    return MachineMeasurement(f"cuda:{idx} ({torch.cuda.get_device_name(idx)})", matmul_n, flops,
                              stream_elements, bw)


def measure_machine(small: bool = False) -> list[MachineMeasurement]:
    """The CPU, and the GPU when torch sees one. `small` uses tiny sizes (for tests and smoke runs)."""
    import torch

    if not isinstance(small, bool):
        raise ValueError(f"small must be True or False, got {small!r}")
    out = [measure_cpu(64, 100_000, 1) if small else measure_cpu()]
    if torch.cuda.is_available():
        out.append(measure_gpu(256, 1_000_000, 2) if small else measure_gpu())
    return out


def _stream(torch, n: int, device, timed) -> dict[str, float]:
    a = torch.full((n,), 1.0, device=device)
    b = torch.full((n,), 2.0, device=device)
    c = torch.zeros(n, device=device)
    s = 3.0
    kernels = {
        "copy": lambda: c.copy_(a),
        "scale": lambda: torch.mul(c, s, out=b),
        "add": lambda: torch.add(a, b, out=c),
        "triad": lambda: torch.add(b, c, alpha=s, out=a),
    }
    return {name: _STREAM_ARRAYS[name] * 4 * n / timed(fn) for name, fn in kernels.items()}


# ----------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------

def _dtype_bytes(dtype: str) -> float:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {list(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype]


def _check_sizes(**sizes) -> None:
    for name, value in sizes.items():
        positive_int(name, value)


def _check_positive(**values) -> None:
    for name, value in values.items():
        positive_number(name, value)
