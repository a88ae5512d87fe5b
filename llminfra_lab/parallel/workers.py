"""The functions `launch.launch` runs on each local process (they must live at module level).

Each builds the same tiny GPT on every rank (same seed), runs one tensor-parallel or
data-parallel training step through torch.distributed, and returns what the caller needs
to compare it with the one-process step. `cfg` is a `model.GPTConfig` (for example
`model.tiny_config("test")`) or a dict of its fields.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from llminfra_lab.model import GPT, GPTConfig

from .data import allreduce_gradients
from .tensor import TensorParallelBlock, TensorParallelMLP, record_allreduces

__all__ = ["tp_block_worker", "dp_step_worker"]


def _config(cfg: GPTConfig | dict) -> GPTConfig:
    if isinstance(cfg, GPTConfig):
        return cfg
    if isinstance(cfg, dict):
        return GPTConfig(**cfg)
    raise ValueError(f"cfg must be a model.GPTConfig or a dict of its fields, got {type(cfg).__name__}")


def dp_step_worker(rank: int, world_size: int, cfg: GPTConfig | dict, x: torch.Tensor, y: torch.Tensor,
                   lr: float = 0.1, seed: int = 0, bucket_bytes: int | None = None, device: str = "cpu") -> dict:
    """Data-parallel SGD step: rank r takes the r-th contiguous 1/N of the batch rows and averages grads.

    Every rank builds the same model (same seed), computes the mean loss on its
    batch/N rows, all-reduces the gradients and steps. Returns the same dictionary as
    {"loss", "grads", "params"} of the one-process step (the loss averaged over ranks)
    plus the number of all-reduces. The model is built on the CPU and moved to `device`
    ("cuda:LOCAL_RANK" under NCCL); the returned tensors are on the CPU.
    """
    if x.shape[0] % world_size:
        raise ValueError(f"batch {x.shape[0]} must be divisible by the data-parallel size {world_size}")
    model = GPT(_config(cfg), seed=seed).to(device)
    rows = slice(rank * x.shape[0] // world_size, (rank + 1) * x.shape[0] // world_size)
    loss = model.loss(x[rows].to(device), y[rows].to(device))
    loss.backward()
    n_allreduce = allreduce_gradients(model, bucket_bytes)
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    grads = {n: p.grad.cpu().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    return {"loss": mean_loss.item() / world_size, "grads": grads, "allreduces": n_allreduce,
            "params": {n: p.detach().cpu().clone() for n, p in model.named_parameters()}}


def tp_block_worker(rank: int, world_size: int, cfg: GPTConfig | dict, x: torch.Tensor, part: str = "block",
                    lr: float = 0.1, seed: int = 0, device: str = "cpu") -> dict:
    """Tensor-parallel forward, backward and SGD step of block 0 (or its MLP) of the tiny GPT.

    Every rank builds the same GPT (same seed) and shards block 0 with
    `TensorParallelBlock.from_block` (part="block") or its MLP with `TensorParallelMLP`
    (part="mlp"), runs x (batch, seq, d_model) through it with loss = sum(out^2) / 2, and
    takes an SGD step. Returns this rank's output (replicated), input gradient, weight
    shards' gradients and updated values, and the all-reduce log, for the caller to
    compare with the unsharded module. The model is built on the CPU and moved to
    `device`; the returned tensors are on the CPU.
    """
    if part not in ("block", "mlp"):
        raise ValueError(f"part must be 'block' or 'mlp', got {part!r}")
    model = GPT(_config(cfg), seed=seed).to(device)
    t = x.shape[1]
    cos, sin = model.rope_cos[:t], model.rope_sin[:t]
    if part == "block":
        tp = TensorParallelBlock.from_block(model.blocks[0], rank, world_size)
        run = lambda inp: tp(inp, cos, sin)                        # noqa: E731
    else:
        tp = TensorParallelMLP(model.blocks[0].mlp, rank, world_size)
        run = tp
    x = x.to(device).clone().requires_grad_(True)
    with record_allreduces() as log:
        out = run(x)
        (out.pow(2).sum() / 2).backward()
    grads = {n: p.grad.cpu().clone() for n, p in tp.named_parameters()}
    with torch.no_grad():
        for p in tp.parameters():
            p -= lr * p.grad
    return {"out": out.detach().cpu(), "x_grad": x.grad.cpu().clone(), "grads": grads, "log": list(log),
            "params": {n: p.detach().cpu().clone() for n, p in tp.named_parameters()}}
