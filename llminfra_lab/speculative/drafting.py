"""Drafting without a draft model: prompt lookup (n-gram matching) and Jacobi decoding.

Prompt lookup (Saxena 2023) proposes the tokens that followed the most recent earlier
occurrence of the sequence's last n-gram; the target verifies them greedily in one pass.
Jacobi decoding (Santilli et al. 2023) guesses a whole block of m tokens and refines it
with parallel target passes, y <- argmax p(. | prefix, y); the iteration's fixed point is
the greedy continuation, and it is reached in at most m passes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from llminfra_lab.checks import positive_int
from llminfra_lab.model import GPT, KVCache

from .sampling import _check_pair

__all__ = ["prompt_lookup_draft", "LookupStats", "prompt_lookup_generate", "jacobi_decode"]


def prompt_lookup_draft(tokens: list[int], max_ngram: int = 3, num_draft: int = 8) -> list[int]:
    """Up to num_draft tokens that followed the latest earlier match of the last n-gram.

    Tries n = max_ngram down to 1; the first (longest) n-gram found earlier in `tokens`
    wins, and its most recent occurrence is used. Returns [] when nothing matches.
    """
    if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
        raise ValueError("tokens must be a list of int token ids")
    positive_int("max_ngram", max_ngram)
    positive_int("num_draft", num_draft)
    for n in range(min(max_ngram, len(tokens) - 1), 0, -1):
        tail = tokens[-n:]
        for start in range(len(tokens) - n - 1, -1, -1):          # latest earlier occurrence first
            if tokens[start:start + n] == tail:
                return tokens[start + n:start + n + num_draft]
    return []


@dataclass
class LookupStats:
    target_passes: int = 0
    new_tokens: int = 0
    drafted: int = 0
    accepted: int = 0

    @property
    def tokens_per_pass(self) -> float:
        return self.new_tokens / max(self.target_passes, 1)


@torch.no_grad()
def prompt_lookup_generate(target: GPT, idx: torch.Tensor, max_new_tokens: int, max_ngram: int = 3,
                           num_draft: int = 8) -> tuple[torch.Tensor, LookupStats]:
    """Greedy decoding with n-gram drafts verified by the target: same tokens as plain greedy."""
    _check_pair(target, target, idx, max_new_tokens, 0.0, None)
    positive_int("max_ngram", max_ngram)
    positive_int("num_draft", num_draft)
    stats, cache, out = LookupStats(), KVCache.empty(target.cfg, 1), idx
    n_end = idx.shape[1] + max_new_tokens
    while out.shape[1] < n_end:
        room = n_end - out.shape[1] - 1
        proposal = prompt_lookup_draft(out[0].tolist(), max_ngram, num_draft)[:room]
        drafted = torch.cat([out, torch.tensor([proposal], dtype=torch.long).view(1, -1)], dim=1)
        logits = target(drafted[:, cache.length:], cache)[0, -(len(proposal) + 1):]
        stats.target_passes += 1
        best = logits.argmax(-1).tolist()
        n_acc = 0
        while n_acc < len(proposal) and proposal[n_acc] == best[n_acc]:
            n_acc += 1
        keep = out.shape[1] + n_acc
        out = torch.cat([drafted[:, :keep], torch.tensor([[best[n_acc]]])], dim=1)
        cache.length = keep
        stats.drafted += len(proposal)
        stats.accepted += n_acc
    stats.new_tokens = out.shape[1] - idx.shape[1]
    return out, stats


@torch.no_grad()
def jacobi_decode(model: GPT, idx: torch.Tensor, n_tokens: int, init_token: int = 0,
                  max_iters: int | None = None) -> tuple[torch.Tensor, list[list[int]]]:
    """Decode n_tokens greedy tokens after idx (1, seq) by Jacobi fixed-point iteration.

    Starts from a block of init_token and applies y <- argmax model(idx ++ y) (all block
    positions updated in parallel, one forward pass each) until y stops changing.
    Returns (idx ++ y, trajectory): trajectory[i] is the block after i passes.
    """
    _check_pair(model, model, idx, n_tokens, 0.0, None)
    if isinstance(init_token, bool) or not isinstance(init_token, int) or not 0 <= init_token < model.cfg.vocab_size:
        raise ValueError(f"init_token must be a token id in [0, {model.cfg.vocab_size}), got {init_token!r}")
    max_iters = n_tokens + 1 if max_iters is None else max_iters
    positive_int("max_iters", max_iters)
    y = [init_token] * n_tokens
    trajectory = [y]
    n = idx.shape[1]
    for _ in range(max_iters):
        seq = torch.cat([idx, torch.tensor([y])], dim=1)
        new = model(seq)[0, n - 1:n - 1 + n_tokens].argmax(-1).tolist()
        trajectory.append(new)
        if new == y:
            break
        y = new
    return torch.cat([idx, torch.tensor([y])], dim=1), trajectory


