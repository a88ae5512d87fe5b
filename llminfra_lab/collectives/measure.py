"""Measuring a collective on local processes and fitting alpha and beta to the times.

`measure_collective` times a collective at several sizes on N local processes (one
`launch`); `fit_alpha_beta` recovers the per-message latency alpha and the per-byte cost
beta of the ring model by least squares.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from llminfra_lab.checks import positive_int
from llminfra_lab.collectives.cost import BUSBW_FACTORS
from llminfra_lab.collectives.ring import chunk_sizes, ring_all_gather, ring_all_reduce, ring_reduce_scatter
from llminfra_lab.launch import launch

__all__ = ["Measurement", "AlphaBeta", "measure_collective", "fit_alpha_beta", "time_collective_on_rank",
           "ring_step_counts"]

COLLECTIVES = ("all_reduce", "reduce_scatter", "all_gather")
IMPLS = ("ring", "torch")


@dataclass(frozen=True)
class Measurement:
    """Times of one collective at several sizes: `seconds[i]` for `sizes_bytes[i]`."""
    collective: str
    impl: str
    world_size: int
    sizes_bytes: tuple[int, ...]
    seconds: tuple[float, ...]


@dataclass(frozen=True)
class AlphaBeta:
    """A fitted alpha-beta model: per-message latency and per-byte cost of one link."""
    alpha_s: float
    beta_s_per_byte: float
    residual_rms_s: float

    @property
    def bandwidth_Bps(self) -> float:
        return math.inf if self.beta_s_per_byte <= 0 else 1.0 / self.beta_s_per_byte


def ring_step_counts(collective: str, world_size: int) -> tuple[float, float]:
    """(number of alpha terms, multiplier of S * beta) of the ring `collective` on p ranks:
    (2 (p - 1), 2 (p - 1) / p) for all-reduce, (p - 1, (p - 1) / p) for the other two."""
    _check_collective(collective)
    positive_int("world_size", world_size)
    p = world_size
    steps = 2 * (p - 1) if collective == "all_reduce" else p - 1
    return steps, BUSBW_FACTORS[collective](p)


def fit_alpha_beta(sizes_bytes: Sequence[float], seconds: Sequence[float], world_size: int,
                   collective: str = "all_reduce") -> AlphaBeta:
    """Least-squares alpha and beta of the ring model t = a(p) alpha + b(p) S beta.

    For all-reduce a = 2 (p - 1) and b = 2 (p - 1) / p; for reduce-scatter and
    all-gather a = p - 1 and b = (p - 1) / p (`ring_step_counts`). Needs at least two
    distinct sizes. Returns per-message alpha (s), per-byte beta (s/byte) and the rms
    residual (s).
    """
    s = np.asarray(sizes_bytes, dtype=float)
    t = np.asarray(seconds, dtype=float)
    if s.ndim != 1 or t.ndim != 1 or len(s) != len(t):
        raise ValueError(f"sizes_bytes and seconds must be 1-D and the same length, got {s.shape} and {t.shape}")
    if len(np.unique(s)) < 2:
        raise ValueError("need at least two distinct sizes to separate alpha from beta")
    if np.any(~np.isfinite(s)) or np.any(s < 0) or np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise ValueError("sizes_bytes must be finite and >= 0, seconds finite and > 0")
    _check_world(world_size)
    a, b = ring_step_counts(collective, world_size)
    design = np.column_stack([np.full_like(s, a), b * s])
    (alpha, beta), *_ = np.linalg.lstsq(design, t, rcond=None)
    residual = t - design @ np.array([alpha, beta])
    return AlphaBeta(float(alpha), float(beta), float(np.sqrt(np.mean(residual ** 2))))


def measure_collective(world_size: int, sizes_bytes: Sequence[int], repeats: int = 5,
                       collective: str = "all_reduce", impl: str = "ring",
                       timeout_s: float = 120.0) -> Measurement:
    """Time `collective` at each size on `world_size` local gloo processes (one launch).

    For every size the reported time is the slowest rank's median over `repeats` runs
    (a collective is finished only when its last rank is).
    """
    _check_world(world_size)
    sizes = [int(s) for s in sizes_bytes]
    if not sizes or any(s < 4 for s in sizes):
        raise ValueError(f"sizes_bytes must be a non-empty list of sizes >= 4 bytes, got {list(sizes_bytes)!r}")
    positive_int("repeats", repeats)
    _check_collective(collective)
    _check_impl(impl)
    per_rank = launch(time_collective_on_rank, world_size, sizes, repeats, collective, impl,
                      timeout_s=timeout_s)
    slowest = np.max(np.array(per_rank), axis=0)
    return Measurement(collective, impl, world_size, tuple(sizes), tuple(float(t) for t in slowest))


def time_collective_on_rank(rank: int, world_size: int, sizes_bytes: Sequence[int], repeats: int = 5,
                            collective: str = "all_reduce", impl: str = "ring", device: str = "cpu") -> list[float]:
    """Run on every rank (via `launch`, or torchrun): median seconds of `collective` for each size.

    `impl` "ring" uses this package's send/recv ring, "torch" the backend's own
    collective. Buffers are float32 on `device`; ranks meet at a barrier before every
    repetition, and on a GPU the clock stops only once the device has finished.
    """
    _check_collective(collective)
    _check_impl(impl)
    medians = []
    for size in sizes_bytes:
        numel = max(1, int(size) // 4)
        x = torch.ones(numel, dtype=torch.float32, device=device)
        run = _runner(collective, impl, x, rank, world_size)
        sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
        runs = []
        for _ in range(repeats + 1):                  # the first run warms up and is dropped
            dist.barrier()
            sync()
            start = time.perf_counter()
            run()
            sync()
            runs.append(time.perf_counter() - start)
            x.fill_(1.0)
        medians.append(float(np.median(runs[1:])))
    return medians


def _runner(collective: str, impl: str, x: torch.Tensor, rank: int, p: int):
    """A no-argument function that runs `collective` once on `x` with `impl`."""
    numel = x.numel()
    if collective == "all_reduce":
        return (lambda: ring_all_reduce(x)) if impl == "ring" else (lambda: dist.all_reduce(x))
    if collective == "reduce_scatter":
        if impl == "ring":
            return lambda: ring_reduce_scatter(x)
        out = torch.empty(numel // p, dtype=x.dtype, device=x.device)
        # reduce_scatter_single exists from torch 2.13; older versions name it reduce_scatter_tensor
        op = getattr(dist, "reduce_scatter_single", dist.reduce_scatter_tensor)
        return lambda: op(out, x[: (numel // p) * p])
    if impl == "ring":
        sizes = chunk_sizes(numel, p)
        piece = torch.split(x, sizes)[rank].clone()
        return lambda: ring_all_gather(piece, sizes)
    out = torch.empty((numel // p) * p, dtype=x.dtype, device=x.device)
    op = getattr(dist, "all_gather_single", dist.all_gather_into_tensor)
    part = x[: numel // p].clone()
    return lambda: op(out, part)


def _check_world(world_size: int) -> None:
    positive_int("world_size", world_size)
    if world_size < 2:
        raise ValueError(f"world_size must be an int >= 2, got {world_size!r}")


def _check_collective(collective: str) -> None:
    if collective not in COLLECTIVES:
        raise ValueError(f"collective must be one of {COLLECTIVES}, got {collective!r}")


def _check_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f"impl must be 'ring' or 'torch', got {impl!r}")
