"""Lab 6 (parallelism): implement-it tasks and exercises."""
from __future__ import annotations

import math
import random

import torch

from llminfra_lab import memory, parallel
from llminfra_lab.catalog import model_spec
from llminfra_lab.collectives import BUSBW_FACTORS
from llminfra_lab.labkit import exercise, task

# ----------------------------------------------------------------------------- tasks


def _bubble_cases(rng: random.Random) -> list[dict]:
    cases = []
    for i in range(24):
        name = ("gpipe", "1f1b", "interleaved")[i % 3]
        p = rng.choice([1, 2, 3, 4, 6, 8])
        if name == "interleaved":
            p = max(p, 2)
            cases.append(dict(schedule=name, p=p, m=p * rng.randint(1, 4), v=rng.randint(2, 4)))
        else:
            cases.append(dict(schedule=name, p=p, m=rng.randint(1, 24), v=1))
    return cases


task(
    "parallel.bubble_fraction",
    "Return the pipeline bubble (idle time / busy time per rank) of `schedule` ('gpipe', '1f1b' "
    "or 'interleaved') with p stages, m micro-batches and v model chunks per rank (v = 1 unless "
    "interleaved). It is checked against the bubble measured on the package's simulated timeline.",
    reference=lambda schedule, p, m, v: parallel.pipeline_schedule(schedule, p, m, v).bubble_fraction,
    cases=_bubble_cases,
    mistake=lambda schedule, p, m, v: (p - 1) / m,          # forgets that interleaving shortens each slot
)


def _shard_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(20):
        n = rng.choice([2, 2, 3, 4, 8])
        out_f, in_f = n * rng.randint(1, 4), n * rng.randint(1, 4)
        weight = torch.randn(out_f, in_f, generator=torch.Generator().manual_seed(rng.randrange(2**31)))
        cases.append((weight, rng.randrange(n), n, rng.choice(["column", "row"])))
    return cases


def _shard_swapped(weight, rank, world_size, style):
    """Splits the wrong dimension: columns of the (out, in) weight for a column-parallel layer."""
    return parallel.shard_linear_weight(weight, rank, world_size, "row" if style == "column" else "column")


task(
    "parallel.shard_linear_weight",
    "Return the slice of a bias-free Linear's weight (out_features, in_features) that `rank` of "
    "`world_size` keeps: style 'column' keeps 1/N of the output features, 'row' 1/N of the input features.",
    reference=parallel.shard_linear_weight,
    cases=_shard_cases,
    mistake=_shard_swapped,
)

_MODELS = ("llama-3-8b", "llama-3-70b", "llama-3-405b")


def _layout_cases(rng: random.Random) -> list[dict]:
    cases = []
    for _ in range(20):
        spec = model_spec(rng.choice(_MODELS))
        tp, pp, dp = rng.choice([1, 2, 4, 8]), rng.choice([1, 2, 4, 8, 16]), rng.choice([8, 32, 128])
        cases.append(dict(params=spec.total_params(), n_layers=spec.n_layers, hidden=spec.d_model,
                          heads=spec.n_heads, tp=tp, pp=pp, dp=dp, seq_len=rng.choice([2048, 4096, 8192]),
                          microbatches=rng.choice([1, 4, 16, 64])))
    return cases


def _layout_gb(params, n_layers, hidden, heads, tp, pp, dp, seq_len, microbatches):
    mem = parallel.layout_memory_bytes(params, n_layers, hidden, tp=tp, pp=pp, dp=dp, seq_len=seq_len,
                                       micro_batch=1, microbatches=microbatches, n_heads=heads)
    return sum(mem.values()) / 1e9


def _layout_gb_all_microbatches(params, n_layers, hidden, heads, tp, pp, dp, seq_len, microbatches):
    """Counts every micro-batch in flight, as GPipe would, instead of 1F1B's min(pp, m)."""
    per_layer = 34 * seq_len * hidden / tp
    states = params / (tp * pp) * (2 + 2 + 12 / dp)
    return (states + per_layer * math.ceil(n_layers / pp) * microbatches) / 1e9


task(
    "parallel.layout_memory_gb",
    "Return the GB (1e9 bytes) one GPU of the first pipeline stage needs for a (tp, pp, dp) layout: "
    "BF16 weights and grads and FP32 Adam states of params / (tp * pp) parameters with ZeRO-1 over dp, "
    "plus selective-recompute activations with sequence parallelism (34 s b h / tp bytes per layer, "
    "b = 1) for ceil(n_layers / pp) layers and the micro-batches 1F1B keeps in flight.",
    reference=_layout_gb,
    cases=_layout_cases,
    mistake=_layout_gb_all_microbatches,
    compare=lambda got, expected: isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-3),
)

