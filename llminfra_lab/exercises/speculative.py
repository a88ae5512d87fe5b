"""Lab 15 (speculative decoding): implement-it tasks and exercises."""
from __future__ import annotations

import random

import torch

from llminfra_lab import speculative
from llminfra_lab.labkit import exercise, task

# ----------------------------------------------------------------------------- implement-it tasks


def _dist_cases(rng: random.Random) -> list[tuple]:
    cases = [(torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.3, 0.3, 0.4])),
             (torch.tensor([0.1, 0.9]), torch.tensor([0.9, 0.1]))]
    for _ in range(15):
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        vocab = rng.choice([2, 3, 5, 16, 512])
        p = torch.softmax(torch.randn(vocab, generator=gen) * 2, -1)
        q = torch.softmax(torch.randn(vocab, generator=gen) * 2, -1)
        cases.append((p, q))
    return cases


task(
    "speculative.residual_distribution",
    "Given target probabilities p and draft probabilities q (1-D tensors over the vocabulary, p != q), "
    "return the distribution a rejected draft token is replaced from: max(0, p - q), normalised to sum to 1.",
    reference=speculative.residual_distribution,
    cases=_dist_cases,
    mistake=lambda p, q: (p - q).abs() / (p - q).abs().sum(),          # |p - q| puts mass where q > p
)


def _greedy_verify(draft_tokens: list[int], target_argmax: list[int]) -> tuple[int, int]:
    n = 0
    while n < len(draft_tokens) and draft_tokens[n] == target_argmax[n]:
        n += 1
    return n, target_argmax[n]


def _greedy_cases(rng: random.Random) -> list[tuple]:
    cases = [([5, 7, 9], [5, 7, 9, 2]), ([5, 7, 9], [4, 7, 9, 2]), ([], [3]), ([1, 2], [1, 3, 8])]
    for _ in range(20):
        g = rng.randint(0, 6)
        best = [rng.randrange(4) for _ in range(g + 1)]
        draft = [b if rng.random() < 0.7 else rng.randrange(4) for b in best[:g]]
        cases.append((draft, best))
    return cases


def _greedy_verify_skips(draft_tokens, target_argmax):          # counts every match, not the matching prefix
    n = sum(d == t for d, t in zip(draft_tokens, target_argmax))
    return n, target_argmax[min(n, len(draft_tokens))]


task(
    "speculative.greedy_verify",
    "Greedy verification. draft_tokens holds the gamma drafted tokens; target_argmax holds gamma + 1 tokens: the "
    "target's argmax after the prefix and after each draft. Return (n_accepted, next_token): how many drafts "
    "match the target from the start, and the target's token that follows the accepted ones.",
    reference=_greedy_verify,
    cases=_greedy_cases,
    mistake=_greedy_verify_skips,
)


def _ngram_cases(rng: random.Random) -> list[tuple]:
    cases = [([1, 2, 3, 9, 1, 2, 3, 7, 1, 2, 3], 3, 2), ([4, 5, 6], 2, 4), ([1, 2, 1, 3, 1], 1, 3)]
    for _ in range(25):
        tokens = [rng.randrange(4) for _ in range(rng.randint(2, 25))]
        cases.append((tokens, rng.randint(1, 3), rng.randint(1, 5)))
    return cases


def _ngram_earliest(tokens, max_ngram, num_draft):                  # the first occurrence, not the latest
    for n in range(min(max_ngram, len(tokens) - 1), 0, -1):
        for start in range(len(tokens) - n):
            if tokens[start:start + n] == tokens[-n:]:
                return tokens[start + n:start + n + num_draft]
    return []


task(
    "speculative.ngram_draft",
    "Prompt lookup. For n = max_ngram down to 1, look for the last n tokens earlier in `tokens`; at the first n "
    "that has a match, return up to num_draft tokens that followed its MOST RECENT earlier occurrence. "
    "Return [] when no n matches.",
    reference=speculative.prompt_lookup_draft,
    cases=_ngram_cases,
    mistake=_ngram_earliest,
)

# ----------------------------------------------------------------------------- exercises


