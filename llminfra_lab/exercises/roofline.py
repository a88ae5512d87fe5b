"""Lab 2 (the GPU mental model): implement-it tasks and exercises.

Tasks: the four formulas the chapter turns into code (GEMM intensity, an elementwise op's
intensity, the roofline's attainable FLOP/s, the roofline time bound). Exercises: the
chapter's questions, seeded so that each student can get numbers of their own (seed 0 is
the chapter's).
"""
from __future__ import annotations

import math
import random

from llminfra_lab import hardware, roofline
from llminfra_lab.labkit import exercise, task
from llminfra_lab.precision import bytes_per_element

_DTYPES = ["bf16", "fp32", "fp8", "fp16"]


def _gemm_cases(rng: random.Random) -> list[tuple]:
    dims = [1, 2, 7, 64, 128, 1000, 4096, 8192]
    return [(rng.choice(dims), rng.choice(dims), rng.choice(dims), rng.choice(_DTYPES)) for _ in range(20)]


task(
    "roofline.gemm_intensity",
    "Return the FLOP/byte of C[m,n] = A[m,k] @ B[k,n] with each matrix moved once, "
    "elements of `dtype` ('bf16', 'fp32', 'fp16' or 'fp8'; bytes from precision.bytes_per_element).",
    reference=lambda m, k, n, dtype: roofline.gemm_cost(m, k, n, dtype).intensity,
    cases=_gemm_cases,
    # forgets that C is written: counts only the two inputs
    mistake=lambda m, k, n, dtype: 2 * m * k * n / (bytes_per_element(dtype) * (m * k + k * n)),
)


def _elementwise_cases(rng: random.Random) -> list[tuple]:
    return [(rng.choice([1, 2, 8, 20]), rng.choice([1, 2, 3]), rng.choice([1, 2]), rng.choice(_DTYPES))
            for _ in range(20)]


task(
    "roofline.elementwise_intensity",
    "Return the FLOP/byte of an elementwise op doing `flops_per_element` FLOPs per element, "
    "reading `n_inputs` arrays and writing `n_outputs` arrays of `dtype` once each.",
    reference=lambda flops_per_element, n_inputs, n_outputs, dtype: roofline.elementwise_cost(
        1 << 20, dtype, n_inputs, n_outputs, flops_per_element).intensity,
    cases=_elementwise_cases,
    # counts the inputs it reads but not the outputs it writes
    mistake=lambda flops_per_element, n_inputs, n_outputs, dtype: flops_per_element / (
        bytes_per_element(dtype) * n_inputs),
)


def _roofline_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(20):
        peak = rng.choice([19.5e12, 312e12, 989.5e12, 2250e12, 1e11])
        bw = rng.choice([2.039e12, 3.35e12, 8e12, 5e10])
        intensity = 10 ** rng.uniform(-1, 4)
        cases.append((intensity, peak, bw))
    return cases


task(
    "roofline.attainable_flops",
    "Return the attainable FLOP/s of a kernel of arithmetic intensity `intensity` (FLOP/byte) on a chip "
    "with peak `peak_flops_per_s` and memory bandwidth `bandwidth_bytes_per_s`: the lower of the two roofs.",
    reference=roofline.attainable_flops,
    cases=_roofline_cases,
    # takes the higher roof: as if either compute or memory alone were enough
    mistake=lambda intensity, peak_flops_per_s, bandwidth_bytes_per_s: max(
        peak_flops_per_s, intensity * bandwidth_bytes_per_s),
)


def _time_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(20):
        flops = 10 ** rng.uniform(6, 15)
        bytes_moved = 10 ** rng.uniform(4, 11)
        peak = rng.choice([312e12, 989.5e12, 2250e12, 5e11])
        bw = rng.choice([2.039e12, 3.35e12, 8e12, 5e10])
        cases.append((flops, bytes_moved, peak, bw))
    return cases


