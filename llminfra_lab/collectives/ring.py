"""Ring collectives from nothing but point-to-point send and receive.

p ranks sit on a ring; each only ever sends to its right neighbour (rank + 1) and
receives from its left neighbour (rank - 1). The buffer is cut into p chunks.

- Reduce-scatter: in p - 1 steps every rank forwards a partial sum one hop and adds the
  chunk it receives; afterwards rank r holds the full sum of chunk r.
- All-gather: in p - 1 more steps the finished chunks travel round the ring.
- All-reduce = reduce-scatter + all-gather, so each rank sends 2 (p - 1) chunks.

`ring_schedule` says which chunk each rank sends and receives at each step: it is the one
definition of the ring, used by the real collectives below (over `torch.distributed`),
by `ring_contributions` (a simulation in plain Python) and by the chapter's schematic.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from llminfra_lab.checks import positive_int

__all__ = [
    "ring_schedule", "ring_contributions", "chunk_sizes",
    "ring_reduce_scatter", "ring_all_gather", "ring_all_reduce", "ring_vs_torch",
]

PHASES = ("reduce_scatter", "all_gather")


def ring_schedule(rank: int, world_size: int) -> dict[str, list[tuple[int, int]]]:
    """The chunks rank `rank` sends and receives at each step of a ring all-reduce.

    Returns {"reduce_scatter": [(send, recv), ...], "all_gather": [(send, recv), ...]},
    p - 1 steps per phase, as chunk indices in 0 .. p - 1. At every step the rank sends
    chunk `send` to rank + 1 and receives chunk `recv` from rank - 1 (which is what that
    neighbour sends). In reduce-scatter it adds what it receives, and the chunk it sends
    next is the one it just received, so after the last step rank r holds the complete
    sum of chunk r. In all-gather it overwrites instead, starting by sending chunk r.
    """
    positive_int("world_size", world_size)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    p = world_size
    reduce_scatter = [((rank - step - 1) % p, (rank - step - 2) % p) for step in range(p - 1)]
    all_gather = [((rank - step) % p, (rank - step - 1) % p) for step in range(p - 1)]
    return {"reduce_scatter": reduce_scatter, "all_gather": all_gather}


def ring_contributions(world_size: int) -> list[list[list[frozenset[int]]]]:
    """Simulate the ring all-reduce on p ranks without sending anything.

    Returns one snapshot per moment (the start, then after each of the 2 (p - 1) steps);
    snapshot[r][c] is the set of ranks whose input chunk c of rank r's buffer holds the
    sum of. At the start it is {r}; after reduce-scatter rank r's chunk r is complete;
    at the end every chunk of every rank is.
    """
    positive_int("world_size", world_size)
    p = world_size
    schedules = [ring_schedule(r, p) for r in range(p)]
    state = [[frozenset([r]) for _ in range(p)] for r in range(p)]
    snapshots = [[row[:] for row in state]]
    for phase in PHASES:
        for step in range(p - 1):
            new = [row[:] for row in state]
            for r in range(p):
                send, _ = schedules[r][phase][step]
                right = (r + 1) % p
                assert schedules[right][phase][step][1] == send   # the neighbour expects this chunk
                new[right][send] = state[r][send] | state[right][send] if phase == "reduce_scatter" else state[r][send]
            state = new
            snapshots.append([row[:] for row in state])
    return snapshots


def chunk_sizes(numel: int, world_size: int) -> list[int]:
    """Element counts of the `world_size` ring chunks of a `numel`-element buffer.

    The first ``numel % world_size`` chunks get one extra element (the split
    `torch.tensor_split` makes); chunks are empty when ``numel < world_size``.
    """
    if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
        raise ValueError(f"numel must be an int >= 0, got {numel!r}")
    positive_int("world_size", world_size)
    base, extra = divmod(numel, world_size)
    return [base + (1 if i < extra else 0) for i in range(world_size)]


# ---------------------------------------------------------------------------------------
# The real thing: the schedule run over torch.distributed
# ---------------------------------------------------------------------------------------

def _ring_reduce_scatter_inplace(flat: torch.Tensor, rank: int, world: int, stats: dict | None) -> None:
    chunks = _chunks(flat, world)
    for send, recv in ring_schedule(rank, world)["reduce_scatter"]:
        incoming = torch.empty_like(chunks[recv])
        _exchange(chunks[send], incoming, rank, world, stats)
        chunks[recv].add_(incoming)        # after the last step chunk `rank` is complete


def _ring_all_gather_inplace(chunks: list[torch.Tensor], rank: int, world: int, stats: dict | None) -> None:
    for send, recv in ring_schedule(rank, world)["all_gather"]:
        _exchange(chunks[send], chunks[recv], rank, world, stats)   # receive in place


def ring_reduce_scatter(tensor: torch.Tensor, stats: dict | None = None) -> torch.Tensor:
    """Sum `tensor` over all ranks and return this rank's chunk of the flattened sum.

    Chunk r is ``torch.split(sum.view(-1), chunk_sizes(numel, p))[r]``. `tensor` is not
    modified. `stats`, if given, accumulates "bytes_sent", "bytes_received" and "steps".
    Must run inside a process group (e.g. a function started by `launch`).
    """
    rank, world = _group_info()
    work = _flat_view(tensor, "tensor").clone()
    _ring_reduce_scatter_inplace(work, rank, world, stats)
    return _chunks(work, world)[rank].clone()


def ring_all_gather(chunk: torch.Tensor, sizes: Sequence[int] | None = None,
                    stats: dict | None = None) -> torch.Tensor:
    """Concatenate every rank's 1-D `chunk` in rank order, on every rank.

    `sizes` lists each rank's chunk length (all ranks must pass the same list); by
    default every chunk is as long as this rank's. Returns a new 1-D tensor.
    """
    rank, world = _group_info()
    chunk = _flat_view(chunk, "chunk")
    sizes = [chunk.numel()] * world if sizes is None else list(sizes)
    if len(sizes) != world or any((not isinstance(s, int)) or s < 0 for s in sizes):
        raise ValueError(f"sizes must be {world} ints >= 0 (one per rank), got {sizes!r}")
    if sizes[rank] != chunk.numel():
        raise ValueError(f"sizes[{rank}] = {sizes[rank]} but this rank's chunk has {chunk.numel()} elements")
    out = torch.empty(sum(sizes), dtype=chunk.dtype, device=chunk.device)
    pieces = list(torch.split(out, sizes))
    pieces[rank].copy_(chunk)
    _ring_all_gather_inplace(pieces, rank, world, stats)
    return out


def ring_all_reduce(tensor: torch.Tensor, stats: dict | None = None) -> torch.Tensor:
    """Sum `tensor` over all ranks, in place, with a ring: reduce-scatter then all-gather.

    Works for any contiguous shape and size (uneven or empty chunks included) and
    returns `tensor`. Each rank sends 2 (p - 1) chunks, about 2 (p - 1) / p of the bytes.
    """
    rank, world = _group_info()
    flat = _flat_view(tensor, "tensor")
    _ring_reduce_scatter_inplace(flat, rank, world, stats)
    _ring_all_gather_inplace(_chunks(flat, world), rank, world, stats)
    return tensor


def ring_vs_torch(rank: int, world_size: int, numel: int, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Run on every rank (via `launch`, or torchrun): the ring collectives beside torch's own.

    Each rank draws its own float64 vector of `numel` elements from ``seed + rank`` (on
    the CPU, then moved to `device`: "cuda:LOCAL_RANK" under NCCL).
    Returns the largest absolute differences from `dist.all_reduce` (all-reduce and
    reduce-scatter) and from a padded `dist.all_gather` (all-gather), and the bytes this
    rank sent during the ring all-reduce.
    """
    sizes = chunk_sizes(numel, world_size)
    gen = torch.Generator().manual_seed(seed + rank)
    x = torch.randn(numel, generator=gen, dtype=torch.float64).to(device)

    reference = x.clone()
    dist.all_reduce(reference)                       # torch's own all-reduce, the reference

    stats: dict[str, int] = {}
    ours = ring_all_reduce(x.clone(), stats=stats)

    mine = ring_reduce_scatter(x)
    ref_chunk = torch.split(reference, sizes)[rank]

    # all-gather: each rank contributes its own (uneven) chunk of x
    piece = torch.split(x, sizes)[rank].clone()
    gathered = ring_all_gather(piece, sizes)
    width = max(sizes)
    padded = torch.zeros(width, dtype=x.dtype, device=x.device)
    padded[:piece.numel()] = piece
    bucket = [torch.empty(width, dtype=x.dtype, device=x.device) for _ in range(world_size)]
    dist.all_gather(bucket, padded)
    ref_gathered = torch.cat([b[:s] for b, s in zip(bucket, sizes)])

    return {
        "all_reduce_err": _max_abs_diff(ours, reference),
        "reduce_scatter_err": _max_abs_diff(mine, ref_chunk),
        "all_gather_err": _max_abs_diff(gathered, ref_gathered),
        "all_gather_shape_ok": gathered.shape == ref_gathered.shape,
        "scale": float(reference.abs().max()) if numel else 0.0,
        "bytes_sent": stats.get("bytes_sent", 0),
        "bytes_received": stats.get("bytes_received", 0),
        "steps": stats.get("steps", 0),
        "element_size": x.element_size(),
    }


