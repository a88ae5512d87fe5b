"""Lab 7 (training frameworks, ZeRO): implement-it tasks and exercises."""
from __future__ import annotations

import math
import random

import torch

from llminfra_lab import memory, zero
from llminfra_lab.labkit import exercise, task

# ----------------------------------------------------------------------------- implement-it tasks


def _state_cases(rng: random.Random) -> list[tuple]:
    cases = [(7.5e9, s, 64, 12) for s in zero.STAGES]                  # the paper's Figure 1
    for _ in range(20):
        cases.append((rng.choice([1.3e8, 7e9, 1.3e10, 7e10, 4.05e11]), rng.choice(zero.STAGES),
                      rng.choice([1, 2, 8, 64, 1000, 1024]), rng.choice([8, 12, 16])))
    return cases


task(
    "zero.bytes_per_gpu",
    "Return the bytes of model states ONE GPU holds: psi parameters, mixed-precision Adam (2-byte "
    "parameters, 2-byte gradients, k bytes of optimizer state per parameter), `stage` 0 (DDP) to 3, "
    "n_gpus data-parallel ranks.",
    reference=lambda psi, stage, n_gpus, k: memory.model_state_bytes(psi, stage, n_gpus, k=k)["total"],
    cases=_state_cases,
    # off by one stage: shards the gradients already at stage 1 and the parameters at stage 2
    mistake=lambda psi, stage, n_gpus, k: (2 * psi / (n_gpus if stage >= 2 else 1)
                                           + 2 * psi / (n_gpus if stage >= 1 else 1)
                                           + k * psi / (n_gpus if stage >= 1 else 1)),
)


def _shard_cases(rng: random.Random) -> list[tuple]:
    cases = [(10, 4, 3), (8, 4, 1), (1, 3, 2), (90_432, 2, 1)]
    for _ in range(20):
        world = rng.choice([1, 2, 3, 4, 7, 8, 64])
        cases.append((rng.randint(1, 5000), world, rng.randrange(world)))
    return cases


def _shard_without_padding(numel: int, world_size: int, rank: int) -> tuple[int, int]:
    per_rank = numel // world_size                                    # floor: the remainder is lost
    return rank * per_rank, (rank + 1) * per_rank


task(
    "zero.shard_range",
    "Return (start, stop): the slice of a flat buffer of `numel` parameters that rank `rank` of "
    "`world_size` owns. The buffer is padded with zeros to a multiple of world_size so that every "
    "rank owns the same number of elements.",
    reference=zero.shard_range,
    cases=_shard_cases,
    mistake=_shard_without_padding,
)


def _adam_reference(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps):
    param, exp_avg, exp_avg_sq = param.clone(), exp_avg.clone(), exp_avg_sq.clone()
    zero.adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps)
    return param, exp_avg, exp_avg_sq


def _adam_without_bias_correction(param, grad, exp_avg, exp_avg_sq, step, lr, betas, eps):
    m = betas[0] * exp_avg + (1 - betas[0]) * grad
    v = betas[1] * exp_avg_sq + (1 - betas[1]) * grad * grad
    return param - lr * m / (v.sqrt() + eps), m, v


def _adam_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(12):
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        n = rng.choice([1, 5, 37, 256])
        step = rng.choice([1, 2, 3, 10, 1000])
        exp_avg = torch.randn(n, generator=gen) * 0.1 if step > 1 else torch.zeros(n)
        exp_avg_sq = torch.rand(n, generator=gen) * 0.01 if step > 1 else torch.zeros(n)
        cases.append((torch.randn(n, generator=gen), torch.randn(n, generator=gen), exp_avg, exp_avg_sq,
                      step, rng.choice([1e-3, 3e-2]), (0.9, rng.choice([0.95, 0.999])), 1e-8))
    return cases


task(
    "zero.adam_on_shard",
    "One Adam step on this rank's shard: given param, grad, exp_avg, exp_avg_sq (1-D tensors of the "
    "same length), step (>= 1), lr, betas = (beta1, beta2) and eps, return the new "
    "(param, exp_avg, exp_avg_sq), with torch.optim.Adam's bias correction.",
    reference=_adam_reference,
    cases=_adam_cases,
    mistake=_adam_without_bias_correction,
)

# ----------------------------------------------------------------------------- exercises

_MODELS = [7e9, 1.3e10, 3.4e10, 7e10, 1.8e11, 4.05e11]


def _min_gpus_params(seed: int) -> dict:
    if seed == 0:
        return {"psi": 70e9, "budget_gb": 60}
    rng = random.Random(seed)
    return {"psi": rng.choice(_MODELS[2:]), "budget_gb": rng.choice([40, 50, 60, 70])}