task(
    "roofline.bound_time",
    "Return the roofline's lower bound on a kernel's time in seconds: it does `flops` FLOPs and moves "
    "`bytes_moved` bytes on a chip with `peak_flops_per_s` and `bandwidth_bytes_per_s`, and arithmetic "
    "overlaps memory traffic.",
    reference=roofline.bound_time_s,
    cases=_time_cases,
    # adds the two times, as if the kernel never overlapped loads with arithmetic
    mistake=lambda flops, bytes_moved, peak_flops_per_s, bandwidth_bytes_per_s: (
        flops / peak_flops_per_s + bytes_moved / bandwidth_bytes_per_s),
)

# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------

_CHIPS = ["A100-SXM-80GB", "H100-SXM", "H200-SXM", "B200", "B300", "MI300X", "Ascend-910C"]


def _ridge_params(seed: int) -> dict:
    if seed == 0:
        return {"chip": "H100-SXM"}
    return {"chip": random.Random(seed).choice(_CHIPS)}


exercise(
    "roofline.ridge_point",
    text=lambda chip: f"What is the ridge point of the {chip} for dense BF16, in FLOP per byte of HBM traffic?",
    params=_ridge_params,
    solve=lambda chip: hardware.accelerator(chip).ridge_point("bf16"),
    mistake=lambda chip: hardware.accelerator(chip).ridge_point("bf16") * 2,   # the sparse figure
    rtol=0.02,
    hint="peak dense FLOP/s divided by HBM bytes/s; datasheets often print the sparse peak.",
)

_PAIRS = [("H100-SXM", "H200-SXM"), ("A100-SXM-80GB", "H100-SXM"), ("A100-SXM-80GB", "B200"),
          ("B200", "B300"), ("H100-SXM", "MI300X")]


def _speedup_params(seed: int) -> dict:
    if seed == 0:
        return {"slow": "H100-SXM", "fast": "H200-SXM", "d": 8192}
    rng = random.Random(seed)
    slow, fast = rng.choice(_PAIRS)
    return {"slow": slow, "fast": fast, "d": rng.choice([4096, 8192, 16384])}


def _decode_time(chip: str, d: int) -> float:
    return roofline.roofline_time_s(roofline.gemm_cost(1, d, d, "bf16"), chip, "bf16")


exercise(
    "roofline.decode_speedup",
    text=lambda slow, fast, d: (
        f"A decode step for one sequence multiplies a 1 x {d} activation by a {d} x {d} BF16 weight. "
        f"By what factor is its roofline time shorter on the {fast} than on the {slow}? "
        "(time on the first / time on the second)"),
    params=_speedup_params,
    solve=lambda slow, fast, d: _decode_time(slow, d) / _decode_time(fast, d),
    # compares the chips by peak FLOP/s: the wrong roof for a GEMV
    mistake=lambda slow, fast, d: (hardware.accelerator(fast).peak_flops("bf16")
                                   / hardware.accelerator(slow).peak_flops("bf16")),
    rtol=0.02,
    hint="an intensity near 1 FLOP/byte is far left of every ridge: which roof is the kernel under?",
)


def _batch_params(seed: int) -> dict:
    if seed == 0:
        return {"chip": "H100-SXM", "d": 8192}
    rng = random.Random(seed)
    return {"chip": rng.choice(_CHIPS), "d": rng.choice([4096, 8192, 12288, 16384])}


def _smallest_compute_bound_batch(chip: str, d: int) -> int:
    return next(b for b in range(1, 1 << 16) if not roofline.is_memory_bound(roofline.gemm_cost(b, d, d), chip))


exercise(
    "roofline.decode_batch",
    text=lambda chip, d: (
        f"What is the smallest batch B for which a B x {d} x {d} BF16 GEMM is compute-bound on the {chip} "
        "(roofline.is_memory_bound says False)? On paper the intensity is about B for B << d; the exact "
        "count also has the activation and output bytes."),
    params=_batch_params,
    solve=_smallest_compute_bound_batch,
    # the on-paper estimate: the ridge point itself, neglecting activation and output bytes
    mistake=lambda chip, d: math.ceil(hardware.accelerator(chip).ridge_point("bf16")),
    rtol=0.0,
    hint="the paper estimate B ~ ridge point is slightly low: the activation and output bytes grow with B.",
)


