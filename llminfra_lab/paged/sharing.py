"""Sharing blocks between sequences: parallel sampling and beam search with copy-on-write.

Parallel sampling (n completions of one prompt) prefills the prompt once and forks the
sequence n times: the children point at the same physical blocks (reference counts go up) and
only the block a child is writing into gets copied. Beam search forks the surviving beams at
every step and frees the ones that fall out, so common prefixes of the beams stay shared, as
vLLM's paper describes (Kwon et al. 2023, section 4.4).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from llminfra_lab.checks import nonnegative_int, positive_int, positive_number
from llminfra_lab.model import GPT

from .cache import PagedKVCache, paged_forward

__all__ = ["SharingStats", "parallel_sample", "beam_search"]


@dataclass
class SharingStats:
    peak_blocks: int           # blocks in use at the worst moment, with sharing
    unshared_blocks: int       # blocks the same sequences would take with a private copy each
    copies: int                # copy-on-write block copies made


def _check(model, prompt, max_new_tokens, block_size):
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a GPT, got {type(model).__name__}")
    if not isinstance(prompt, list) or not prompt or not all(isinstance(t, int) for t in prompt):
        raise ValueError("prompt must be a non-empty list of token ids")
    positive_int("max_new_tokens", max_new_tokens)
    positive_int("block_size", block_size)
    if len(prompt) + max_new_tokens > model.cfg.max_seq_len:
        raise ValueError(f"{len(prompt)} + {max_new_tokens} tokens exceed max_seq_len {model.cfg.max_seq_len}")


def _blocks(n_tokens: int, block_size: int) -> int:
    return -(-n_tokens // block_size)


@torch.no_grad()
def parallel_sample(model: GPT, prompt: list[int], n: int, max_new_tokens: int, temperature: float = 1.0,
                    seed: int = 0, block_size: int = 16) -> tuple[list[list[int]], SharingStats]:
    """n sampled completions of one prompt sharing its blocks; sample i uses a generator seeded seed + i.

    Each child draws exactly as `model.generate(..., temperature, generator=Generator().manual_seed(seed + i))`.
    """
    _check(model, prompt, max_new_tokens, block_size)
    positive_int("n", n)
    positive_number("temperature", temperature)
    nonnegative_int("seed", seed)
    total = len(prompt) + max_new_tokens
    cache = PagedKVCache(model.cfg, n * _blocks(total, block_size), block_size,
                         dtype=next(model.parameters()).dtype)
    cache.add_sequence(0)
    logits = paged_forward(model, cache, [0], [prompt]).expand(n, -1)
    for i in range(1, n):
        cache.fork_sequence(0, i)
    gens = [torch.Generator().manual_seed(seed + i) for i in range(n)]
    outs, peak = [[] for _ in range(n)], cache.num_used_blocks
    copies = 0
    for step in range(max_new_tokens):
        for i in range(n):
            probs = torch.softmax(logits[i:i + 1] / temperature, dim=-1)
            outs[i].append(int(torch.multinomial(probs, 1, generator=gens[i])))
        if step == max_new_tokens - 1:
            break
        need = sum(cache.blocks_needed(i, 1) for i in range(n))
        fresh = sum(-(-(cache.seq_len(i) + 1) // block_size) - len(cache.block_table(i)) for i in range(n))
        copies += need - fresh
        logits = paged_forward(model, cache, list(range(n)), [[o[-1]] for o in outs])
        peak = max(peak, cache.num_used_blocks)
    return outs, SharingStats(peak, n * _blocks(total - 1, block_size), copies)


@torch.no_grad()
def beam_search(model: GPT, prompt: list[int], beam_width: int, max_new_tokens: int, block_size: int = 4
                ) -> tuple[list[tuple[list[int], float]], SharingStats]:
    """Beam search over log-probabilities (no length penalty, no end token): the final beams, best first.

    Each step scores every (beam, next token), keeps the beam_width best (torch.topk order), forks
    each kept candidate from its parent sequence and frees the parents, so shared prefixes stay in
    one copy. Returns [(tokens, total log-probability)] and block statistics.
    """
    _check(model, prompt, max_new_tokens, block_size)
    positive_int("beam_width", beam_width)
    total = len(prompt) + max_new_tokens
    cache = PagedKVCache(model.cfg, 2 * beam_width * _blocks(total, block_size) + 1, block_size,
                         dtype=next(model.parameters()).dtype)
    cache.add_sequence(0)
    logp = torch.log_softmax(paged_forward(model, cache, [0], [prompt]), dim=-1)
    beams, next_id, peak, copies = [(0, [], 0.0)], 1, cache.num_used_blocks, 0
    for step in range(max_new_tokens):
        scores = torch.tensor([b[2] for b in beams], dtype=torch.float64)[:, None] + logp.double()
        top = torch.topk(scores.flatten(), min(beam_width, scores.numel()))
        children = []
        for value, flat in zip(top.values.tolist(), top.indices.tolist()):
            parent, token = beams[flat // scores.shape[1]], flat % scores.shape[1]
            cache.fork_sequence(parent[0], next_id)
            children.append((next_id, parent[1] + [token], value))
            next_id += 1
        for seq_id, _, _ in beams:
            cache.free_sequence(seq_id)
        beams = children
        if step == max_new_tokens - 1:
            break
        need = sum(cache.blocks_needed(b[0], 1) for b in beams)
        fresh = sum(-(-(cache.seq_len(b[0]) + 1) // block_size) - len(cache.block_table(b[0])) for b in beams)
        copies += need - fresh
        logp = torch.log_softmax(paged_forward(model, cache, [b[0] for b in beams], [[b[1][-1]] for b in beams]), -1)
        peak = max(peak, cache.num_used_blocks)
    result = [(tokens, score) for _, tokens, score in beams]
    return result, SharingStats(peak, beam_width * _blocks(total - 1, block_size), copies)