# ----------------------------------------------------------------------------- exercises


def _budget_params(seed: int) -> dict:
    if seed == 0:
        return {"p": 8, "percent": 5}
    rng = random.Random(seed)
    return {"p": rng.choice([4, 6, 8, 12, 16]), "percent": rng.choice([2, 3, 5, 10])}


exercise(
    "parallel.bubble_budget",
    text=lambda p, percent: (f"A pipeline has p = {p} stages and runs plain 1F1B. What is the smallest number of "
                             f"micro-batches m for which the bubble is strictly below {percent}% of the ideal time?"),
    params=_budget_params,
    solve=lambda p, percent: (p - 1) * 100 // percent + 1,          # (p-1)/m < percent/100, in integers
    mistake=lambda p, percent: p * 100 // percent + 1,              # p/m: forgets that one stage is never idle
    rtol=1e-9,
    hint="the bubble is (p-1)/m; solve (p-1)/m < target for the smallest integer m.",
)


def _traffic_params(seed: int) -> dict:
    if seed == 0:
        return {"model": "llama-3-70b", "tp": 8, "seq_len": 4096}
    rng = random.Random(seed)
    return {"model": rng.choice(_MODELS), "tp": rng.choice([2, 4, 8]), "seq_len": rng.choice([2048, 4096, 8192])}


def _traffic_gb(model, tp, seq_len, all_reduces_per_layer=4):
    spec = model_spec(model)
    activation = seq_len * spec.d_model * 2                         # one BF16 (s, b=1, h) tensor
    return all_reduces_per_layer * BUSBW_FACTORS["all_reduce"](tp) * activation * spec.n_layers / 1e9


exercise(
    "parallel.tp_traffic",
    text=lambda model, tp, seq_len: (
        f"{model} ({model_spec(model).n_layers} layers, d_model {model_spec(model).d_model:,}) runs with TP{tp} and "
        f"micro-batches of one {seq_len:,}-token sequence, BF16 activations, no sequence parallelism. How many GB "
        "(1e9 bytes) does one GPU send in tensor-parallel ring all-reduces per micro-batch, forward and backward?"),
    params=_traffic_params,
    solve=_traffic_gb,
    mistake=lambda model, tp, seq_len: _traffic_gb(model, tp, seq_len, all_reduces_per_layer=2),  # forward only
    rtol=0.02,
    hint="two all-reduces per layer forward (g) and two backward (f), each sending 2(t-1)/t of an (s, h) tensor.",
)


def _acts_params(seed: int) -> dict:
    if seed == 0:
        return {"tp": 8, "pp": 16, "microbatches": 16, "seq_len": 8192}
    rng = random.Random(seed)
    return {"tp": rng.choice([2, 4, 8]), "pp": rng.choice([8, 16, 32]), "microbatches": rng.choice([8, 16, 32]),
            "seq_len": rng.choice([4096, 8192])}


def _acts_gb(tp, pp, microbatches, seq_len, sequence_parallel=True):
    spec = model_spec("llama-3-405b")
    per_layer = memory.activation_bytes_per_layer(seq_len, 1, spec.d_model, spec.n_heads, tensor_parallel=tp,
                                                  sequence_parallel=sequence_parallel, recompute="selective")
    return per_layer * math.ceil(spec.n_layers / pp) * min(pp, microbatches) / 1e9


exercise(
    "parallel.first_stage_activations",
    text=lambda tp, pp, microbatches, seq_len: (
        f"Llama 3 405B (126 layers, d_model 16,384, 128 heads) trains with TP{tp}, PP{pp}, 1F1B, "
        f"{microbatches} micro-batches of one {seq_len:,}-token sequence, sequence parallelism and selective "
        "recomputation (Korthikanti et al.: 34 s b h / t bytes per layer). How many GB (1e9 bytes) of activations "
        "does a GPU of the first stage hold at its peak?"),
    params=_acts_params,
    solve=_acts_gb,
    mistake=lambda tp, pp, microbatches, seq_len: _acts_gb(tp, pp, microbatches, seq_len, sequence_parallel=False),
    rtol=0.02,
    hint="ceil(126 / pp) layers, min(pp, m) micro-batches in flight, and 34 s h / t bytes per layer per micro-batch.",
)
