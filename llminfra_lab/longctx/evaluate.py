"""Measuring long context on the tiny GPT: perplexity against length, and a needle test.

`perplexity_vs_length` runs the model extended by each RoPE method on held-out stories at
growing lengths; the shipped "target" was trained on 128-token windows, so everything past
128 is extrapolation. `needle_accuracy` hides a span of text (the needle) at a chosen
depth in a haystack of story text and, at the end, repeats its first ids: a model that can
retrieve it completes the rest. This is the synthetic retrieval of the passkey test of
Mohtashami & Jaggi (2023) and of the needle-in-a-haystack test, which RULER (Hsieh et al.
2024) generalises.
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from llminfra_lab.checks import positive_int
from llminfra_lab.data import stories
from llminfra_lab.longctx.rope import ROPE_METHODS, extend_model
from llminfra_lab.model import GPT
from llminfra_lab.tokenizer import BPETokenizer

__all__ = ["heldout_ids", "window_perplexity", "perplexity_vs_length", "needle_prompt", "needle_accuracy"]


def heldout_ids(tokenizer: BPETokenizer, n_tokens: int, seed: int = 12345) -> torch.Tensor:
    """At least n_tokens ids of story text the checkpoints never saw (a seed of its own)."""
    positive_int("n_tokens", n_tokens)
    text = stories(max(4 * n_tokens, 1000), seed=seed)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    if ids.numel() < n_tokens:
        raise ValueError(f"only {ids.numel()} ids from the story text; asked for {n_tokens}")
    return ids[:n_tokens]


@torch.no_grad()
def window_perplexity(model: GPT, ids: torch.Tensor, seq_len: int, n_windows: int = 4) -> float:
    """exp(mean loss) over n_windows disjoint windows of seq_len + 1 ids (every position counts)."""
    positive_int("seq_len", seq_len)
    positive_int("n_windows", n_windows)
    need = n_windows * (seq_len + 1)
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.numel() < need:
        raise ValueError(f"ids must be a 1-D tensor of at least {need} ids")
    batch = ids[:need].view(n_windows, seq_len + 1)
    logits = model(batch[:, :-1])
    return math.exp(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1)).item())


def perplexity_vs_length(model: GPT, ids: torch.Tensor, lengths: list[int], methods: tuple[str, ...] = ROPE_METHODS,
                         original_len: int = 128, n_windows: int = 4) -> dict[str, list[float]]:
    """{method: [perplexity at each length]} with the model extended by each RoPE method."""
    if not lengths or not all(isinstance(n, int) and n > 0 for n in lengths):
        raise ValueError(f"lengths must be a non-empty list of positive ints, got {lengths!r}")
    bad = [m for m in methods if m not in ROPE_METHODS]
    if bad:
        raise ValueError(f"unknown methods {bad}; valid: {ROPE_METHODS}")
    out = {}
    for method in methods:
        out[method] = [window_perplexity(extend_model(model, method, n, original_len), ids, n, n_windows)
                       for n in lengths]
    return out


def needle_prompt(haystack: torch.Tensor, context_len: int, depth: float, key_len: int = 6,
                  answer_len: int = 4, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """(prompt ids, the answer ids to be predicted next) of one synthetic retrieval probe.

    The needle is a span of key_len + answer_len ids cut from far along the haystack; it
    sits at fraction `depth` of a context of context_len ids, and the prompt ends with its
    first key_len ids again, so the answer is the rest of the needle: retrieval by copying.
    """
    positive_int("context_len", context_len)
    positive_int("key_len", key_len)
    positive_int("answer_len", answer_len)
    if not 0 <= depth <= 1:
        raise ValueError(f"depth must be in [0, 1], got {depth!r}")
    fill = context_len - 2 * key_len - answer_len
    if fill < 1 or haystack.numel() < 2 * context_len:
        raise ValueError(f"context_len {context_len} too short for the needle, or haystack shorter than "
                         f"{2 * context_len} ids")
    start = context_len + random.Random(seed).randrange(context_len - key_len - answer_len)
    needle = haystack[start:start + key_len + answer_len].tolist()
    hay = haystack[:fill].tolist()
    cut = int(round(depth * fill))
    prompt = hay[:cut] + needle + hay[cut:] + needle[:key_len]
    return torch.tensor(prompt, dtype=torch.long), needle[key_len:]


@torch.no_grad()
def needle_accuracy(model: GPT, haystack: torch.Tensor, context_len: int,
                    depths: list[float], method: str = "none", original_len: int = 128, trials: int = 4) -> list[float]:
    """Fraction of needles whose answer ids are all predicted (greedy, teacher-forced), per depth."""
    positive_int("trials", trials)
    extended = extend_model(model, method, context_len + 8, original_len)
    out = []
    for depth in depths:
        hits = 0
        for trial in range(trials):
            prompt, answer = needle_prompt(haystack[trial * 97:], context_len, depth, seed=trial)
            full = torch.cat([prompt, torch.tensor(answer[:-1], dtype=torch.long)])
            pred = extended(full[None])[0, len(prompt) - 1:].argmax(-1).tolist()
            hits += pred == answer
        out.append(hits / trials)
    return out
