"""Attention over a sequence split across processes: ring attention and Ulysses.

Ring attention (Liu et al. 2023): each of P ranks keeps its own queries and passes its
key/value block around a ring. At every step a rank attends its queries to the block it
holds, producing a partial output and its log-sum-exp, and folds it into its running
result with `attention.merge_partials`, the same rescaling FlashAttention uses between
tiles. After P steps every query has seen every key, and the result is exact.

With a causal mask a contiguous split is unbalanced: rank 0's queries see only its own
block, rank P-1's see all P. The zigzag split (used by Megatron's context parallelism and
ring-flash-attention) cuts the sequence into 2P chunks and gives rank r chunks r and
2P-1-r, so every rank does the same work.

Ulysses (DeepSpeed-Ulysses, Jacobs et al. 2023): ranks hold sequence shards of all heads;
one all-to-all turns them into all positions of H/P heads, each rank runs ordinary full
attention on its heads, and a second all-to-all turns the output back into sequence shards.
Its degree is capped by the number of (key/value) heads.

The `*_rank` functions run inside `launch.launch` processes (gloo on CPU).
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist

from llminfra_lab.attention import merge_partials
from llminfra_lab.checks import positive_int
from llminfra_lab.launch import launch

__all__ = ["partial_attention", "shard_positions", "ring_attention_rank", "ring_attention", "ulysses_attention_rank",
           "ulysses_attention", "ring_and_ulysses", "causal_work"]


def partial_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor,
                      k_pos: torch.Tensor, causal: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of queries at positions q_pos to one block of keys at k_pos: (out, lse).

    q (..., Tq, d), k and v (..., Tk, d). out is normalised over this block only; lse
    (..., Tq) is the log-sum-exp of the scaled scores (-inf for a query that sees no key
    here, with out = 0), ready for `merge_partials`.
    """
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(k_pos[None, :] > q_pos[:, None], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    out = torch.exp(scores - safe.unsqueeze(-1)) @ v.float()
    return out, lse


def shard_positions(seq_len: int, world_size: int, rank: int, load_balance: bool = True) -> torch.Tensor:
    """Token positions rank `rank` holds: contiguous, or zigzag (chunks r and 2P-1-r of 2P)."""
    positive_int("seq_len", seq_len)
    positive_int("world_size", world_size)
    parts = 2 * world_size if load_balance else world_size
    if seq_len % parts:
        raise ValueError(f"seq_len ({seq_len}) must be divisible by {parts} (2 x world_size with load balancing)")
    if not (isinstance(rank, int) and 0 <= rank < world_size):
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    c = seq_len // parts
    chunks = [rank, parts - 1 - rank] if load_balance else [rank]
    return torch.cat([torch.arange(i * c, (i + 1) * c) for i in chunks])


def ring_attention_rank(rank: int, world_size: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        load_balance: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One rank of causal ring attention; q, k, v (..., T, d) are the full tensors, of which
    this rank keeps only its own positions. Returns (its output rows, their positions)."""
    pos = shard_positions(q.shape[-2], world_size, rank, load_balance)
    q_local = q[..., pos, :].float()
    kv = torch.stack([k[..., pos, :], v[..., pos, :]]).float().contiguous()
    kv_pos = pos.clone()
    out = torch.zeros_like(q_local)
    lse = torch.full(q_local.shape[:-1], float("-inf"))
    for step in range(world_size):
        part, part_lse = partial_attention(q_local, kv[0], kv[1], pos, kv_pos)
        out, lse = merge_partials(out, lse, part, part_lse)
        if step < world_size - 1:            # pass the block on: send to rank+1, receive from rank-1
            nxt, prev = (rank + 1) % world_size, (rank - 1) % world_size
            kv_in, pos_in = torch.empty_like(kv), torch.empty_like(kv_pos)
            reqs = [dist.isend(kv, nxt), dist.isend(kv_pos, nxt), dist.irecv(kv_in, prev), dist.irecv(pos_in, prev)]
            for req in reqs:
                req.wait()
            kv, kv_pos = kv_in, pos_in
    return out, pos


def ulysses_attention_rank(rank: int, world_size: int, q: torch.Tensor, k: torch.Tensor,
                           v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One rank of Ulysses attention; q, k, v (batch, heads, T, d) full tensors, of which this
    rank keeps the contiguous sequence shard. Returns (its output rows, their positions)."""
    pos = shard_positions(q.shape[-2], world_size, rank, load_balance=False)
    local = [t[:, :, pos, :].float().contiguous() for t in (q, k, v)]
    # all-to-all 1: (batch, heads, T/P, d) of all heads -> (batch, heads/P, T, d) of my heads
    q_h, k_h, v_h = (_seq_to_heads(t, world_size) for t in local)
    out_h, _ = partial_attention(q_h, k_h, v_h, torch.arange(q.shape[-2]), torch.arange(q.shape[-2]))
    return _heads_to_seq(out_h, world_size), pos


def _seq_to_heads(x: torch.Tensor, p: int) -> torch.Tensor:
    b, h, t, d = x.shape
    send = x.reshape(b, p, h // p, t, d).permute(1, 0, 2, 3, 4).contiguous()   # [dest rank] = its heads
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send)                                          # [src rank] = its positions
    return recv.permute(1, 2, 0, 3, 4).reshape(b, h // p, p * t, d)


def _heads_to_seq(x: torch.Tensor, p: int) -> torch.Tensor:
    b, hp, t, d = x.shape
    send = x.reshape(b, hp, p, t // p, d).permute(2, 0, 1, 3, 4).contiguous()  # [dest rank] = its positions
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send)                                          # [src rank] = its heads
    return recv.permute(1, 0, 2, 3, 4).reshape(b, p * hp, t // p, d)


def _check(q, k, v, world_size):
    if not all(isinstance(t, torch.Tensor) for t in (q, k, v)) or q.dim() != 4 or q.shape != k.shape or k.shape != v.shape:
        raise ValueError("q, k, v must be torch tensors of one shape (batch, heads, seq, dim)")
    positive_int("world_size", world_size)


def _assemble(results, like):
    out = torch.empty(like.shape, dtype=torch.float32)
    for rows, pos in results:
        out[..., pos, :] = rows
    return out


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, world_size: int,
                   load_balance: bool = True) -> torch.Tensor:
    """Causal attention of q, k, v (batch, heads, seq, dim) computed by ring attention on
    world_size local gloo processes; the output (float32), reassembled in position order."""
    _check(q, k, v, world_size)
    shard_positions(q.shape[-2], world_size, 0, load_balance)      # validates divisibility
    return _assemble(launch(ring_attention_rank, world_size, q, k, v, load_balance), q)


def ulysses_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, world_size: int) -> torch.Tensor:
    """Causal attention computed by Ulysses all-to-all on world_size gloo processes (float32)."""
    _check(q, k, v, world_size)
    if q.shape[1] % world_size:
        raise ValueError(f"heads ({q.shape[1]}) must be divisible by world_size ({world_size}) for Ulysses")
    shard_positions(q.shape[-2], world_size, 0, load_balance=False)
    return _assemble(launch(ulysses_attention_rank, world_size, q, k, v), q)


def _both_rank(rank: int, world_size: int, q, k, v):
    return ring_attention_rank(rank, world_size, q, k, v, True), ulysses_attention_rank(rank, world_size, q, k, v)


def ring_and_ulysses(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ring attention with zigzag, Ulysses) outputs from one launch of world_size processes."""
    _check(q, k, v, world_size)
    if q.shape[1] % world_size:
        raise ValueError(f"heads ({q.shape[1]}) must be divisible by world_size ({world_size}) for Ulysses")
    shard_positions(q.shape[-2], world_size, 0, load_balance=True)
    results = launch(_both_rank, world_size, q, k, v)
    return _assemble([r[0] for r in results], q), _assemble([r[1] for r in results], q)


def causal_work(seq_len: int, world_size: int, load_balance: bool) -> torch.Tensor:
    """(world_size, world_size) query-key pairs rank r computes at ring step s (causal mask)."""
    work = torch.zeros(world_size, world_size, dtype=torch.long)
    shards = [shard_positions(seq_len, world_size, r, load_balance) for r in range(world_size)]
    for r in range(world_size):
        for s in range(world_size):
            kv = shards[(r - s) % world_size]
            work[r, s] = int((kv[None, :] <= shards[r][:, None]).sum())
    return work