def _flash_params(seed: int) -> dict:
    if seed == 0:
        return {"n": 8192, "d": 64}
    rng = random.Random(seed)
    return {"n": rng.choice([2048, 4096, 8192, 16384]), "d": rng.choice([64, 96, 128])}


def _flash_saving(n: int, d: int) -> float:
    naive = roofline.attention_cost_naive(1, 1, n, n, d, "bf16")
    flash = roofline.attention_cost_flash(1, 1, n, n, d, "bf16")
    return naive.bytes / flash.bytes


exercise(
    "roofline.flash_saving",
    text=lambda n, d: (
        f"For one head with N = {n} and d = {d} in BF16, how many times fewer HBM bytes does FlashAttention "
        "(Algorithm 1, the A100's 192 KB of SRAM per SM) move than naive attention?"),
    params=_flash_params,
    solve=_flash_saving,
    # the asymptotic estimate M / 3d^2 (M = SRAM in elements) instead of the exact count
    mistake=lambda n, d: (roofline.A100_SRAM_BYTES_PER_SM / bytes_per_element("bf16")) / (3 * d * d),
    rtol=0.02,
    hint="count both kernels with attention_cost_naive and attention_cost_flash; the M/3d^2 estimate is rough.",
)


def _gelu_params(seed: int) -> dict:
    if seed == 0:
        return {"m": 4096, "n": 8192, "chip": "H100-SXM"}
    rng = random.Random(seed)
    return {"m": rng.choice([1024, 2048, 4096, 8192]), "n": rng.choice([4096, 8192, 14336]),
            "chip": rng.choice(_CHIPS)}


def _gelu_us(m: int, n: int, chip: str) -> float:
    return roofline.roofline_time_s(roofline.elementwise_cost(m * n, "bf16", flops_per_element=8), chip) * 1e6


exercise(
    "roofline.unfused_gelu",
    text=lambda m, n, chip: (
        f"A GEMM writes a {m} x {n} BF16 output; a separate kernel then applies GELU (8 FLOPs per element) "
        f"to it. What is the GELU kernel's roofline time on the {chip}, in microseconds? (This is what "
        "fusing the GELU into the GEMM saves.)"),
    params=_gelu_params,
    solve=_gelu_us,
    # counts the read of the activation but not the write of the result
    mistake=lambda m, n, chip: _gelu_us(m, n, chip) / 2,
    rtol=0.02,
    hint="the GELU is memory-bound: it reads and writes every element once.",
)


_LINKS = {"PCIe Gen5 x16": "host over PCIe Gen5", "NVLink 4": "NVLink 4 (7 peer GPUs)"}


def _copy_params(seed: int) -> dict:
    if seed == 0:
        return {"params_b": 32, "link": "PCIe Gen5 x16"}
    rng = random.Random(seed)
    return {"params_b": rng.choice([7, 8, 14, 32]), "link": rng.choice(sorted(_LINKS))}   # fits in 80 GB


def _link_both_ways(link: str) -> float:
    level = next(lv for lv in roofline.H100_MEMORY_LADDER if lv.name == _LINKS[link])
    return level.bandwidth_bytes_per_s


exercise(
    "roofline.weights_over_link",
    text=lambda params_b, link: (
        f"The BF16 weights of a {params_b}B-parameter model are copied to an H100 over {link}, whose datasheet "
        f"bandwidth ({_link_both_ways(link) / 1e9:.0f} GB/s) counts both directions. At best, how many seconds "
        "does the copy take? (1B = 1e9 parameters; GB = 1e9 bytes)"),
    params=_copy_params,
    solve=lambda params_b, link: params_b * 1e9 * bytes_per_element("bf16") / (_link_both_ways(link) / 2),
    # divides by the both-directions figure: a one-way copy only gets half of it
    mistake=lambda params_b, link: params_b * 1e9 * bytes_per_element("bf16") / _link_both_ways(link),
    rtol=0.02,
    hint="a copy in one direction uses one direction of the link: half the datasheet's bidirectional figure.",
)
