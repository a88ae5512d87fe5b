"""Draft-and-verify speculative decoding (Leviathan et al. 2023; Chen et al. 2023).

A small draft model q proposes gamma tokens one by one; the large target model p scores
all of them in ONE forward pass; modified rejection sampling keeps a prefix of the
proposals and replaces the first rejected one, so that every emitted token is
distributed exactly as if the target had sampled it alone:

    accept draft token x with probability  min(1, p(x) / q(x))
    on rejection, sample from              norm(max(0, p - q))
    if all gamma are accepted, sample one bonus token from the target's next p.

With temperature 0 (greedy) the rule becomes "accept while the draft's token is the
target's argmax", and the output is the target's greedy output token for token.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from llminfra_lab.checks import nonnegative_int, positive_int
from llminfra_lab.model import GPT, KVCache

__all__ = [
    "residual_distribution", "accept_or_resample", "acceptance_probability",
    "expected_tokens_per_step", "expected_speedup", "SpecStats", "speculative_generate",
    "greedy_generate", "chi_square_gof",
]


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)) over the last dim: where to sample after a rejection.

    When p == q exactly the residual is empty (a rejection cannot happen); p is returned.
    """
    diff = (p - q).clamp_min(0)
    mass = diff.sum(-1, keepdim=True)
    return torch.where(mass > 0, diff / mass.clamp_min(1e-30), p)


def accept_or_resample(p: torch.Tensor, q: torch.Tensor, x: int, u: float,
                       generator: torch.Generator | None = None) -> tuple[bool, int]:
    """One step of modified rejection sampling for a draft token x ~ q.

    p, q: target and draft probabilities (vocab,); u: a uniform draw in [0, 1).
    Returns (accepted, token): (True, x) when u < p(x)/q(x), else (False, y) with
    y ~ norm(max(0, p - q)).
    """
    if p.shape != q.shape or p.dim() != 1:
        raise ValueError(f"p and q must be 1-D of the same length, got {tuple(p.shape)} and {tuple(q.shape)}")
    if not 0 <= x < p.shape[0]:
        raise ValueError(f"x must be a token id in [0, {p.shape[0]}), got {x}")
    if not 0 <= u < 1:
        raise ValueError(f"u must lie in [0, 1), got {u}")
    if u * q[x] < p[x]:                      # u < p(x)/q(x), without dividing by zero
        return True, x
    return False, int(torch.multinomial(residual_distribution(p, q), 1, generator=generator))


