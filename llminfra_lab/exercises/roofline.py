"""Lab 2 (the GPU mental model): implement-it tasks and exercises."""
from __future__ import annotations

import random

from llminfra_lab import hardware, roofline
from llminfra_lab.labkit import exercise, task


def _gemm_cases(rng):
    dims = [1, 2, 7, 64, 128, 1000, 4096, 8192]
    return [(rng.choice(dims), rng.choice(dims), rng.choice(dims), rng.choice(["bf16", "fp32", "fp8"]))
            for _ in range(20)]


task(
    "roofline.gemm_intensity",
    "Return the FLOP/byte of C[m,n] = A[m,k] @ B[k,n] with each matrix moved once, "
    "elements of `dtype` ('bf16', 'fp32' or 'fp8').",
    reference=lambda m, k, n, dtype: roofline.gemm_cost(m, k, n, dtype).intensity,
    cases=_gemm_cases,
    # forgets that C is written: counts only the two inputs
    mistake=lambda m, k, n, dtype: 2 * m * k * n / (roofline.DTYPE_BYTES[dtype] * (m * k + k * n)),
)

_CHIPS = ["A100-SXM-80GB", "H100-SXM", "H200-SXM", "B200", "MI300X"]


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
