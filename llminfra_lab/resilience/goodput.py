"""How often to checkpoint, and how to notice the failures that do not crash anything.

- `young_interval`, `daly_interval`: the optimum compute time between checkpoints for a
  checkpoint that costs C seconds and a mean time between failures M: Young (1974)
  sqrt(2 C M), and Daly's (2006) higher-order correction.
- `expected_goodput`: the exact expected fraction of wall time spent on useful work with
  exponentially distributed failures (Daly's model), and `simulate_goodput`, a Monte Carlo
  run of the same process, which the tests compare with it.
- `abft_matmul_check` and `redundant_check`: two ways to catch silent data corruption
  (a wrong result without a crash): checksums of a matrix product (algorithm-based fault
  tolerance) and recomputation compared bit for bit; `flip_bit` injects the fault.
- `detect_stragglers`: flag ranks whose compute time per step is persistently above the
  others', from a (steps, ranks) table of step times; `simulate_step_times` makes one.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from llminfra_lab.checks import positive_int, positive_number

__all__ = ["young_interval", "daly_interval", "expected_goodput", "simulate_goodput", "flip_bit",
           "abft_matmul_check", "redundant_check", "simulate_step_times", "detect_stragglers"]


def young_interval(checkpoint_s: float, mtbf_s: float) -> float:
    """Young's first-order optimum compute time between checkpoints: sqrt(2 C M) seconds."""
    positive_number("checkpoint_s", checkpoint_s)
    positive_number("mtbf_s", mtbf_s)
    return math.sqrt(2 * checkpoint_s * mtbf_s)


def daly_interval(checkpoint_s: float, mtbf_s: float) -> float:
    """Daly's higher-order optimum: sqrt(2CM) [1 + sqrt(C/2M)/3 + (C/2M)/9] - C for C < 2M, else M."""
    positive_number("checkpoint_s", checkpoint_s)
    positive_number("mtbf_s", mtbf_s)
    if checkpoint_s >= 2 * mtbf_s:
        return mtbf_s
    r = checkpoint_s / (2 * mtbf_s)
    return math.sqrt(2 * checkpoint_s * mtbf_s) * (1 + math.sqrt(r) / 3 + r / 9) - checkpoint_s


def expected_goodput(interval_s: float, checkpoint_s: float, mtbf_s: float, restart_s: float = 0.0) -> float:
    """Expected useful fraction of wall time with exponential failures (mean `mtbf_s`).

    A segment is `interval_s` of work followed by a `checkpoint_s` save; a failure anywhere in
    it loses the segment and costs `restart_s` before it is tried again. The expected wall time
    of one segment is M e^(R/M) (e^((tau + C)/M) - 1) (Daly 2006), so the goodput is tau over that.
    """
    positive_number("interval_s", interval_s)
    positive_number("mtbf_s", mtbf_s)
    if checkpoint_s < 0 or restart_s < 0:
        raise ValueError(f"checkpoint_s and restart_s must be >= 0, got {checkpoint_s!r}, {restart_s!r}")
    m = mtbf_s
    return interval_s / (m * math.exp(restart_s / m) * math.expm1((interval_s + checkpoint_s) / m))


def simulate_goodput(interval_s: float, checkpoint_s: float, mtbf_s: float, restart_s: float = 0.0,
                     work_s: float = 1e6, seed: int = 0) -> dict[str, float]:
    """Monte Carlo run of `work_s` seconds of training with checkpoints every `interval_s`.

    Failures arrive as a Poisson process of mean gap `mtbf_s` (during work, saves and restarts
    alike). Returns goodput (work / wall time), the wall time, the number of failures and the
    seconds of work lost (done but not yet checkpointed when a failure struck).
    """
    positive_number("interval_s", interval_s)
    positive_number("mtbf_s", mtbf_s)
    positive_number("work_s", work_s)
    if checkpoint_s < 0 or restart_s < 0:
        raise ValueError(f"checkpoint_s and restart_s must be >= 0, got {checkpoint_s!r}, {restart_s!r}")
    rng = random.Random(seed)
    wall, saved, failures, lost = 0.0, 0.0, 0, 0.0
    next_failure = rng.expovariate(1 / mtbf_s)
    while saved < work_s:
        chunk = min(interval_s, work_s - saved)
        segment = chunk + checkpoint_s
        if wall + segment <= next_failure:          # the segment and its save complete
            wall += segment
            saved += chunk
            continue
        lost += min(next_failure - wall, chunk)      # work done in this segment is gone
        failures += 1
        wall = next_failure + restart_s
        next_failure += rng.expovariate(1 / mtbf_s)
        while next_failure < wall:                   # a failure during the restart starts it again
            failures += 1
            wall = next_failure + restart_s
            next_failure += rng.expovariate(1 / mtbf_s)
    return {"goodput": work_s / wall, "wall_s": wall, "failures": failures, "lost_work_s": lost}


