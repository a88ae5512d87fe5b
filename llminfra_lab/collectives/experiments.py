"""Chapter 4's experiment for torchrun: the ring all-reduce against the library's, with a sweep.

    torchrun --nproc-per-node 8 -m llminfra_lab.collectives ring [--max-bytes 268435456] [--json]

`ring_worker` runs on every rank: it checks this package's ring collectives against
torch's (`ring.ring_vs_torch`), keeps a fingerprint of the tensor the ring reduced, and
times the ring and the backend's own all-reduce (gloo on CPU, NCCL on GPUs) at sizes from
4 KiB up to `max_bytes`, growing four times per step. `ring_report` turns the ranks'
results into a table with nccl-tests' algorithm and bus bandwidth (`cost.bus_bandwidth`),
taking each size's slowest rank. The labs run the same pair through `launch.run_in_process`.
"""
from __future__ import annotations

import hashlib

import torch

from llminfra_lab.launch import Experiment

from .cost import algorithm_bandwidth, bus_bandwidth
from .measure import time_collective_on_rank
from .ring import ring_all_reduce, ring_vs_torch

__all__ = ["ring_worker", "ring_report", "RING", "EXPERIMENTS", "sweep_sizes"]


def sweep_sizes(max_bytes: int, min_bytes: int = 4096) -> list[int]:
    """Buffer sizes in bytes from `min_bytes`, times 4 per step, up to `max_bytes` (included
    when it lies on the grid)."""
    if max_bytes < min_bytes:
        raise ValueError(f"max_bytes must be >= {min_bytes}, got {max_bytes}")
    sizes = [min_bytes]
    while sizes[-1] * 4 <= max_bytes:
        sizes.append(sizes[-1] * 4)
    return sizes


def ring_worker(rank: int, world_size: int, *, numel: int = 1001, seed: int = 0, max_bytes: int = 1 << 22,
                repeats: int = 3, device: str = "cpu") -> dict:
    """Run on every rank: correctness of the ring (float64), its reduced tensor's SHA-256,
    and median seconds of the ring and the library all-reduce (float32) at each sweep size."""
    check = ring_vs_torch(rank, world_size, numel, seed, device=device)
    x = torch.randn(numel, generator=torch.Generator().manual_seed(seed + rank), dtype=torch.float64).to(device)
    reduced = ring_all_reduce(x).cpu()
    sizes = sweep_sizes(max_bytes) if max_bytes else []
    return {**check, "reduced_sha256": hashlib.sha256(reduced.numpy().tobytes()).hexdigest(),
            "sizes_bytes": sizes,
            "ring_s": time_collective_on_rank(rank, world_size, sizes, repeats, "all_reduce", "ring", device),
            "library_s": time_collective_on_rank(rank, world_size, sizes, repeats, "all_reduce", "torch", device)}


def ring_report(results: list[dict], world_size: int, **options) -> dict:
    """Rank 0's summary: "check" (exact, equal on every machine with the same world size and
    backend) and "rows" (the sweep: each size's slowest rank, GB = 1e9 bytes)."""
    worst = max(max(r["all_reduce_err"], r["reduce_scatter_err"]) / max(1.0, r["scale"]) for r in results)
    check = {"numel": options.get("numel", 1001), "max_rel_err_vs_library": worst,
             "all_gather_exact": all(r["all_gather_err"] == 0.0 and r["all_gather_shape_ok"] for r in results),
             "bytes_sent_per_rank": [r["bytes_sent"] for r in results],
             "reduced_sha256": [r["reduced_sha256"] for r in results],
             "ok": worst <= 1e-12}
    rows = []
    for i, size in enumerate(results[0]["sizes_bytes"]):
        t_ring = max(r["ring_s"][i] for r in results)
        t_lib = max(r["library_s"][i] for r in results)
        rows.append({"bytes": size, "ring_ms": t_ring * 1e3, "library_ms": t_lib * 1e3,
                     "ring_busbw_GBps": bus_bandwidth(algorithm_bandwidth(size, t_ring), "all_reduce", world_size) / 1e9,
                     "library_busbw_GBps": bus_bandwidth(algorithm_bandwidth(size, t_lib), "all_reduce",
                                                         world_size) / 1e9})
    return {"check": check, "rows": rows}


def _ring_fits(world_size: int, **options) -> str | None:
    if world_size < 2:
        return f"the ring needs at least 2 ranks, got world size {world_size} (use --nproc-per-node 2 or more)"
    if options.get("max_bytes", 0) and options["max_bytes"] < 4096:
        return f"--max-bytes must be 0 (no sweep) or >= 4096, got {options['max_bytes']}"
    return None


RING = Experiment(ring_worker, ring_report,
                  options={"numel": 1001, "seed": 0, "max_bytes": 1 << 22, "repeats": 3},
                  fits=_ring_fits,
                  help="ring all-reduce from send/recv vs the library's, with a bus-bandwidth sweep")

#: The experiments of `python -m llminfra_lab.collectives`.
EXPERIMENTS = {"ring": RING}
