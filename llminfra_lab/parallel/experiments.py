"""Chapter 6's experiments for torchrun: a tensor-parallel block step and a data-parallel step.

    torchrun --nproc-per-node 2 -m llminfra_lab.parallel tp [--part mlp] [--json]
    torchrun --nproc-per-node 8 -m llminfra_lab.parallel dp [--bucket-bytes 8192] [--json]

Each experiment is a worker from `workers` (every rank builds the same tiny GPT from the
same seed, then takes one sharded step) and a report that rank 0 runs afterwards: it takes
the same step unsharded, on one process, and says how far the ranks' outputs, gradients
and updated weights are from it. The lab runs the same pair through `launch.run_in_process`.
"""
from __future__ import annotations

import torch

from llminfra_lab.launch import Experiment
from llminfra_lab.model import GPT, tiny_config

from .tensor import tp_shard_dim
from .workers import dp_step_worker, tp_block_worker

__all__ = ["tp_experiment_worker", "tp_report", "dp_experiment_worker", "dp_report", "TP", "DP", "EXPERIMENTS"]

TOLERANCE = 1e-5   # float32, sums taken in another order (and other kernels on a GPU)


def _tp_input(config: str, batch: int, seq: int, seed: int) -> torch.Tensor:
    cfg = tiny_config(config)
    return torch.randn(batch, seq, cfg.d_model, generator=torch.Generator().manual_seed(seed + 1))


def tp_experiment_worker(rank: int, world_size: int, *, config: str = "test", part: str = "block", batch: int = 2,
                         seq: int = 8, lr: float = 0.1, seed: int = 0, device: str = "cpu") -> dict:
    """Run on every rank: `workers.tp_block_worker` on an input drawn from `seed`."""
    x = _tp_input(config, batch, seq, seed)
    return tp_block_worker(rank, world_size, tiny_config(config), x, part=part, lr=lr, seed=seed, device=device)


def tp_report(results: list[dict], world_size: int, *, config: str = "test", part: str = "block", batch: int = 2,
              seq: int = 8, lr: float = 0.1, seed: int = 0) -> dict:
    """Rank 0: the unsharded step beside the ranks' (largest absolute differences) and the
    all-reduce log (Megatron: 2 forward, 2 backward per block; 1 and 1 per MLP)."""
    cfg = tiny_config(config)
    model = GPT(cfg, seed=seed)
    x = _tp_input(config, batch, seq, seed).requires_grad_(True)
    module = model.blocks[0] if part == "block" else model.blocks[0].mlp
    out = module(x, model.rope_cos[:seq], model.rope_sin[:seq]) if part == "block" else module(x)
    (out.pow(2).sum() / 2).backward()
    diffs = {"output": max(_diff(r["out"], out) for r in results),
             "input_grad": max(_diff(r["x_grad"], x.grad) for r in results), "weight_grad": 0.0, "updated_weight": 0.0}
    for name, p in module.named_parameters():
        grad, new = (_unshard([r[key][name] for r in results], tp_shard_dim(name)) for key in ("grads", "params"))
        diffs["weight_grad"] = max(diffs["weight_grad"], _diff(grad, p.grad))
        diffs["updated_weight"] = max(diffs["updated_weight"], _diff(new, p.detach() - lr * p.grad))
    kinds = [where for where, _ in results[0]["log"]]
    check = {"g_forward": kinds.count("g-forward"), "f_backward": kinds.count("f-backward"),
             "ok": all(d <= TOLERANCE for d in diffs.values())}
    rows = [{"quantity": k, "max_abs_diff_vs_one_process": v} for k, v in diffs.items()]
    return {"check": check, "rows": rows}


def _tp_fits(world_size: int, *, config: str = "test", **_) -> str | None:
    cfg = tiny_config(config)
    for name in ("n_head", "n_kv_head", "d_ff"):
        if getattr(cfg, name) % world_size:
            return (f"tensor parallelism over {world_size} ranks needs {name} divisible by {world_size}, but "
                    f"tiny_config({config!r}) has {name}={getattr(cfg, name)}")
    return None


def _dp_batch(config: str, batch_per_rank: int, world_size: int, seq: int, seed: int):
    cfg = tiny_config(config)
    gen = torch.Generator().manual_seed(seed + 2)
    shape = (batch_per_rank * world_size, seq)
    return torch.randint(0, cfg.vocab_size, shape, generator=gen), torch.randint(0, cfg.vocab_size, shape, generator=gen)


def dp_experiment_worker(rank: int, world_size: int, *, config: str = "test", batch_per_rank: int = 2, seq: int = 8,
                         lr: float = 0.5, bucket_bytes: int = 8192, seed: int = 0, device: str = "cpu") -> dict:
    """Run on every rank: `workers.dp_step_worker` on a batch of batch_per_rank x world_size rows."""
    x, y = _dp_batch(config, batch_per_rank, world_size, seq, seed)
    return dp_step_worker(rank, world_size, tiny_config(config), x, y, lr=lr, seed=seed,
                          bucket_bytes=bucket_bytes or None, device=device)


def dp_report(results: list[dict], world_size: int, *, config: str = "test", batch_per_rank: int = 2, seq: int = 8,
              lr: float = 0.5, bucket_bytes: int = 8192, seed: int = 0) -> dict:
    """Rank 0: the one-process step on the whole batch beside the data-parallel one."""
    x, y = _dp_batch(config, batch_per_rank, world_size, seq, seed)
    single = GPT(tiny_config(config), seed=seed)
    loss = single.loss(x, y)
    loss.backward()
    diffs = {"loss": abs(results[0]["loss"] - loss.item()),
             "grad": max(_diff(r["grads"][n], p.grad) for r in results for n, p in single.named_parameters()),
             "updated_weight": max(_diff(r["params"][n], p.detach() - lr * p.grad)
                                   for r in results for n, p in single.named_parameters())}
    check = {"loss": results[0]["loss"], "allreduces_per_step": results[0]["allreduces"],
             "ok": all(d <= TOLERANCE for d in diffs.values())}
    rows = [{"quantity": k, "max_abs_diff_vs_one_process": v} for k, v in diffs.items()]
    return {"check": check, "rows": rows}


def _unshard(shards: list[torch.Tensor], dim: int | None) -> torch.Tensor:
    """The full parameter from the ranks' shards (rank 0's copy of a replicated one)."""
    return shards[0] if dim is None else torch.cat(shards, dim)


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b.detach()).abs().max().item()


TP = Experiment(tp_experiment_worker, tp_report,
                options={"config": "test", "part": "block", "batch": 2, "seq": 8, "lr": 0.1, "seed": 0},
                fits=_tp_fits, help="one tensor-parallel step of block 0 (or its MLP) vs the unsharded step")
DP = Experiment(dp_experiment_worker, dp_report,
                options={"config": "test", "batch_per_rank": 2, "seq": 8, "lr": 0.5, "bucket_bytes": 8192, "seed": 0},
                help="one data-parallel SGD step of the whole tiny GPT vs one process on the whole batch")

#: The experiments of `python -m llminfra_lab.parallel`.
EXPERIMENTS = {"tp": TP, "dp": DP}