def _ag_params(seed: int) -> dict:
    if seed == 0:
        return {"alpha": 0.8, "gamma": 4}
    rng = random.Random(seed)
    return {"alpha": rng.choice([0.7, 0.75, 0.85, 0.9]), "gamma": rng.choice([2, 3, 5, 6])}


exercise(
    "speculative.tokens_per_pass",
    text=lambda alpha, gamma: (
        f"A draft model's tokens are accepted with probability alpha = {alpha} (i.i.d.), and it drafts gamma = "
        f"{gamma} tokens per step. How many tokens does one target forward pass emit on average (Leviathan et al. "
        "2023), counting the token the target adds itself?"),
    params=_ag_params,
    solve=lambda alpha, gamma: speculative.expected_tokens_per_step(alpha, gamma),
    mistake=lambda alpha, gamma: (1 - alpha ** gamma) / (1 - alpha),       # forgets the bonus/correction token
    hint="a capped geometric series: 1 + alpha + ... + alpha^gamma.",
)


def _agc_params(seed: int) -> dict:
    if seed == 0:
        return {"alpha": 0.8, "gamma": 4, "c": 0.1}
    rng = random.Random(seed)
    return {**_ag_params(seed), "c": rng.choice([0.02, 0.05, 0.1, 0.2, 0.3])}


exercise(
    "speculative.speedup",
    text=lambda alpha, gamma, c: (
        f"Same draft (alpha = {alpha}, gamma = {gamma}); one draft pass costs c = {c} of a target pass. What "
        "wall-clock speed-up over plain decoding does Theorem 3.8 of Leviathan et al. predict?"),
    params=_agc_params,
    solve=lambda alpha, gamma, c: speculative.expected_speedup(alpha, gamma, c),
    mistake=lambda alpha, gamma, c: speculative.expected_tokens_per_step(alpha, gamma),   # ignores the draft's cost
    hint="divide the tokens per step by the cost of a step, gamma c + 1 target passes.",
)


def _best_gamma(alpha: float, c: float) -> int:
    return max(range(1, 17), key=lambda g: speculative.expected_speedup(alpha, g, c))


def _ac_params(seed: int) -> dict:
    if seed == 0:
        return {"alpha": 0.8, "c": 0.1}
    rng = random.Random(seed)
    return {"alpha": rng.choice([0.6, 0.7, 0.8, 0.9]), "c": rng.choice([0.05, 0.1, 0.2])}


exercise(
    "speculative.best_gamma",
    text=lambda alpha, c: (
        f"With alpha = {alpha} and c = {c}, which gamma from 1 to 16 gives the largest predicted speed-up?"),
    params=_ac_params,
    solve=_best_gamma,
    mistake=lambda alpha, c: 16,                                   # maximises tokens per pass, not speed
    rtol=0.0,
    hint="evaluate (1 - a^(g+1)) / ((1 - a)(g c + 1)) for each g.",
)


def _pq_params(seed: int) -> dict:
    if seed == 0:
        return {"p": [0.5, 0.3, 0.2], "q": [0.3, 0.3, 0.4]}
    rng = random.Random(seed)
    p = [rng.randint(1, 9) for _ in range(3)]
    q = [rng.randint(1, 9) for _ in range(3)]
    return {"p": [round(x / sum(p), 3) for x in p[:2]] + [round(1 - sum(round(x / sum(p), 3) for x in p[:2]), 3)],
            "q": [round(x / sum(q), 3) for x in q[:2]] + [round(1 - sum(round(x / sum(q), 3) for x in q[:2]), 3)]}


exercise(
    "speculative.acceptance",
    text=lambda p, q: (
        f"Over three tokens the target gives p = {p} and the draft q = {q}. With what probability is a "
        "draft token accepted at this position?"),
    params=_pq_params,
    solve=lambda p, q: sum(min(a, b) for a, b in zip(p, q)),
    mistake=lambda p, q: sum(a * b for a, b in zip(p, q)),            # chance the two SAMPLES agree
    hint="sum over tokens of min(p, q): one minus the total variation distance.",
)
