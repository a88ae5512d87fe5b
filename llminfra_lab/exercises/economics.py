"""Lab 1 (the LLM infrastructure map): implement-it tasks and exercises.

Tasks: GPU-hours of a training run from 6ND and MFU; PaLM's FLOPs per token with the
attention term; the decode throughput bound of one replica. Exercises: the chapter's
implied-MFU, serving-cost and budget questions and the lab's MoE and price-curve ones,
each in seeded variants (seed 0 is the chapter's numbers).
"""
from __future__ import annotations

import math
import random

from llminfra_lab import catalog, economics, hardware
from llminfra_lab.labkit import exercise, task

# ------------------------------------------------------------------------------- tasks


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return 10 ** rng.uniform(math.log10(lo), math.log10(hi))


_TRAINING_CHIPS = ("A100-SXM-80GB", "H100-SXM", "H200-SXM", "B200", "MI300X")


def _gpu_hours_cases(rng: random.Random) -> list[tuple]:
    cases = [(70e9, 15e12, hardware.accelerator("H100-SXM").peak_flops("bf16"), 0.4)]
    for _ in range(19):
        chip = hardware.accelerator(rng.choice(_TRAINING_CHIPS))
        cases.append((_log_uniform(rng, 1e8, 1e12), _log_uniform(rng, 1e10, 3e13), chip.peak_flops("bf16"),
                      round(rng.uniform(0.15, 0.65), 2)))
    return cases


def _gpu_hours_reference(n_params, n_tokens, peak_flops_per_s, mfu):
    return economics.gpu_hours(economics.training_flops(n_params, n_tokens), peak_flops_per_s, mfu)


task(
    "economics.training_gpu_hours",
    "Return the GPU-hours to train a dense model of n_params parameters on n_tokens tokens, on GPUs of "
    "peak_flops_per_s (dense FLOP/s each) running at model FLOPs utilization mfu (a fraction): "
    "C = 6 N D FLOPs, delivered at peak x MFU per GPU, 3600 seconds per hour.",
    reference=_gpu_hours_reference,
    cases=_gpu_hours_cases,
    # counts only the forward pass (2 N D), as if no gradients were computed
    mistake=lambda n_params, n_tokens, peak_flops_per_s, mfu: 2 * n_params * n_tokens / (peak_flops_per_s * mfu) / 3600,
)

_DENSE = ("llama-2-7b", "llama-2-70b", "llama-3-8b", "llama-3-70b", "llama-3-405b", "qwen2.5-7b", "qwen2.5-72b")


def _palm_cases(rng: random.Random) -> list[tuple]:
    p = economics.PUBLISHED["palm-540b"]
    cases = [(p["n_params"], p["n_layers"], p["n_heads"], p["head_dim"], p["seq_len"])]
    for _ in range(12):
        spec = catalog.model_spec(rng.choice(_DENSE))
        cases.append((float(spec.total_params()), spec.n_layers, spec.n_heads, spec.head_dim,
                      rng.choice([512, 2048, 4096, 8192, 32768, 131072])))
    for _ in range(7):   # small made-up shapes
        heads, head_dim, layers = rng.choice([4, 8, 16]), rng.choice([32, 64, 128]), rng.randint(2, 24)
        d = heads * head_dim
        cases.append((float(12 * layers * d * d), layers, heads, head_dim, rng.choice([128, 1024, 4096])))
    return cases


task(
    "economics.palm_flops_per_token",
    "Return PaLM's training FLOPs per token, 6 N + 12 L H Q T: n_params (N) weights, n_layers (L), "
    "n_heads (H) attention heads of head_dim (Q), sequence length seq_len (T).",
    reference=economics.palm_flops_per_token,
    cases=_palm_cases,
    # forgets the attention scores: 6N alone
    mistake=lambda n_params, n_layers, n_heads, head_dim, seq_len: 6.0 * n_params,
)

_SERVING_CHIPS = ("A100-SXM-80GB", "H100-SXM", "H200-SXM", "B200", "MI300X")


