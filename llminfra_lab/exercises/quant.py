"""Lab 14 (quantization): implement-it tasks and exercises."""
from __future__ import annotations

import random

import torch

from llminfra_lab import quant
from llminfra_lab.labkit import exercise, task
from llminfra_lab.precision import bytes_per_element

# ----------------------------------------------------------------------------- implement-it tasks


def _fp8_cases(rng: random.Random) -> list[tuple]:
    values = quant.format_values("fp8_e4m3")
    finite = values[torch.isfinite(values)]
    ties = (finite.sort().values[:-1] + finite.sort().values[1:]) / 2        # exactly halfway: ties to even
    cases = [(ties,), (torch.tensor([0.0, -0.0, 1e-4, 2.0 ** -9, 2.0 ** -10, 448.0, 460.0, 1e4, -1e4]),)]
    for _ in range(10):
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        cases.append((torch.randn(64, generator=gen) * 2.0 ** rng.randint(-10, 9),))
    return cases


def _fp8_no_subnormals(x: torch.Tensor) -> torch.Tensor:
    a = x.abs()
    _, e = torch.frexp(a)
    quantum = torch.pow(2.0, (e - 1 - 3).float())                  # forgets the subnormal floor
    return torch.copysign(torch.clamp(torch.round(a / quantum) * quantum, max=448.0), x)


task(
    "quant.fp8_e4m3_round",
    "Round a float32 tensor x to the nearest FP8 E4M3 value (3 mantissa bits, bias 7, smallest normal "
    "exponent -6 so the spacing never drops below 2^-9, ties to even, saturating at +-448) and return "
    "the rounded float32 tensor.",
    reference=lambda x: quant.round_to_format(x, "fp8_e4m3"),
    cases=_fp8_cases,
    mistake=_fp8_no_subnormals,
)


def _group_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(10):
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        g = rng.choice([8, 16, 32, 64])
        w = torch.randn(rng.choice([1, 4, 16]), g * rng.choice([1, 2, 4]), generator=gen) + rng.choice([0.0, 0.3])
        cases.append((w, rng.choice([3, 4, 8]), g))
    return cases


