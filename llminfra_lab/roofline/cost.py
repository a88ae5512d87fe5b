"""Counting FLOPs and bytes, and the roofline bound they imply.

A kernel does `flops` floating-point operations and moves `bytes` to and from HBM.
Its arithmetic intensity is I = flops / bytes (FLOP/byte). On a chip with peak
P FLOP/s and memory bandwidth B bytes/s it can run no faster than

    attainable FLOP/s = min(P, I x B)                (Williams, Waterman, Patterson 2009)

and so takes at least max(flops / P, bytes / B) seconds. The two roofs meet at the
ridge point I* = P / B: left of it a kernel is memory-bound, right of it compute-bound.

Conventions: sizes are element counts; `dtype` is a key of
`llminfra_lab.precision.BYTES_PER_ELEMENT`; FLOPs count a multiply-add as 2; bytes are
HBM (or DRAM) traffic with each operand read once and each result written once unless
the function says otherwise.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from llminfra_lab import hardware
from llminfra_lab.checks import positive_int, positive_number
from llminfra_lab.precision import bytes_per_element

__all__ = [
    "KernelCost", "A100_SRAM_BYTES_PER_SM",
    "gemm_cost", "batched_gemm_cost", "attention_cost_naive", "attention_cost_flash", "flash_block_sizes",
    "elementwise_cost", "reduction_cost",
    "arithmetic_intensity", "attainable_flops", "ridge_point", "bound_time_s", "roofline_time_s", "is_memory_bound",
    "accelerator_rows", "accelerator_table_markdown",
]

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
        bytes_per_element(self.dtype)

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
    e = bytes_per_element(dtype)
    return KernelCost(f"GEMM {m}x{k}x{n}", 2.0 * m * k * n, e * (m * k + k * n + m * n), dtype)


def batched_gemm_cost(batch: int, m: int, k: int, n: int, dtype: str = "bf16",
                      shared_b: bool = False) -> KernelCost:
    """`batch` independent GEMMs C_i = A_i @ B_i (torch.bmm), or with one B shared by all (`shared_b`).

    Independent operands: the batch multiplies FLOPs and bytes alike, so the intensity
    equals one GEMM's. A shared B (the same weight applied to `batch` inputs) is read
    once, so batching raises intensity: it is the same GEMM as (batch*m) x k x n.
    """
    _check_sizes(batch=batch, m=m, k=k, n=n)
    e = bytes_per_element(dtype)
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
    e = bytes_per_element(dtype)
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
    m_elems = sram_bytes / bytes_per_element(dtype)
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
    e = bytes_per_element(dtype)
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
    e = bytes_per_element(dtype)
    return KernelCost(f"elementwise x{n_elements}", float(flops_per_element) * n_elements,
                      e * (n_inputs + n_outputs) * n_elements, dtype)


def reduction_cost(rows: int, cols: int, dtype: str = "bf16") -> KernelCost:
    """Sum over the last axis of a (rows, cols) array: rows x (cols - 1) additions.

    Reads rows x cols elements and writes rows results; intensity is about 1/bytes.
    """
    _check_sizes(rows=rows, cols=cols)
    e = bytes_per_element(dtype)
    return KernelCost(f"reduction {rows}x{cols}", float(rows * (cols - 1)), e * (rows * cols + rows), dtype)


def arithmetic_intensity(flops: float, bytes_moved: float) -> float:
    """FLOP per byte; both arguments must be positive and finite."""
    _check_positive(flops=flops, bytes_moved=bytes_moved)
    return flops / bytes_moved


# ----------------------------------------------------------------------------------------------
# 2. The roofline bound
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


def bound_time_s(flops: float, bytes_moved: float, peak_flops_per_s: float, bandwidth_bytes_per_s: float) -> float:
    """Lower bound on a kernel's run time, seconds: the slower of its compute and its memory time.

    max(flops / peak, bytes / bandwidth): arithmetic and memory traffic overlap, so
    the kernel waits for whichever takes longer (zero FLOPs is allowed: a pure copy).
    """
    if isinstance(flops, bool) or not isinstance(flops, numbers.Real) or not math.isfinite(flops) or flops < 0:
        raise ValueError(f"flops must be a finite number >= 0, got {flops!r}")
    _check_positive(bytes_moved=bytes_moved, peak_flops_per_s=peak_flops_per_s,
                    bandwidth_bytes_per_s=bandwidth_bytes_per_s)
    return max(flops / peak_flops_per_s, bytes_moved / bandwidth_bytes_per_s)


def roofline_time_s(kernel: KernelCost, accelerator: str, precision: str | None = None) -> float:
    """Lower bound on a kernel's run time on `accelerator`: max(flops / peak, bytes / bandwidth).

    `precision` defaults to the kernel's dtype (fp32 maps to the chip's fp32 figure).
    """
    if not isinstance(kernel, KernelCost):
        raise ValueError(f"kernel must be a KernelCost, got {type(kernel).__name__}")
    acc = hardware.accelerator(accelerator)
    return bound_time_s(kernel.flops, kernel.bytes, acc.peak_flops(precision or kernel.dtype), acc.hbm_bytes_per_s)


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
# Validation helpers
# ----------------------------------------------------------------------------------------------

def _check_sizes(**sizes) -> None:
    for name, value in sizes.items():
        positive_int(name, value)


def _check_positive(**values) -> None:
    for name, value in values.items():
        positive_number(name, value)