def _decode_cases(rng: random.Random) -> list[tuple]:
    h100 = hardware.accelerator("H100-SXM")
    cases = [(8.03e9, 16.06e9, 1, h100.peak_flops("bf16"), h100.hbm_bytes_per_s),
             (8.03e9, 16.06e9, 1024, h100.peak_flops("bf16"), h100.hbm_bytes_per_s)]
    for _ in range(18):
        chip = hardware.accelerator(rng.choice(_SERVING_CHIPS))
        n_gpus = rng.choice([1, 2, 4, 8])
        active = _log_uniform(rng, 1e9, 1e11)
        total = active * rng.choice([1, 1, 1, 3.6, 18])          # dense, or an MoE that reads all experts
        cases.append((active, total * rng.choice([1.0, 2.0]), rng.choice([1, 4, 32, 256, 1024, 8192]),
                      n_gpus * chip.peak_flops("bf16"), n_gpus * chip.hbm_bytes_per_s))
    return cases


task(
    "economics.decode_tokens_per_second",
    "Return the best-case decode throughput (tokens/s) of one replica: each step reads weight_bytes from "
    "HBM at hbm_bytes_per_s and does 2 x active_params FLOPs per token for batch_size tokens at "
    "peak_flops_per_s; the step takes as long as the slower of the two.",
    reference=economics.decode_tokens_per_second,
    cases=_decode_cases,
    # only the memory roof: forgets that a large batch becomes compute-bound
    mistake=lambda active_params, weight_bytes, batch_size, peak_flops_per_s, hbm_bytes_per_s:
        batch_size * hbm_bytes_per_s / weight_bytes,
)

# --------------------------------------------------------------------------- exercises


def _tflops(chip: str, precision: str = "bf16") -> float:
    return hardware.accelerator(chip).peak_flops(precision) / 1e12


def _implied_mfu_params(seed: int) -> dict:
    if seed == 0:
        p = economics.PUBLISHED["llama-3-70b"]
        return {"model": "Llama-3-70B", "n_params": p["n_params"], "n_tokens": p["n_tokens"],
                "gpu_hours": p["gpu_hours"], "chip": p["accelerator"], "published": True}
    rng = random.Random(seed)
    chip = rng.choice(("A100-SXM-80GB", "H100-SXM", "H200-SXM", "MI300X"))
    n = rng.choice([7e9, 8e9, 13e9, 34e9, 70e9, 180e9])
    d = rng.choice([2e12, 4e12, 8e12, 15e12])
    hours = economics.gpu_hours(economics.training_flops(n, d), _tflops(chip) * 1e12, rng.uniform(0.2, 0.55))
    return {"model": f"a dense {n / 1e9:.0f}B model", "n_params": n, "n_tokens": d,
            "gpu_hours": float(f"{hours:.2g}"), "chip": chip, "published": False}


def _implied_mfu(n_params, n_tokens, gpu_hours, chip, **_) -> float:
    flops = economics.training_flops(n_params, n_tokens)
    return flops / (gpu_hours * economics.SECONDS_PER_HOUR * _tflops(chip) * 1e12)


def _implied_mfu_text(model, n_params, n_tokens, gpu_hours, chip, published) -> str:
    who = "Meta's model card lists" if published else "A team reports"
    return (f"{who} {gpu_hours / 1e6:g}M {chip} GPU-hours to pre-train {model} (N = {n_params / 1e9:g}B) on "
            f"{n_tokens / 1e12:g}T tokens. Using C = 6ND and the {chip}'s dense BF16 peak "
            f"({_tflops(chip):g} TFLOP/s), what MFU does that imply? Answer as a fraction (0.3 for 30%).")


exercise(
    "economics.implied_mfu",
    text=_implied_mfu_text,
    params=_implied_mfu_params,
    solve=_implied_mfu,
    mistake=lambda **p: _implied_mfu(**p) / 2,        # divides by the sparse (2:4) datasheet peak
    rtol=0.02,
    hint="MFU = 6ND / (GPU-hours x 3600 x dense peak FLOP/s); datasheets often print the sparse peak.",
)