def _group_symmetric(w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    return quant.rtn_weight(w, bits, group_size, symmetric=True)


task(
    "quant.rtn_group",
    "Asymmetric round-to-nearest with one (scale, zero) per group of `group_size` consecutive inputs of "
    "each row: lo = min(group, 0), hi = max(group, 0), s = (hi - lo) / (2^bits - 1), z = round(-lo / s), "
    "q = clamp(round(w / s) + z, 0, 2^bits - 1); return the dequantized (q - z) * s, shape of w.",
    reference=lambda w, bits, group_size: quant.rtn_weight(w, bits, group_size),
    cases=_group_cases,
    mistake=_group_symmetric,
)


def _gptq_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(4):
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        n = rng.choice([16, 32])
        mix = torch.randn(n, n, generator=gen) / n ** 0.5 + torch.eye(n)        # correlated inputs
        cases.append((torch.randn(rng.choice([4, 8]), n, generator=gen),
                      torch.randn(256, n, generator=gen) @ mix, rng.choice([3, 4])))
    return cases


def _same_layer_output(got, expected) -> bool:
    """GPTQ in float32 may round a few weights the other way than float64: accept <= 3% of codes
    differing when the result is the right shape and no worse than 1.05x the reference's error."""
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return False
    return bool((got.float() - expected.float()).abs().gt(1e-4).float().mean() <= 0.03)


task(
    "quant.gptq",
    "GPTQ without groups: H = 2 x^T x / tokens plus 1% of mean(diag H) on the diagonal; U = upper Cholesky "
    "factor of H^-1; per-row asymmetric (scale, zero) from w; for each column i: q_i = dequantized "
    "round-to-nearest of w[:, i], e = (w[:, i] - q_i) / U[i, i], w[:, i:] -= outer(e, U[i, i:]). "
    "Return the quantized weight.",
    reference=lambda w, x, bits: quant.gptq_quantize(w, x, bits),
    cases=_gptq_cases,
    mistake=lambda w, x, bits: quant.rtn_weight(w, bits),
    compare=_same_layer_output,
)

# ----------------------------------------------------------------------------- exercises

_FORMATS = [(4, 3, False), (5, 2, True), (3, 4, False), (2, 1, False), (3, 2, False), (2, 3, False)]


def _max_params(seed: int) -> dict:
    if seed == 0:
        return {"ebits": 4, "mbits": 3, "ieee": False}
    e, m, ieee = random.Random(seed).choice(_FORMATS[1:])
    return {"ebits": e, "mbits": m, "ieee": ieee}


def _max_value(ebits: int, mbits: int, ieee: bool) -> float:
    nan = (2 ** (ebits + mbits) - 1) if not ieee and ebits >= 4 else None
    f = quant.Minifloat("x", ebits, mbits, ieee=ieee, nan_code=nan, saturate=not ieee)
    v = quant.format_values(f)
    return float(v[torch.isfinite(v)].max())


exercise(
    "quant.fp_max",
    text=lambda ebits, mbits, ieee: (
        f"A float format has 1 sign bit, {ebits} exponent bits (bias 2^{ebits - 1} - 1) and {mbits} mantissa bits. "
        + ("Like IEEE, the all-ones exponent is reserved for infinity and NaN. " if ieee else
           ("Like E4M3FN, the all-ones exponent holds numbers, except the single all-ones code, which is NaN. "
            if ebits >= 4 else "Every code is a number (no infinity, no NaN). "))
        + "What is the largest finite value?"),
    params=_max_params,
    solve=_max_value,
    mistake=lambda ebits, mbits, ieee: _max_value(ebits, mbits, not ieee) if ebits >= 3
    else (2 - 2.0 ** -mbits) * 2.0 ** (2 ** ebits - 2 - (2 ** (ebits - 1) - 1)),
    rtol=1e-9,
    hint="E4M3FN: exponent field 15 is usable, mantissa 111 there is NaN, so the top is 1.110b x 2^(15-7).",
)


def _mem_params(seed: int) -> dict:
    if seed == 0:
        return {"params_b": 70.6, "bits": 4, "group": 128}
    rng = random.Random(seed)
    return {"params_b": rng.choice([7.6, 8.0, 32.8, 70.6, 405.0]), "bits": rng.choice([3, 4, 8]),
            "group": rng.choice([32, 64, 128])}


exercise(
    "quant.weight_gb",
    text=lambda params_b, bits, group: (
        f"A {params_b}B-parameter model is quantized to INT{bits} with groups of {group}: each group stores a "
        f"BF16 scale and a {bits}-bit zero point. How many GB (1e9 bytes) do the weights take?"),
    params=_mem_params,
    solve=lambda params_b, bits, group: params_b * (bits + (16 + bits) / group) / 8,
    mistake=lambda params_b, bits, group: params_b * bits / 8,                    # forgets the scales
    rtol=0.002,
    hint="bits per weight = bits + (16 + bits) / group.",
)


def _kv_params(seed: int) -> dict:
    if seed == 0:
        return {"layers": 80, "kv_heads": 8, "head_dim": 128, "tokens": 131072, "fmt": "fp8"}
    rng = random.Random(seed)
    return {"layers": rng.choice([32, 48, 64, 80, 126]), "kv_heads": rng.choice([4, 8, 16]),
            "head_dim": rng.choice([64, 128]), "tokens": rng.choice([8192, 32768, 131072]),
            "fmt": rng.choice(["fp8", "bf16", "int4"])}


exercise(
    "quant.kv_gb",
    text=lambda layers, kv_heads, head_dim, tokens, fmt: (
        f"A model has {layers} layers, {kv_heads} KV heads of dimension {head_dim}. How many GB (1e9 bytes) "
        f"does the KV cache of one {tokens:,}-token sequence take in {fmt.upper()} (ignore scales)?"),
    params=_kv_params,
    solve=lambda layers, kv_heads, head_dim, tokens, fmt: (
        2 * layers * kv_heads * head_dim * tokens * bytes_per_element(fmt) / 1e9),
    mistake=lambda layers, kv_heads, head_dim, tokens, fmt: (                      # forgets V
        layers * kv_heads * head_dim * tokens * bytes_per_element(fmt) / 1e9),
    rtol=0.002,
    hint="2 (K and V) x layers x kv_heads x head_dim x tokens x bytes per element.",
)


def _dq_params(seed: int) -> dict:
    if seed == 0:
        return {"block": 64, "block2": 256}
    rng = random.Random(seed)
    return {"block": rng.choice([32, 64, 128]), "block2": rng.choice([128, 256, 512])}


exercise(
    "quant.nf4_bits",
    text=lambda block, block2: (
        f"NF4 stores 4-bit codes with one absmax constant per block of {block} weights. Double quantization "
        f"stores each constant in 8 bits, plus one FP32 constant per {block2} of them. How many bits per "
        "weight in all?"),
    params=_dq_params,
    solve=lambda block, block2: 4 + 8 / block + 32 / (block * block2),
    mistake=lambda block, block2: 4 + 32 / block,                                  # no double quantization
    rtol=1e-6,
    hint="4 + 8 / block + 32 / (block x block2).",
)
