"""Step time of each ZeRO stage and of FSDP2 as a ratio to plain data parallel, on local processes.

    .venv/bin/python benchmarks/bench_zero.py [world_size] [n_layer]

Trains the chapter 7 GPT (`model.tiny_config("small")`, with `n_layer` blocks) on `world_size`
local CPU processes with gloo, using torch DDP (torch.optim.Adam, all-reduced gradients),
`zero.ZeroEngine` at stages 0-3 and FSDP2 (`fully_shard`). Each method runs 2 warm-up
steps and then 5 timed steps; the script prints the median step time and the ratio to
torch DDP (> 1 means slower than DDP). On CPU with gloo the collectives are memory copies
between processes, so the ratios show the cost of the extra collectives and bookkeeping,
not what a GPU cluster would see.
"""
from __future__ import annotations

import statistics
import sys
import time

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from llminfra_lab import zero
from llminfra_lab.launch import launch
from llminfra_lab.model import GPT, tiny_config

WARMUP, TIMED = 2, 5


def _timed(step_fn, batches) -> float:
    times = []
    for i, (x, y) in enumerate(batches):
        dist.barrier()
        start = time.perf_counter()
        step_fn(x, y)
        dist.barrier()
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(rank: int, world_size: int, n_layer: int) -> dict[str, float]:
    cfg = tiny_config("small", n_layer=n_layer)
    gen = torch.Generator().manual_seed(rank)
    batches = [(t[:, :-1], t[:, 1:]) for t in
               (torch.randint(cfg.vocab_size, (4, 33), generator=gen) for _ in range(WARMUP + TIMED))]
    out = {}

    model = GPT(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def ddp_step(x, y):
        model.loss(x, y).backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
            p.grad.div_(world_size)
        opt.step()
        opt.zero_grad(set_to_none=True)
    out["torch-ddp"] = _timed(ddp_step, batches)

    for stage in zero.STAGES:
        engine = zero.ZeroEngine(zero.gpt_units(GPT(cfg)), zero.sequential_loss, stage=stage, lr=1e-3)
        out[f"zero{stage}"] = _timed(engine.step, batches)

    sharded = GPT(cfg)
    mesh = init_device_mesh("cpu", (world_size,))
    for block in sharded.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(sharded, mesh=mesh)
    opt2 = torch.optim.Adam(sharded.parameters(), lr=1e-3)

    def fsdp_step(x, y):
        sharded.loss(x, y).backward()
        opt2.step()
        opt2.zero_grad(set_to_none=True)
    out["fsdp2"] = _timed(fsdp_step, batches)
    return out


def main() -> int:
    world_size = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    n_layer = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    results = launch(bench, world_size, n_layer, timeout_s=600)
    times = {k: max(r[k] for r in results) for k in results[0]}   # the slowest rank sets the pace
    print(f"{world_size} ranks, GPT with {n_layer} blocks, torch {torch.__version__}, gloo on CPU")
    print(f"{'method':<10} {'median step ms':>15} {'ratio to torch-ddp':>19}")
    for method, t in times.items():
        print(f"{method:<10} {t * 1e3:>15.1f} {t / times['torch-ddp']:>19.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
