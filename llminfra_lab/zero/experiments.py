"""Chapter 7's experiment for torchrun: ZeRO stages 0-3 against PyTorch's DDP and FSDP2.

    torchrun --nproc-per-node 8 -m llminfra_lab.zero compare [--stages 1,2,3] [--steps 3] [--json]

The worker is `compare.compare_runs`, the very function the lab runs under
`launch.launch`: every rank trains the same tiny GPT on its own micro-batches with each
method. `compare_report` says, per method, the losses (every rank's), how far the final
weights are from plain data parallel's, a fingerprint of those weights, and the bytes of
model states rank 0 held against `memory.model_state_bytes`.
"""
from __future__ import annotations

from llminfra_lab.launch import Experiment

from .compare import compare_runs, formula_for_run
from .engine import STAGES

__all__ = ["compare_worker", "compare_report", "COMPARE", "EXPERIMENTS", "parse_stages"]

TOLERANCE = 1e-5   # float32: sharding moves bytes, not arithmetic (on CPU the differences are 0)


def parse_stages(stages: str) -> tuple[int, ...]:
    """"1,2,3" -> (1, 2, 3); "" -> () (only DDP and FSDP2)."""
    try:
        out = tuple(int(s) for s in stages.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"stages must be a comma-separated list drawn from {STAGES}, got {stages!r}") from None
    if any(s not in STAGES for s in out):
        raise ValueError(f"stages must be drawn from {STAGES}, got {stages!r}")
    return out


def compare_worker(rank: int, world_size: int, *, stages: str = "0,1,2,3", fsdp2: bool = True, steps: int = 3,
                   micro_batch: int = 2, seq_len: int = 16, seed: int = 0, device: str = "cpu") -> dict:
    """Run on every rank: `compare_runs` with the stages given as a string (the command line's form)."""
    return compare_runs(rank, world_size, steps=steps, stages=parse_stages(stages), fsdp2=fsdp2,
                        micro_batch=micro_batch, seq_len=seq_len, seed=seed, device=device)


def compare_report(results: list[dict], world_size: int, **options) -> dict:
    """Rank 0: per method, every rank's losses and the final weights' difference from DDP
    and fingerprint ("check": exact, to compare runs), and rank 0's bytes ("rows")."""
    check, rows = {}, []
    for method, first in results[0].items():
        diff = max(r[method].get("max_weight_diff", 0.0) for r in results)
        check[method] = {"losses_by_rank": [r[method]["losses"] for r in results],
                         "weights_sha256": first["weights_sha256"], "max_weight_diff": diff}
        row = {"method": method, "final_loss_rank0": first["losses"][-1], "max_weight_diff": diff}
        if method.startswith("zero"):
            stage = int(method[4:])
            row["held_MB"] = first["held_bytes"]["total"] / 1e6
            row["formula_MB"] = formula_for_run(results[0], stage, world_size)["total"] / 1e6
            row["comm_elements"] = first["comm_elements"]
        elif method == "fsdp2":
            row["held_MB"] = (first["param_bytes"] + first["optimizer_bytes"]) / 1e6
        rows.append(row)
    ok = all(c["max_weight_diff"] <= TOLERANCE for c in check.values())
    return {"check": {"ok": ok, **check}, "rows": rows}


def _compare_fits(world_size: int, *, stages: str = "0,1,2,3", **_) -> str | None:
    if world_size < 2:
        return f"ZeRO shards across ranks: start at least 2 processes (--nproc-per-node 2), got world size {world_size}"
    try:
        parse_stages(stages)
    except ValueError as err:
        return str(err)
    return None


COMPARE = Experiment(compare_worker, compare_report,
                     options={"stages": "0,1,2,3", "fsdp2": True, "steps": 3, "micro_batch": 2, "seq_len": 16,
                              "seed": 0},
                     fits=_compare_fits,
                     help="ZeRO stages 0-3 (this package's engine) vs PyTorch DDP and FSDP2 on the same tiny GPT")

#: The experiments of `python -m llminfra_lab.zero`.
EXPERIMENTS = {"compare": COMPARE}