def acceptance_probability(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """beta = sum_x min(p(x), q(x)) = 1 - TV(p, q): the chance a draft token survives (last dim)."""
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return torch.minimum(p, q).sum(-1)


def expected_tokens_per_step(alpha: float, gamma: int) -> float:
    """Leviathan et al. (2023), eq. 1: E[tokens per target pass] = (1 - alpha^(gamma+1)) / (1 - alpha).

    alpha is the mean acceptance probability, gamma the number of drafted tokens; the
    count includes the token the target adds itself (a correction or the bonus).
    """
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    nonnegative_int("gamma", gamma)
    if alpha == 1:
        return float(gamma + 1)
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def expected_speedup(alpha: float, gamma: int, c: float) -> float:
    """Leviathan et al. (2023), Theorem 3.8: walltime improvement (1 - a^(g+1)) / ((1 - a)(g c + 1)).

    c is the cost of one draft forward pass relative to one target pass.
    """
    if not isinstance(c, (int, float)) or isinstance(c, bool) or not c >= 0:
        raise ValueError(f"c must be a number >= 0, got {c!r}")
    return expected_tokens_per_step(alpha, gamma) / (gamma * c + 1)


@dataclass
class SpecStats:
    """What one speculative run did: per target pass, how many drafts were accepted."""

    gamma: int
    accepted: list[int] = field(default_factory=list)      # accepted draft tokens, per target pass
    betas: list[float] = field(default_factory=list)       # sum min(p, q) at every draft position scored
    target_passes: int = 0
    draft_passes: int = 0
    new_tokens: int = 0

    @property
    def tokens_per_pass(self) -> float:
        """Emitted tokens per target forward pass (the quantity eq. 1 predicts)."""
        return self.new_tokens / max(self.target_passes, 1)

    @property
    def alpha(self) -> float:
        """Measured mean acceptance probability E[beta]."""
        return sum(self.betas) / max(len(self.betas), 1)

    @property
    def acceptance_rate(self) -> float:
        """Fraction of drafted tokens that were accepted."""
        return sum(self.accepted) / max(self.gamma * len(self.accepted), 1)


def _probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return torch.softmax(logits.float() / temperature, dim=-1)


def _feed(model: GPT, cache: KVCache, out: torch.Tensor) -> torch.Tensor:
    """Run the tokens of out (1, n) that the cache has not seen; logits of the last one (vocab,)."""
    return model(out[:, cache.length:], cache)[0, -1]


@torch.no_grad()
def speculative_generate(target: GPT, draft: GPT, idx: torch.Tensor, max_new_tokens: int, gamma: int = 4,
                         temperature: float = 1.0, generator: torch.Generator | None = None
                         ) -> tuple[torch.Tensor, SpecStats]:
    """Append max_new_tokens tokens to idx (1, seq) by draft-and-verify; returns (tokens, stats).

    temperature 0 is greedy (the target's own greedy tokens); > 0 samples exactly from the
    target's softmax(logits / temperature). Both models keep a KV cache; a rejected
    suffix is dropped by moving the cache's length back.
    """
    _check_pair(target, draft, idx, max_new_tokens, temperature, generator)
    positive_int("gamma", gamma)
    stats = SpecStats(gamma)
    n_end = idx.shape[1] + max_new_tokens
    t_cache = KVCache.empty(target.cfg, 1)
    d_cache = KVCache.empty(draft.cfg, 1)
    out = idx
    while out.shape[1] < n_end:
        g = min(gamma, n_end - out.shape[1] - 1, target.cfg.max_seq_len - out.shape[1] - 1)
        # 1. draft: gamma tokens, one at a time, remembering q at each
        qs, drafted = [], out
        for _ in range(g):
            q = _probs(_feed(draft, d_cache, drafted), temperature)
            stats.draft_passes += 1
            x = torch.multinomial(q, 1, generator=generator) if temperature else q.argmax().view(1)
            qs.append(q)
            drafted = torch.cat([drafted, x.view(1, 1)], dim=1)
        # 2. verify: one target pass scores the g drafts and the position after them
        logits = target(drafted[:, t_cache.length:], t_cache)[0, -(g + 1):]
        stats.target_passes += 1
        ps = _probs(logits, temperature)
        # 3. accept a prefix, then one token from the target (correction or bonus)
        n_acc, extra = 0, None
        for i in range(g):
            x = int(drafted[0, out.shape[1] + i])
            stats.betas.append(float(acceptance_probability(ps[i], qs[i])))
            u = float(torch.rand(1, generator=generator)) if temperature else 0.0
            ok, token = accept_or_resample(ps[i], qs[i], x, u, generator)
            if not ok:
                extra = token
                break
            n_acc += 1
        if extra is None:
            extra = int(torch.multinomial(ps[g], 1, generator=generator)) if temperature else int(ps[g].argmax())
        keep = out.shape[1] + n_acc
        out = torch.cat([drafted[:, :keep], torch.tensor([[extra]])], dim=1)
        stats.accepted.append(n_acc)
        # 4. roll back: both caches forget every token after the accepted prefix
        t_cache.length = min(t_cache.length, keep)
        d_cache.length = min(d_cache.length, keep)
    stats.new_tokens = out.shape[1] - idx.shape[1]
    return out, stats


@torch.no_grad()
def greedy_generate(model: GPT, idx: torch.Tensor, max_new_tokens: int) -> tuple[torch.Tensor, int]:
    """Plain greedy decoding with a KV cache: (tokens, forward passes). The baseline."""
    _check_pair(model, model, idx, max_new_tokens, 0.0, None)
    cache, out, passes = KVCache.empty(model.cfg, 1), idx, 0
    for _ in range(max_new_tokens):
        nxt = _feed(model, cache, out).argmax().view(1, 1)
        passes += 1
        out = torch.cat([out, nxt], dim=1)
    return out, passes


def chi_square_gof(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0
                   ) -> tuple[float, int, float]:
    """Pearson's chi-square goodness-of-fit test of observed counts against probabilities.

    Categories whose expected count is below min_expected are pooled into one bin (which
    is kept only if its expected count reaches min_expected). Returns (statistic, degrees
    of freedom, p-value), the p-value from the regularised upper incomplete gamma function.
    """
    if counts.shape != probs.shape or counts.dim() != 1:
        raise ValueError(f"counts and probs must be 1-D of one length, got {tuple(counts.shape)}, {tuple(probs.shape)}")
    if (counts < 0).any() or (probs < 0).any() or abs(float(probs.sum()) - 1) > 1e-4:
        raise ValueError("counts must be >= 0 and probs a probability vector (>= 0, summing to 1)")
    n = float(counts.sum())
    expected = probs.double() * n
    big = expected >= min_expected
    obs = [counts.double()[big]]
    exp = [expected[big]]
    if expected[~big].sum() >= min_expected:
        obs.append(counts.double()[~big].sum().view(1))
        exp.append(expected[~big].sum().view(1))
    obs_t, exp_t = torch.cat(obs), torch.cat(exp)
    dof = obs_t.numel() - 1
    if dof < 1:
        raise ValueError("too few samples: fewer than two bins have the minimum expected count")
    stat = float(((obs_t - exp_t) ** 2 / exp_t).sum())
    p_value = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                            torch.tensor(stat / 2, dtype=torch.float64)))
    return stat, dof, p_value


def _check_pair(target, draft, idx, max_new_tokens, temperature, generator):
    if not isinstance(target, GPT) or not isinstance(draft, GPT):
        raise ValueError("target and draft must be llminfra_lab.model.GPT models")
    if target.cfg.vocab_size != draft.cfg.vocab_size:
        raise ValueError(f"target and draft must share a vocabulary, got {target.cfg.vocab_size} "
                         f"and {draft.cfg.vocab_size}")
    if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long or idx.dim() != 2 or idx.shape != (1, idx.shape[1]) \
            or idx.shape[1] == 0:
        raise ValueError("idx must be a non-empty torch.long tensor of shape (1, seq)")
    positive_int("max_new_tokens", max_new_tokens)
    limit = min(target.cfg.max_seq_len, draft.cfg.max_seq_len)
    if idx.shape[1] + max_new_tokens > limit:
        raise ValueError(f"{idx.shape[1]} + {max_new_tokens} tokens exceed max_seq_len {limit}")
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature >= 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