def _attention_mfu_params(seed: int) -> dict:
    if seed == 0:
        spec, seq_len = catalog.model_spec("llama-3-70b"), economics.PUBLISHED["llama-3-70b"]["seq_len"]
        return {**_implied_mfu_params(0), "n_layers": spec.n_layers, "n_heads": spec.n_heads,
                "head_dim": spec.head_dim, "seq_len": seq_len}
    rng = random.Random(seed)
    spec = catalog.model_spec(rng.choice(("llama-2-70b", "llama-3-8b", "llama-3-70b", "llama-3-405b", "qwen2.5-72b")))
    chip = rng.choice(("A100-SXM-80GB", "H100-SXM", "H200-SXM", "MI300X"))
    n, d, seq_len = float(f"{spec.params_published:.3g}"), rng.choice([2e12, 8e12, 15e12]), rng.choice([4096, 8192, 16384, 32768])
    flops = economics.palm_flops_per_token(n, spec.n_layers, spec.n_heads, spec.head_dim, seq_len) * d
    hours = economics.gpu_hours(flops, _tflops(chip) * 1e12, rng.uniform(0.25, 0.55))
    return {"model": spec.name, "n_params": n, "n_tokens": d, "gpu_hours": float(f"{hours:.2g}"), "chip": chip,
            "published": False, "n_layers": spec.n_layers, "n_heads": spec.n_heads, "head_dim": spec.head_dim,
            "seq_len": seq_len}


def _attention_mfu(n_params, n_tokens, gpu_hours, chip, n_layers, n_heads, head_dim, seq_len, **_) -> float:
    per_token = economics.palm_flops_per_token(n_params, n_layers, n_heads, head_dim, seq_len)
    return per_token * n_tokens / (gpu_hours * economics.SECONDS_PER_HOUR * _tflops(chip) * 1e12)


def _attention_mfu_text(n_layers, n_heads, head_dim, seq_len, **p) -> str:
    return (_implied_mfu_text(**p).replace("Using C = 6ND", "Using PaLM's 6N + 12LHQT FLOPs per token")
            + f" The model has L = {n_layers} layers and H = {n_heads} heads of Q = {head_dim}, and trained "
            f"at T = {seq_len} tokens per sequence.")


exercise(
    "economics.implied_mfu_with_attention",
    text=_attention_mfu_text,
    params=_attention_mfu_params,
    solve=_attention_mfu,
    mistake=_implied_mfu,                              # leaves out the attention scores (6ND only)
    rtol=0.02,
    hint="FLOPs = (6N + 12 L H Q T) x D; at 8K context the attention term is no longer a rounding error.",
)


def _serving_params(seed: int) -> dict:
    if seed == 0:
        return {"n_params": 70e9, "n_gpus": 2, "chip": "H100-SXM", "usd_per_gpu_hour": 2.0, "mfu": 0.5}
    rng = random.Random(seed)
    chip = rng.choice(("A100-SXM-80GB", "H100-SXM", "H200-SXM", "MI300X"))
    n = rng.choice([8e9, 13e9, 34e9, 70e9, 110e9])
    fit = math.ceil(2 * n / (hardware.accelerator(chip).hbm_gb * 1e9 * 0.9))
    return {"n_params": n, "n_gpus": max(2, fit * rng.choice([1, 2])), "chip": chip,   # a tensor-parallel replica
            "usd_per_gpu_hour": rng.choice([1.5, 2.0, 2.5, 3.0, 4.0]), "mfu": rng.choice([0.3, 0.4, 0.5, 0.6])}


def _output_cost(n_params, n_gpus, chip, usd_per_gpu_hour, per_gpu_price=False, **_) -> float:
    acc = hardware.accelerator(chip)
    tps = economics.decode_tokens_per_second(n_params, 2 * n_params, 1, n_gpus * acc.peak_flops("bf16"),
                                             n_gpus * acc.hbm_bytes_per_s)
    return economics.cost_per_million_tokens(tps, usd_per_gpu_hour * (1 if per_gpu_price else n_gpus))


def _serving_setup(n_params, n_gpus, chip, usd_per_gpu_hour) -> str:
    acc = hardware.accelerator(chip)
    return (f"A provider serves a dense {n_params / 1e9:g}B model in BF16 (2 bytes per parameter) on {n_gpus} x "
            f"{chip} ({acc.hbm_tbps:g} TB/s of HBM bandwidth and {_tflops(chip):g} dense BF16 TFLOP/s each) at "
            f"USD {usd_per_gpu_hour:g} per GPU-hour.")


