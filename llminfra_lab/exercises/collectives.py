"""Lab 4 (interconnect): implement-it tasks and exercises, checked against `collectives`."""
from __future__ import annotations

import math
import random

from llminfra_lab import collectives
from llminfra_lab.labkit import exercise, task

# ---------------------------------------------------------------------------------------
# Implement-it tasks
# ---------------------------------------------------------------------------------------


def _schedule_cases(rng: random.Random) -> list[tuple[int, int]]:
    cases = [(0, 2), (1, 2), (2, 3), (3, 4)]
    for _ in range(16):
        p = rng.randint(2, 12)
        cases.append((rng.randrange(p), p))
    return cases


def _schedule_mistake(rank: int, world_size: int) -> dict:
    # the all-gather indices in both phases: reduce-scatter then completes chunk rank + 1
    p = world_size
    steps = [((rank - s) % p, (rank - s - 1) % p) for s in range(p - 1)]
    return {"reduce_scatter": steps, "all_gather": list(steps)}


task(
    "collectives.ring_schedule",
    "Return {'reduce_scatter': [(send, recv), ...], 'all_gather': [(send, recv), ...]}: for "
    "`rank` of a ring of `world_size` ranks, the chunk index it sends to rank + 1 and the one "
    "it receives from rank - 1 at each of the p - 1 steps of each phase. After reduce-scatter "
    "rank r must hold the full sum of chunk r; all-gather starts by sending chunk r.",
    reference=collectives.ring_schedule,
    cases=_schedule_cases,
    mistake=_schedule_mistake,
)


def _time_cases(rng: random.Random) -> list[tuple[float, int, float, float]]:
    cases = []
    for _ in range(20):
        size = float(rng.choice([1, 4, 16, 64, 256]) * 2 ** rng.randint(10, 30))
        p = rng.choice([2, 3, 4, 8, 16, 72, 1024])
        alpha = rng.choice([0.0, 2e-6, 5e-6, 1e-4])
        bandwidth = rng.choice([1e9, 50e9, 100e9, 450e9, 900e9])
        cases.append((size, p, alpha, bandwidth))
    return cases


task(
    "collectives.ring_all_reduce_time",
    "Return the seconds a ring all-reduce of `size_bytes` takes on `world_size` ranks in the "
    "alpha-beta model: every step costs `alpha_s` plus the bytes it sends divided by "
    "`bandwidth_Bps` (bytes/s per direction).",
    reference=collectives.ring_all_reduce_time,
    cases=_time_cases,
    # forgets that a rank sends 2 (p - 1) / p of the buffer, not all of it once
    mistake=lambda size_bytes, world_size, alpha_s, bandwidth_Bps:
        2 * (world_size - 1) * alpha_s + size_bytes / bandwidth_Bps,
)


def _busbw_reference(size_bytes: float, seconds: float, collective: str, world_size: int) -> float:
    algbw = collectives.algorithm_bandwidth(size_bytes, seconds)
    return collectives.bus_bandwidth(algbw, collective, world_size)


def _busbw_cases(rng: random.Random) -> list[tuple[float, float, str, int]]:
    names = sorted(collectives.BUSBW_FACTORS)
    cases = [(2.0 ** 30, 0.045, "all_reduce", 16)] + [(1e6, 1e-3, name, 8) for name in names]
    for _ in range(14):
        cases.append((float(2 ** rng.randint(10, 34)), rng.uniform(1e-5, 1.0), rng.choice(names),
                      rng.choice([2, 3, 4, 8, 16, 64, 512])))
    return cases


task(
    "collectives.bus_bandwidth",
    "Return nccl-tests' bus bandwidth in bytes/s of a `collective` ('all_reduce', "
    "'reduce_scatter', 'all_gather', 'all_to_all', 'broadcast' or 'reduce') that took "
    "`seconds` on a `size_bytes` buffer over `world_size` ranks.",
    reference=_busbw_reference,
    cases=_busbw_cases,
    # the all-reduce factor for every collective
    mistake=lambda size_bytes, seconds, collective, world_size:
        size_bytes / seconds * 2 * (world_size - 1) / world_size,
)

# ---------------------------------------------------------------------------------------
# Exercises (seed 0: the chapter's numbers)
# ---------------------------------------------------------------------------------------


def _bytes_params(seed: int) -> dict:
    if seed == 0:
        return {"gpus": 72, "gib": 4}
    rng = random.Random(seed)
    return {"gpus": rng.choice([8, 16, 32, 64, 72, 256, 1024]), "gib": rng.choice([1, 2, 4, 8, 16])}