def flip_bit(x: torch.Tensor, index: int, bit: int) -> torch.Tensor:
    """A copy of float32 tensor `x` with bit `bit` (0 = least significant, 31 = sign) of flat
    element `index` inverted: the signature of a silent hardware fault."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
        raise ValueError("x must be a float32 tensor")
    if not 0 <= bit < 32:
        raise ValueError(f"bit must be in 0..31, got {bit!r}")
    if not 0 <= index < x.numel():
        raise ValueError(f"index must be in 0..{x.numel() - 1}, got {index!r}")
    out = x.detach().clone().contiguous()
    bits = out.view(-1).view(torch.int32)
    bits[index] ^= torch.tensor(1 << bit if bit < 31 else -(1 << 31), dtype=torch.int32)
    return out


def abft_matmul_check(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, rtol: float = 1e-4) -> dict[str, Any]:
    """Check C = A @ B with column and row checksums (Huang and Abraham 1984).

    The column sums of C must equal (1^T A) B and the row sums A (B 1), to rounding. Costs
    O(n^2) against the product's O(n^3). Returns ``ok``, the largest relative discrepancy, and
    the (row, col) where a single corrupted element sits when both checks point at one.
    """
    if a.dim() != 2 or b.dim() != 2 or c.shape != (a.shape[0], b.shape[1]) or a.shape[1] != b.shape[0]:
        raise ValueError(f"need a (m, k), b (k, n), c (m, n); got {tuple(a.shape)}, {tuple(b.shape)}, {tuple(c.shape)}")
    a64, b64, c64 = a.double(), b.double(), c.double()
    col_err = (c64.sum(0) - a64.sum(0) @ b64).abs()
    row_err = (c64.sum(1) - a64 @ b64.sum(1)).abs()
    scale = (a64.abs().sum(0) @ b64.abs()).max().item() + 1e-30      # bound on the sums' magnitude
    worst = max(col_err.max().item(), row_err.max().item()) / scale
    ok = worst <= rtol
    where = None if ok else (int(row_err.argmax()), int(col_err.argmax()))
    return {"ok": ok, "relative_error": worst, "where": where}


def redundant_check(fn: Callable[..., torch.Tensor], *args: Any, fault: Callable[[torch.Tensor], torch.Tensor] | None = None
                    ) -> dict[str, Any]:
    """Run `fn(*args)` twice and compare the results bit for bit.

    With deterministic kernels on healthy hardware the two agree exactly, so any difference is
    a fault. `fault`, if given, corrupts the second result (a stand-in for a bad core).
    Returns ``ok``, the number of elements that differ, and the first result.
    """
    if not callable(fn):
        raise ValueError("fn must be callable")
    first = fn(*args)
    second = fn(*args)
    if fault is not None:
        second = fault(second)
    differ = int((first.view(-1).view(torch.int32) != second.reshape(-1).contiguous().view(torch.int32)).sum()) \
        if first.dtype == torch.float32 else int((first != second).sum())
    return {"ok": differ == 0, "elements_differ": differ, "result": first}


def simulate_step_times(steps: int, ranks: int, slow: dict[int, float] | None = None, base_s: float = 1.0,
                        jitter: float = 0.03, seed: int = 0) -> np.ndarray:
    """(steps, ranks) compute seconds per step: `base_s` with lognormal jitter, rank r slowed
    by the factor slow[r] (a throttled GPU, a bad NIC, a noisy neighbour)."""
    positive_int("steps", steps)
    positive_int("ranks", ranks)
    positive_number("base_s", base_s)
    slow = slow or {}
    for r, f in slow.items():
        if not 0 <= r < ranks or f <= 0:
            raise ValueError(f"slow maps ranks in 0..{ranks - 1} to factors > 0, got {r}: {f}")
    gen = np.random.default_rng(seed)
    times = base_s * np.exp(gen.normal(0.0, jitter, size=(steps, ranks)))
    for r, f in slow.items():
        times[:, r] *= f
    return times


def detect_stragglers(step_times: np.ndarray, threshold: float = 0.1, z: float = 5.0) -> list[int]:
    """Ranks whose median compute time exceeds the median over ranks by more than `threshold`
    (fractional) AND by more than `z` robust standard deviations (1.4826 x the median absolute
    deviation across ranks). Both tests keep noise from flagging a healthy rank."""
    t = np.asarray(step_times, dtype=float)
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 2:
        raise ValueError(f"step_times must be (steps, ranks) with ranks >= 2, got shape {t.shape}")
    if threshold <= 0 or z <= 0:
        raise ValueError("threshold and z must be > 0")
    per_rank = np.median(t, axis=0)
    centre = float(np.median(per_rank))
    spread = 1.4826 * float(np.median(np.abs(per_rank - centre))) + 1e-12
    return [r for r, v in enumerate(per_rank) if v > centre * (1 + threshold) and (v - centre) / spread > z]