exercise(
    "economics.output_token_cost",
    text=lambda mfu, **p: _serving_setup(**p) + " What does an output token cost at decode batch 1, best case, "
                                                "in USD per million tokens?",
    params=_serving_params,
    solve=_output_cost,
    mistake=lambda **p: _output_cost(**p, per_gpu_price=True),    # pays for one GPU, not the replica
    rtol=0.02,
    hint="each decode step reads all 2N bytes once from the replica's aggregate bandwidth; the replica "
         "costs n_gpus x the GPU-hour price.",
)


def _crossover(chip, mfu, **_) -> float:
    # decode at batch b (memory-bound) makes b x bw / (2N) tokens/s; prefill makes peak x mfu / (2N)
    acc = hardware.accelerator(chip)
    return acc.peak_flops("bf16") * mfu / acc.hbm_bytes_per_s


exercise(
    "economics.cost_crossover_batch",
    text=lambda mfu, **p: _serving_setup(**p) + f" Prefill runs at {mfu:.0%} MFU. At what decode batch size "
                                                "does an output token cost as much as an input token?",
    params=_serving_params,
    solve=_crossover,
    mistake=lambda chip, **_: hardware.accelerator(chip).ridge_point("bf16"),   # forgets prefill's MFU
    rtol=0.02,
    hint="memory-bound decode cost falls as 1/batch; set batch x bandwidth / (2N bytes) equal to "
         "peak x MFU / (2N FLOPs).",
)


def _budget_params(seed: int) -> dict:
    if seed == 0:
        return {"usd": 10e6, "usd_per_gpu_hour": 2.5, "mfu": 0.38, "chip": "H100-SXM", "n_tokens": 15e12}
    rng = random.Random(seed)
    return {"usd": rng.choice([2e6, 5e6, 10e6, 20e6, 50e6]), "usd_per_gpu_hour": rng.choice([1.5, 2.0, 2.5, 3.5]),
            "mfu": rng.choice([0.3, 0.35, 0.4, 0.45, 0.5]), "chip": rng.choice(("A100-SXM-80GB", "H100-SXM", "B200")),
            "n_tokens": rng.choice([2e12, 5e12, 10e12, 15e12, 20e12])}


def _budget_flops(usd, usd_per_gpu_hour, mfu, chip, **_) -> float:
    return usd / usd_per_gpu_hour * economics.SECONDS_PER_HOUR * _tflops(chip) * 1e12 * mfu


def _budget_text(usd, usd_per_gpu_hour, mfu, chip, n_tokens) -> str:
    return (f"Your team has USD {usd / 1e6:g}M and rents {chip}s ({_tflops(chip):g} dense BF16 TFLOP/s) at "
            f"USD {usd_per_gpu_hour:g} per GPU-hour, expecting {mfu:.0%} MFU.")


exercise(
    "economics.budget_max_params",
    text=lambda **p: _budget_text(**p) + f" What is the largest dense model (N, in parameters) you can train "
                                         f"on {p['n_tokens'] / 1e12:g}T tokens?",
    params=_budget_params,
    solve=lambda n_tokens, **p: _budget_flops(**p) / (6 * n_tokens),
    mistake=lambda n_tokens, **p: _budget_flops(**p) / (2 * n_tokens),   # forward-pass FLOPs only
    rtol=0.02,
    hint="FLOPs bought = GPU-hours x 3600 x peak x MFU; then N = C / (6D).",
)

exercise(
    "economics.budget_chinchilla_params",
    text=lambda **p: _budget_text(**p) + " If you train a Chinchilla-optimal model with D = 20 N tokens, what "
                                         "N (in parameters) does the budget buy?",
    params=_budget_params,
    solve=lambda **p: math.sqrt(_budget_flops(**p) / 120),
    mistake=lambda **p: math.sqrt(_budget_flops(**p) / 40),               # C = 2ND instead of 6ND
    rtol=0.02,
    hint="C = 6 N D with D = 20 N gives C = 120 N^2.",
)

_MOE_CHIPS = ("H100-SXM", "H800-SXM", "H200-SXM", "B200")