def _min_gpus(psi: float, budget_gb: float, bytes_per_param: float) -> int:
    return math.ceil(bytes_per_param * psi / (budget_gb * 1e9))


exercise(
    "zero.zero3_min_gpus",
    text=lambda psi, budget_gb: (
        f"A {psi / 1e9:g}B-parameter model trains with mixed-precision Adam (K = 12). With ZeRO-3, what is "
        f"the smallest number of data-parallel GPUs at which the model states fit in {budget_gb} GB per GPU?"),
    params=_min_gpus_params,
    solve=lambda psi, budget_gb: _min_gpus(psi, budget_gb, 16),
    mistake=lambda psi, budget_gb: _min_gpus(psi, budget_gb, 12),       # forgets the 16-bit params and grads
    rtol=0.0,
    hint="ZeRO-3 divides all (2 + 2 + K) Psi bytes by Nd; round up.",
)


def _act_params(seed: int) -> dict:
    if seed == 0:
        return {"seq_len": 32768, "hidden": 8192, "heads": 64, "tp": 8}
    rng = random.Random(seed)
    hidden, heads = rng.choice([(4096, 32), (5120, 40), (8192, 64), (12288, 96), (16384, 128)])
    return {"seq_len": rng.choice([4096, 8192, 32768, 131072]), "hidden": hidden, "heads": heads,
            "tp": rng.choice([2, 4, 8])}


exercise(
    "zero.long_context_activations",
    text=lambda seq_len, hidden, heads, tp: (
        f"A GPT layer has h = {hidden}, a = {heads}, micro-batch 1 and sequence length {seq_len:,}, with "
        f"16-bit activations and dropout (Korthikanti et al. 2022). With tensor parallelism t = {tp}, sequence "
        "parallelism and selective recomputation, how many GB (1e9 bytes) of activations does one layer keep "
        "on each GPU?"),
    params=_act_params,
    solve=lambda seq_len, hidden, heads, tp: memory.activation_bytes_per_layer(
        seq_len, 1, hidden, heads, tp, True, "selective") / 1e9,
    # forgets sequence parallelism: the 10 s b h outside the tensor-parallel region stay whole
    mistake=lambda seq_len, hidden, heads, tp: memory.activation_bytes_per_layer(
        seq_len, 1, hidden, heads, tp, False, "selective") / 1e9,
    rtol=0.02,
    hint="selective recomputation drops the 5as/h score term; with SP all of the 34 s b h is divided by t.",
)


def _offload_params(seed: int) -> dict:
    return {"psi": 13e9} if seed == 0 else {"psi": random.Random(seed).choice(_MODELS)}


exercise(
    "zero.offload_pcie",
    text=lambda psi: (
        f"ZeRO-Offload keeps the 16-bit parameters of a {psi / 1e9:g}B-parameter model on the GPU and the "
        "gradients and optimizer states on the CPU. How many GB (1e9 bytes) cross the PCIe link per optimizer "
        "step (16-bit gradients down, updated 16-bit parameters up)?"),
    params=_offload_params,
    solve=lambda psi: 4 * psi / 1e9,
    mistake=lambda psi: 2 * psi / 1e9,                                 # counts only one direction
    rtol=0.02,
    hint="2 bytes of gradient down plus 2 bytes of parameter up, per parameter.",
)


def _bytes_sent_params(seed: int) -> dict:
    if seed == 0:
        return {"psi": 90_432, "n_ranks": 2, "element_bytes": 4}
    rng = random.Random(seed)
    return {"psi": rng.choice([90_432, 1_000_000, 7e9]), "n_ranks": rng.choice([2, 4, 8, 64]),
            "element_bytes": rng.choice([2, 4])}


exercise(
    "zero.zero3_bytes_sent",
    text=lambda psi, n_ranks, element_bytes: (
        f"A model of {psi:,.0f} parameters trains with ZeRO-3 on {n_ranks} ranks, {element_bytes}-byte "
        "parameters and gradients, ring collectives. How many bytes does each rank send per step?"),
    params=_bytes_sent_params,
    solve=lambda psi, n_ranks, element_bytes: 3 * psi * element_bytes * (n_ranks - 1) / n_ranks,
    mistake=lambda psi, n_ranks, element_bytes: 2 * psi * element_bytes * (n_ranks - 1) / n_ranks,   # DDP's volume
    rtol=0.02,
    hint="two all-gathers of the parameters (forward, backward) and one reduce-scatter of the gradients, "
         "each moving (N - 1)/N of the full tensor per rank.",
)
