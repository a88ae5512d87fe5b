"""Lab 5 (the training stack): implement-it tasks and exercises."""
from __future__ import annotations

import math
import random

import torch

from llminfra_lab import memory, training
from llminfra_lab.labkit import exercise, task
from llminfra_lab.tokenizer import apply_merge, bpe_merge_step

# ----------------------------------------------------------------------------- tasks


def _merge_cases(rng: random.Random) -> list[tuple]:
    """Toy corpora: a few words over a small alphabet of ids, with counts (many ties)."""
    cases = []
    for _ in range(20):
        alphabet = rng.sample(range(1, 40), rng.randint(2, 5))
        words: dict[tuple[int, ...], int] = {}
        while len(words) < rng.randint(1, 6) or not any(len(w) > 1 for w in words):
            words[tuple(rng.choice(alphabet) for _ in range(rng.randint(1, 7)))] = rng.randint(1, 6)
        cases.append((words, 100 + rng.randrange(50)))
    return cases


def _merge_first_seen(words: dict, new_id: int):
    """A plausible mistake: `max` of the counts, so ties go to the pair seen first."""
    counts: dict = {}
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] = counts.get(pair, 0) + n
    best = max(counts, key=counts.get)
    return best, counts[best], apply_merge(words, best, new_id)


task(
    "training.bpe_merge_step",
    "Write merge_step(words, new_id): words maps each word (a tuple of token ids) to its count. "
    "Count every adjacent pair (weighted by the word's count), pick the most frequent (ties: the "
    "smallest (left, right) pair), replace its occurrences in each word left to right by new_id, and "
    "return (pair, count, merged_words).",
    reference=bpe_merge_step,
    cases=_merge_cases,
    mistake=_merge_first_seen,
)


def _adamw_cases(rng: random.Random) -> list[dict]:
    cases = []
    for _ in range(12):
        gen = torch.Generator().manual_seed(rng.randrange(2 ** 31))
        shape = tuple(rng.randint(1, 6) for _ in range(rng.randint(1, 3)))
        p, g, m = (torch.randn(shape, generator=gen) for _ in range(3))
        v = torch.rand(shape, generator=gen) * 0.1
        cases.append(dict(p=p, g=g, m=m * 0.1, v=v, t=rng.randint(1, 200), lr=rng.choice([1e-4, 1e-3, 3e-3, 1e-2]),
                          beta1=rng.choice([0.8, 0.9]), beta2=rng.choice([0.95, 0.99, 0.999]),
                          eps=rng.choice([1e-8, 1e-6]), weight_decay=rng.choice([0.0, 0.01, 0.1])))
    return cases


def _adam_with_l2(p, g, m, v, t, *, lr, beta1, beta2, eps, weight_decay):
    """A plausible mistake: Adam with L2 regularisation (decay added to the gradient), not AdamW."""
    return training.adamw_step(p, g + weight_decay * p, m, v, t, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                               weight_decay=0.0)


task(
    "training.adamw_step",
    "Write adamw_step(p, g, m, v, t, *, lr, beta1, beta2, eps, weight_decay) returning the new "
    "(p, m, v) after one AdamW step t (t starts at 1): decoupled decay p * (1 - lr * weight_decay), "
    "the two moments, their bias corrections, and p - lr * m_hat / (sqrt(v_hat) + eps).",
    reference=training.adamw_step,
    cases=_adamw_cases,
    mistake=_adam_with_l2,
)

# ----------------------------------------------------------------------------- exercises

_MODELS = [13e9, 34e9, 70e9, 180e9, 405e9]
_GPU_GB = [40, 80, 141, 192]


def _bytes_params(seed: int) -> dict:
    if seed == 0:
        return {"n_params": 70e9, "gpu_gb": 80, "recipe": "bf16-mixed"}
    rng = random.Random(seed)
    return {"n_params": rng.choice(_MODELS), "gpu_gb": rng.choice(_GPU_GB),
            "recipe": rng.choice(["bf16-mixed", "fp8-deepseek-v3"])}


def _gpus_needed(n_params: float, gpu_gb: float, recipe: str) -> int:
    total = memory.model_state_bytes(n_params, stage=3, n_gpus=1, **training.recipe_bytes(recipe))["total"]
    return math.ceil(total / (gpu_gb * 1e9))


exercise(
    "training.gpus_for_states",
    text=lambda n_params, gpu_gb, recipe: (
        f"Full fine-tuning of a {n_params / 1e9:g}B-parameter dense model with AdamW under the "
        f"'{recipe}' precision recipe: how many {gpu_gb} GB GPUs are needed just to hold the weights, "
        f"gradients and optimizer state, sharded evenly (ZeRO-3 / FSDP)? (An integer: round up.)"),
    params=_bytes_params,
    solve=_gpus_needed,
    # counts only the 16-bit weights, the classic "70B in BF16 is 140 GB" slip
    mistake=lambda n_params, gpu_gb, recipe: math.ceil(2 * n_params / (gpu_gb * 1e9)),
    rtol=0.0,
    hint="bytes per parameter of the recipe (training.bytes_per_param) x parameters, over the GPU's bytes.",
)

