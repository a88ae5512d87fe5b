"""Flash-decoding (split-KV): one query against a long KV cache, in parallel chunks.

During decode each sequence has one new query per head and a long cache of keys and
values. FlashAttention parallelises over batch x heads x query blocks; with one query and
a small batch that is too few blocks to fill a GPU (batch 1 x 8 KV heads = 8 thread
blocks on an H100's 132 SMs). Flash-decoding (Dao, Haziza, Massa and Sizov, 2023) also
splits the KV cache's length into chunks: each chunk yields a partial output normalised
over its own keys and the log-sum-exp of its scores, and a last step merges the partials
with the same rescaling FlashAttention applies between tiles (`attention.merge_partials`).
The merge is exact, so the result equals attention over the whole cache.

Grouped-query heads share a cache: the `group` query heads of one KV head are attended
together as `group` rows against that head's keys (how decode kernels pack GQA), so the
cache is read once per KV head, not once per query head.
"""
from __future__ import annotations

import math

import torch

from llminfra_lab.attention import merge_partials
from llminfra_lab.checks import positive_int

__all__ = ["chunk_attention", "split_kv_attention", "split_bounds", "decode_work_items"]


def chunk_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q (..., rows, d) to one chunk of keys and values (..., n, d): (out, lse).

    out is softmax(q k^T / sqrt(d)) v normalised over this chunk only; lse (..., rows) is the
    natural log of the softmax denominator, log sum_j exp(q.k_j / sqrt(d)), computed in float32.
    """
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.exp(scores - lse.unsqueeze(-1)) @ v.float()
    return out, lse


def split_bounds(length: int, n_splits: int) -> list[tuple[int, int]]:
    """[start, end) of `n_splits` contiguous chunks of a cache of `length` tokens, as even as
    possible (at most n_splits chunks: never an empty one)."""
    positive_int("length", length)
    positive_int("n_splits", n_splits)
    size = math.ceil(length / n_splits)
    return [(s, min(s + size, length)) for s in range(0, length, size)]


def split_kv_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_splits: int) -> torch.Tensor:
    """Decode attention with the KV cache split into `n_splits` chunks, merged exactly.

    q (batch, n_heads, rows, d): the newest token(s), which see every cached key (rows = 1
    in plain decoding); k, v (batch, n_kv_heads, length, d) with n_heads a multiple of
    n_kv_heads. Returns (batch, n_heads, rows, d) in q's dtype, equal to
    softmax(q k^T / sqrt(d)) v over the whole cache.
    """
    _check(q, k, v)
    b, h, rows, d = q.shape
    kv_h, length = k.shape[1], k.shape[2]
    group = h // kv_h
    qg = q.reshape(b, kv_h, group * rows, d)              # one KV head's query heads side by side
    out = lse = None
    for start, end in split_bounds(length, n_splits):     # on a GPU: one thread block per chunk, in parallel
        part, part_lse = chunk_attention(qg, k[:, :, start:end], v[:, :, start:end])
        out, lse = (part, part_lse) if out is None else merge_partials(out, lse, part, part_lse)
    return out.reshape(b, h, rows, d).to(q.dtype)


def decode_work_items(batch: int, n_kv_heads: int, length: int, n_splits: int = 1) -> int:
    """Independent (sequence, KV head, chunk) work items a decode attention step offers a GPU:
    batch x n_kv_heads x the number of chunks the cache of `length` tokens is cut into."""
    positive_int("batch", batch)
    positive_int("n_kv_heads", n_kv_heads)
    return batch * n_kv_heads * len(split_bounds(length, n_splits))


def _check(q, k, v) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor (batch, heads, seq, dim), got "
                             f"{getattr(t, 'shape', type(t).__name__)}")
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]:
        raise ValueError(f"k and v must match, and share batch and dim with q: q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"q's heads ({q.shape[1]}) must be a multiple of k's KV heads ({k.shape[1]})")
    if q.shape[2] < 1 or k.shape[2] < 1:
        raise ValueError(f"q needs at least one row and k at least one cached token: q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}")