exercise(
    "collectives.ring_bytes",
    text=lambda gpus, gib: (f"A data-parallel group of {gpus} GPUs all-reduces {gib} GiB of gradients with a "
                            f"ring. How many bytes does each GPU send?"),
    params=_bytes_params,
    solve=lambda gpus, gib: collectives.bytes_sent_per_rank("all_reduce", gib * 2 ** 30, gpus),
    mistake=lambda gpus, gib: (gpus - 1) / gpus * gib * 2 ** 30,      # only the reduce-scatter half
    rtol=0.005,
    hint="reduce-scatter and all-gather each send p - 1 chunks of S / p bytes.",
)


def _smallest_even_radix(hosts: int, per_radix) -> int:
    k = 2
    while per_radix(k) < hosts:
        k += 2
    return k


def _radix_params(seed: int) -> dict:
    if seed == 0:
        return {"hosts": 100_000}
    return {"hosts": random.Random(seed).randint(5_000, 2_000_000)}


exercise(
    "collectives.fat_tree_radix",
    text=lambda hosts: (f"What is the smallest even switch radix k for which a three-level fat-tree of k-port "
                        f"switches holds {hosts:,} GPUs with one NIC port each?"),
    params=_radix_params,
    solve=lambda hosts: _smallest_even_radix(hosts, lambda k: collectives.fat_tree(k, 3).hosts),
    mistake=lambda hosts: _smallest_even_radix(hosts, lambda k: k ** 3),   # forgets the /4
    rtol=0.0,
    hint="a three-level fat-tree of k-port switches holds k^3/4 hosts.",
)


def _crossover_params(seed: int) -> dict:
    if seed == 0:
        return {"p": 8, "alpha_us": 5.0, "bandwidth_GBps": 50.0}
    rng = random.Random(seed)
    return {"p": rng.choice([8, 16, 32, 64, 128, 1024]), "alpha_us": rng.choice([2.0, 5.0, 8.0]),
            "bandwidth_GBps": rng.choice([50.0, 100.0, 450.0])}


def _crossover(p: int, alpha_us: float, bandwidth_GBps: float) -> float:
    # ring = tree: 2(p-1) a + 2(p-1)/p S b = 2 ceil(log2 p) a + 2 S b
    return p * (p - 1 - math.ceil(math.log2(p))) * alpha_us * 1e-6 * bandwidth_GBps * 1e9


exercise(
    "collectives.ring_tree_crossover",
    text=lambda p, alpha_us, bandwidth_GBps: (
        f"In the alpha-beta model, ring all-reduce costs 2(p-1) alpha + 2(p-1)/p S beta and the double "
        f"binary tree 2 ceil(log2 p) alpha + 2 S beta. Above what message size S* (bytes) is the ring "
        f"faster, for p = {p}, alpha = {alpha_us:g} us and {bandwidth_GBps:g} GB/s per direction?"),
    params=_crossover_params,
    solve=_crossover,
    mistake=lambda p, alpha_us, bandwidth_GBps: _crossover(p, alpha_us, bandwidth_GBps) / p,  # drops the p
    rtol=0.02,
    hint="set the two times equal and solve for S; beta = 1 / bandwidth.",
)


def _busbw_params(seed: int) -> dict:
    if seed == 0:
        return {"gpus": 16, "gib": 1.0, "ms": 45.0}
    rng = random.Random(seed)
    gpus, gib = rng.choice([8, 16, 32, 64, 128]), rng.choice([0.25, 0.5, 1.0, 2.0, 4.0])
    busbw = rng.uniform(30e9, 48e9)
    ms = round(collectives.bytes_sent_per_rank("all_reduce", gib * 2 ** 30, gpus) / busbw * 1e3, 1)
    return {"gpus": gpus, "gib": gib, "ms": ms}


exercise(
    "collectives.busbw_reading",
    text=lambda gpus, gib, ms: (f"all_reduce_perf on {gpus} GPUs reports {ms:g} ms for a {gib:g} GiB buffer. "
                                f"What bus bandwidth does it print, in GB/s (1e9 bytes/s)?"),
    params=_busbw_params,
    solve=lambda gpus, gib, ms: collectives.bus_bandwidth(
        collectives.algorithm_bandwidth(gib * 2 ** 30, ms / 1e3), "all_reduce", gpus) / 1e9,
    mistake=lambda gpus, gib, ms: gib * 2 ** 30 / (ms / 1e3) / 1e9,        # the algorithm bandwidth
    rtol=0.01,
    hint="busbw = algbw x 2(n-1)/n for all-reduce, and algbw = S / t.",
)
