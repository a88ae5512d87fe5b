"""Data parallelism: every rank holds the whole model, takes a slice of the batch, and the
ranks average their gradients with an all-reduce (optionally bucketed, as PyTorch DDP does)."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from llminfra_lab.checks import positive_int

__all__ = ["allreduce_gradients"]


def allreduce_gradients(module: nn.Module, bucket_bytes: int | None = None) -> int:
    """Average every parameter's .grad over the data-parallel group; returns the number of all-reduces.

    Without `bucket_bytes`, one all-reduce per parameter. With it, gradients are packed
    into flat buckets of at most `bucket_bytes` (a parameter larger than that gets its own
    bucket), one all-reduce each, as PyTorch DDP does (its default bucket is 25 MiB).
    Parameters without a gradient are skipped. Works (and does nothing) without a group.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if bucket_bytes is not None:
        positive_int("bucket_bytes", bucket_bytes)
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world == 1 or not grads:
        return 0
    if bucket_bytes is None:
        for g in grads:
            dist.all_reduce(g)
            g.div_(world)
        return len(grads)
    buckets: list[list[torch.Tensor]] = [[]]
    size = 0
    for g in grads:
        nbytes = g.numel() * g.element_size()
        if buckets[-1] and size + nbytes > bucket_bytes:
            buckets.append([])
            size = 0
        buckets[-1].append(g)
        size += nbytes
    for bucket in buckets:
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat.div_(world)
        offset = 0
        for g in bucket:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
    return len(buckets)
