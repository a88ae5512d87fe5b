"""Lab 10 (checkpointing and fault tolerance): implement-it tasks and exercises."""
from __future__ import annotations

import math
import random

import numpy as np

from llminfra_lab import resilience
from llminfra_lab.labkit import exercise, task
from llminfra_lab.resilience import LLAMA3_INTERRUPTIONS, LLAMA3_RUN

# ----------------------------------------------------------------------------- implement-it tasks


def _manifest_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(24):
        contents = {f"shard_{i}.pt": rng.randbytes(rng.randint(1, 64)) for i in range(rng.randint(1, 4))}
        manifest = {"files": {n: {"bytes": len(b), "sha256": resilience.sha256_bytes(b)} for n, b in contents.items()}}
        damage = rng.choice(["none", "none", "flip", "truncate", "missing"])
        name = rng.choice(sorted(contents))
        if damage == "flip":                                  # silent bit rot: same size
            data = bytearray(contents[name])
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            contents[name] = bytes(data)
        elif damage == "truncate":                            # a torn write
            contents[name] = contents[name][:-1]
        elif damage == "missing":
            del contents[name]
        cases.append((manifest, contents))
    return cases


def _sizes_only(manifest, contents):
    return all(n in contents and len(contents[n]) == m["bytes"] for n, m in manifest["files"].items())


task(
    "resilience.manifest_ok",
    "Return True when a checkpoint is intact: `manifest` is {'files': {name: {'bytes': int, 'sha256': hex str}}}, "
    "`contents` is {name: bytes} as read from disk. Every listed file must be present with the listed size and "
    "SHA-256 (resilience.sha256_bytes or hashlib.sha256(data).hexdigest()).",
    reference=lambda manifest, contents: resilience.manifest_problem(manifest, contents) is None,
    cases=_manifest_cases,
    mistake=_sizes_only,
)


def _goodput_cases(rng: random.Random) -> list[tuple]:
    cases = [(1155.0, 60.0, 11134.0, 0.0), (2400.0, 300.0, 11134.0, 600.0)]
    for _ in range(20):
        m = rng.choice([600.0, 3600.0, 11134.0, 86400.0])
        cases.append((m * rng.uniform(0.01, 1.5), m * rng.uniform(0.001, 0.1), m, rng.choice([0.0, 60.0, 600.0])))
    return cases


def _first_order_goodput(interval_s, checkpoint_s, mtbf_s, restart_s):
    return 1 - checkpoint_s / interval_s - interval_s / (2 * mtbf_s) - restart_s / mtbf_s


task(
    "resilience.expected_goodput",
    "Return the expected goodput (useful seconds / wall seconds) of training that saves a checkpoint costing "
    "checkpoint_s after every interval_s seconds of work, with exponential failures of mean mtbf_s and a restart "
    "costing restart_s: tau / (M * exp(R/M) * (exp((tau + C)/M) - 1)) (Daly 2006).",
    reference=resilience.expected_goodput,
    cases=_goodput_cases,
    mistake=_first_order_goodput,
)


def _straggler_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for i in range(16):
        ranks = rng.choice([8, 16, 64])
        slow = {rng.randrange(ranks): rng.choice([1.2, 1.3, 1.5])} if i % 4 else {}
        t = resilience.simulate_step_times(50, ranks, slow=slow, seed=rng.randrange(1000))
        spiky = rng.randrange(ranks)                         # one healthy rank with a 10x pause (GC, page fault)
        t[rng.randrange(50), spiky] *= 10.0
        cases.append((t,))
    return cases


def _mean_based(step_times):
    per_rank = np.asarray(step_times).mean(axis=0)
    centre = float(np.median(per_rank))
    spread = 1.4826 * float(np.median(np.abs(per_rank - centre))) + 1e-12
    return [r for r, v in enumerate(per_rank) if v > centre * 1.1 and (v - centre) / spread > 5.0]


task(
    "resilience.detect_stragglers",
    "Given step_times, a (steps, ranks) NumPy array of compute seconds, return the sorted list of straggler ranks: "
    "take each rank's MEDIAN over steps; let c be the median of those and s = 1.4826 * median(|per_rank - c|) + 1e-12; "
    "flag rank r when per_rank[r] > 1.1 * c and (per_rank[r] - c) / s > 5.",
    reference=lambda step_times: resilience.detect_stragglers(step_times, threshold=0.1, z=5.0),
    cases=_straggler_cases,
    mistake=_mean_based,
)

# ----------------------------------------------------------------------------- exercises

_LLAMA3_MTBF_S = LLAMA3_RUN["days"] * 86400 / LLAMA3_RUN["unexpected"]      # 11,134 s = 3.09 h