def _moe_params(seed: int) -> dict:
    if seed == 0:
        return {"model": "deepseek-v3", "chip": "H800-SXM", "n_gpus": 16, "precision": "fp8"}
    rng = random.Random(seed)
    model = rng.choice(("deepseek-v3", "mixtral-8x7b"))
    chip = rng.choice(_MOE_CHIPS)
    dtype = rng.choice(("fp8", "bf16"))
    spec, acc = catalog.model_spec(model), hardware.accelerator(chip)
    need = math.ceil(spec.total_params() * (1 if dtype == "fp8" else 2) / (acc.hbm_gb * 1e9 * 0.9))
    return {"model": model, "chip": chip, "n_gpus": 2 ** math.ceil(math.log2(need)), "precision": dtype}


def _moe_crossover(model, chip, n_gpus, precision, dense=False) -> float:
    spec, acc = catalog.model_spec(model), hardware.accelerator(chip)
    weight_bytes = spec.total_params() * (1 if precision == "fp8" else 2)
    flops_params = spec.total_params() if dense else spec.active_params()
    # step time: weight_bytes / bw = batch x 2 x active / peak (both aggregated over n_gpus)
    return acc.peak_flops(precision) * weight_bytes / (2 * flops_params * acc.hbm_bytes_per_s)


def _moe_text(model, chip, n_gpus, precision) -> str:
    spec, acc = catalog.model_spec(model), hardware.accelerator(chip)
    width = "1 byte" if precision == "fp8" else "2 bytes"
    return (f"{model} has {spec.total_params() / 1e9:.1f}B parameters, {spec.active_params() / 1e9:.1f}B of them "
            f"active per token. Served in {precision.upper()} ({width} per parameter, all experts read every "
            f"step) on {n_gpus} x {chip} ({acc.hbm_tbps:g} TB/s and {_tflops(chip, precision):g} dense "
            f"{precision.upper()} TFLOP/s each), at what decode batch does a step become compute-bound?")


exercise(
    "economics.moe_crossover_batch",
    text=_moe_text,
    params=_moe_params,
    solve=_moe_crossover,
    mistake=lambda **p: _moe_crossover(**p, dense=True),   # charges FLOPs for all parameters, as if dense
    rtol=0.02,
    hint="the step reads all the weights but does 2 x active FLOPs per token; the number of GPUs cancels.",
)


def _price_params(seed: int) -> dict:
    if seed == 0:
        return {"old": "text-davinci-003", "new": "gpt-4o-mini"}
    rng = random.Random(seed)
    pairs = [(a.model, b.model) for tier in ("gpt-4-class", "gpt-3.5-class")
             for a in economics.price_history(tier) for b in economics.price_history(tier)
             if b.year - a.year >= 0.5 and economics.blended_price(b) < economics.blended_price(a) / 2]
    old, new = rng.choice(pairs)
    return {"old": old, "new": new}


def _per_year(old, new, annualise=True) -> float:
    rows = {p.model: p for p in economics.PRICE_HISTORY}
    a, b = rows[old], rows[new]
    ratio = economics.blended_price(b) / economics.blended_price(a)
    return ratio ** (1 / (b.year - a.year)) if annualise else ratio


def _price_text(old, new) -> str:
    rows = {p.model: p for p in economics.PRICE_HISTORY}
    a, b = rows[old], rows[new]
    return (f"{old} ({a.date.isoformat()}) listed at USD {a.usd_per_m_input:g} / {a.usd_per_m_output:g} per million "
            f"input / output tokens; {new} ({b.date.isoformat()}) at USD {b.usd_per_m_input:g} / "
            f"{b.usd_per_m_output:g}. Blending 3 input tokens to 1 output token, by what factor was the price "
            f"multiplied per year between the two (e.g. 0.1 for ten times cheaper a year)?")


exercise(
    "economics.price_fall_per_year",
    text=_price_text,
    params=_price_params,
    solve=_per_year,
    mistake=lambda **p: _per_year(**p, annualise=False),   # the total change, not per year
    rtol=0.02,
    hint="factor = (new blended / old blended) ** (1 / years between the dates).",
)