# ---------------------------------------------------------------------------------------
# Helpers (trust their callers)
# ---------------------------------------------------------------------------------------

def _group_info() -> tuple[int, int]:
    if not dist.is_initialized():
        raise ValueError("no torch.distributed process group: call this inside a function run by launch()")
    return dist.get_rank(), dist.get_world_size()


def _flat_view(tensor: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous() first)")
    if not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype in
            (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8)):
        raise ValueError(f"{name} must hold numbers, got dtype {tensor.dtype}")
    return tensor.view(-1)


def _chunks(flat: torch.Tensor, world: int) -> list[torch.Tensor]:
    return list(torch.split(flat, chunk_sizes(flat.numel(), world)))


def _exchange(send: torch.Tensor, recv: torch.Tensor, rank: int, world: int, stats: dict | None) -> None:
    """Send `send` to the right neighbour while receiving `recv` from the left one."""
    right, left = (rank + 1) % world, (rank - 1) % world
    if dist.get_backend() == "nccl":
        # NCCL runs a send and a receive to the same peer (p = 2) on one stream: issued
        # separately, both ranks' sends could wait for receives queued behind them.
        # batch_isend_irecv issues the pair as one NCCL group.
        p2p = ([dist.P2POp(dist.isend, send.contiguous(), right)] if send.numel() else []) + \
              ([dist.P2POp(dist.irecv, recv, left)] if recv.numel() else [])
        ops = dist.batch_isend_irecv(p2p) if p2p else []
    else:
        ops = []
        if send.numel():
            ops.append(dist.isend(send.contiguous(), dst=right))
        if recv.numel():
            ops.append(dist.irecv(recv, src=left))
    for op in ops:
        op.wait()
    if stats is not None:
        stats["bytes_sent"] = stats.get("bytes_sent", 0) + send.numel() * send.element_size()
        stats["bytes_received"] = stats.get("bytes_received", 0) + recv.numel() * recv.element_size()
        stats["steps"] = stats.get("steps", 0) + 1


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0