def _young_params(seed: int) -> dict:
    if seed == 0:
        return {"checkpoint_s": 60, "mtbf_h": round(_LLAMA3_MTBF_S / 3600, 2)}
    rng = random.Random(seed)
    return {"checkpoint_s": rng.choice([10, 30, 60, 120, 300]), "mtbf_h": rng.choice([0.5, 1.0, 3.09, 8.0, 24.0])}


exercise(
    "resilience.young_minutes",
    text=lambda checkpoint_s, mtbf_h: (
        f"A checkpoint stalls training for {checkpoint_s} s and the job's mean time between failures is {mtbf_h} h. "
        "By Young's formula, how many minutes of training should pass between checkpoints?"),
    params=_young_params,
    solve=lambda checkpoint_s, mtbf_h: math.sqrt(2 * checkpoint_s * mtbf_h * 3600) / 60,
    mistake=lambda checkpoint_s, mtbf_h: math.sqrt(checkpoint_s * mtbf_h * 3600) / 60,
    rtol=0.02,
    hint="tau = sqrt(2 C M), with C and M in the same unit.",
)


def _scale_params(seed: int) -> dict:
    if seed == 0:
        return {"gpus": 100_000}
    return {"gpus": random.Random(seed).choice([4096, 8192, 32768, 65536, 100_000, 200_000])}


exercise(
    "resilience.mtbf_at_scale",
    text=lambda gpus: (
        "Llama 3's 405B run saw 419 unexpected interruptions in 54 days on 16,384 GPUs. If failures scale with the "
        f"number of GPUs, what is the mean time between unexpected interruptions, in minutes, of a {gpus:,}-GPU job?"),
    params=_scale_params,
    solve=lambda gpus: 54 * 24 * 60 / 419 * 16_384 / gpus,
    mistake=lambda gpus: 54 * 24 * 60 / 466 * 16_384 / gpus,        # counts the 47 planned ones too
    rtol=0.02,
    hint="54 days / 419 at 16,384 GPUs, then scale by 16,384 / N.",
)


def _goodput_params(seed: int) -> dict:
    if seed == 0:
        return {"interval_min": 30, "checkpoint_s": 60, "restart_min": 10}
    rng = random.Random(seed)
    return {"interval_min": rng.choice([10, 20, 30, 60]), "checkpoint_s": rng.choice([30, 60, 120]),
            "restart_min": rng.choice([5, 10, 20, 30])}


exercise(
    "resilience.goodput_llama3",
    text=lambda interval_min, checkpoint_s, restart_min: (
        f"With Llama 3's mean time between unexpected interruptions (54 days / 419), checkpoints every {interval_min} "
        f"min of work costing {checkpoint_s} s each, and {restart_min} min to restart after a failure, what is the "
        "expected goodput (a fraction, exact exponential model)?"),
    params=_goodput_params,
    solve=lambda interval_min, checkpoint_s, restart_min: resilience.expected_goodput(
        interval_min * 60.0, float(checkpoint_s), _LLAMA3_MTBF_S, restart_min * 60.0),
    mistake=lambda interval_min, checkpoint_s, restart_min: resilience.expected_goodput(
        interval_min * 60.0, float(checkpoint_s), _LLAMA3_MTBF_S, 0.0),           # forgets the restart
    rtol=0.005,
    hint="tau / (M e^(R/M) (e^((tau + C)/M) - 1)) with M = 54 x 86400 / 419 s.",
)

_SUBSETS = [("GPU",), ("Faulty GPU",), ("Faulty GPU", "GPU HBM3 Memory"), ("Faulty GPU", "Network Switch/Cable")]


def _share_params(seed: int) -> dict:
    return {"which": _SUBSETS[0] if seed == 0 else random.Random(seed).choice(_SUBSETS)}


def _rows(which):
    return [r for r in LLAMA3_INTERRUPTIONS if r.category in which or r.component in which]


exercise(
    "resilience.gpu_share_from_counts",
    text=lambda which: (
        "In Llama 3's Table 5 (419 unexpected interruptions), what percentage of them fall under "
        + (" or ".join(f"'{w}'" for w in which)) + (" (the whole GPU category)" if which == ("GPU",) else "")
        + ", computed from the interruption COUNTS (not the printed percentages)?"),
    params=_share_params,
    solve=lambda which: 100 * sum(r.count for r in _rows(which)) / 419,
    mistake=lambda which: sum(r.printed_percent for r in _rows(which)),
    rtol=0.01,
    hint="add the counts of the rows and divide by 419; the printed 30.1% for 'Faulty GPU' is not 148/419.",
)