_LAWS = {"Hoffmann rounded": training.HOFFMANN_APPROACH3, "Hoffmann unrounded": training.HOFFMANN_APPROACH3_UNROUNDED,
         "Besiroglu refit": training.BESIROGLU_REFIT}
_LAW_NAMES = {"Hoffmann rounded": "HOFFMANN_APPROACH3", "Hoffmann unrounded": "HOFFMANN_APPROACH3_UNROUNDED",
              "Besiroglu refit": "BESIROGLU_REFIT"}


def _growth_params(seed: int) -> dict:
    if seed == 0:
        return {"factor": 10, "law": "Hoffmann rounded"}
    rng = random.Random(seed)
    return {"factor": rng.choice([4, 10, 30, 100, 1000]), "law": rng.choice(sorted(_LAWS))}


def _growth(factor: float, law: str) -> float:
    n1, _ = training.compute_optimal(_LAWS[law], 1e23)
    n2, _ = training.compute_optimal(_LAWS[law], 1e23 * factor)
    return n2 / n1


exercise(
    "training.nopt_growth",
    text=lambda factor, law: (
        f"Under the {law} Chinchilla law (training.{_LAW_NAMES[law]}), "
        f"by what factor does the compute-optimal parameter count N_opt grow when the budget C grows {factor}x?"),
    params=_growth_params,
    solve=_growth,
    # the data exponent b = alpha / (alpha + beta) in place of a = beta / (alpha + beta)
    mistake=lambda factor, law: factor ** _LAWS[law].b,
    rtol=0.01,
    hint="N_opt = G (C/6)^a with a = beta / (alpha + beta); G cancels in the ratio.",
)


def _lsh_params(seed: int) -> dict:
    if seed == 0:
        return {"s_high": 0.8, "p_high": 0.99, "s_low": 0.5, "p_low": 0.05}
    rng = random.Random(seed)
    s_high = rng.choice([0.75, 0.8, 0.85, 0.9])
    return {"s_high": s_high, "p_high": rng.choice([0.95, 0.99]), "s_low": round(s_high - rng.choice([0.2, 0.3]), 2),
            "p_low": rng.choice([0.01, 0.05, 0.1])}


def _swapped_banding(s_high, p_high, s_low, p_low):
    """A plausible mistake: bands and rows swapped, (rows, bands)."""
    b, r = training.lsh_banding_for(s_high, p_high, s_low, p_low)
    return (r, b)


exercise(
    "training.lsh_banding",
    text=lambda s_high, p_high, s_low, p_low: (
        f"MinHash LSH with b bands of r rows makes a pair of Jaccard similarity s a candidate with "
        f"probability 1 - (1 - s^r)^b. Which (b, r) with the fewest hashes b*r catches pairs at "
        f"{s_high} with probability >= {p_high} and compares pairs at {s_low} with probability <= {p_low}? "
        f"Answer (b, r); on a tie in b*r take fewer rows."),
    params=_lsh_params,
    solve=training.lsh_banding_for,
    mistake=_swapped_banding,
    rtol=0.0,
    hint="for each r, the fewest bands that reach the first target; keep those that meet the second.",
)


def _fp8_params(seed: int) -> dict:
    if seed == 0:
        return {"typical": 0.01, "outlier": 3000.0, "fmt": "fp8_e4m3"}
    rng = random.Random(seed)
    return {"typical": rng.choice([0.003, 0.01, 0.03, 0.1]), "outlier": rng.choice([500.0, 3000.0, 2e4, 1e5]),
            "fmt": rng.choice(["fp8_e4m3", "fp8_e5m2"])}


exercise(
    "training.fp8_scaled_value",
    text=lambda typical, outlier, fmt: (
        f"A tensor has typical values of magnitude {typical} and one outlier of {outlier:g}. With one "
        f"scale for the whole tensor chosen so that the outlier maps to the largest {fmt.upper()} value "
        f"(training.float_format('{fmt}')['max']), what does a typical value become before rounding?"),
    params=_fp8_params,
    solve=lambda typical, outlier, fmt: typical * training.float_format(fmt)["max"] / outlier,
    mistake=lambda typical, outlier, fmt: typical * outlier / training.float_format(fmt)["max"],
    rtol=0.02,
    hint="scale = largest representable value / outlier; multiply the typical value by it.",
)
