"""The task, the rollouts and the three trainers (SFT, DPO, GRPO) on the shipped tiny GPT.

The task: two-digit addition with the first operand zero-padded to three digits, as in a
fixed-width record: "\n037+58=". The shipped "target" checkpoint answers "\n37+58=" right
99.8% of the time but never saw a padded operand; it gets about 60% of the padded prompts
right. The skill is in the weights and the format half is, which is where RL with a
verifiable reward works: many groups of sampled answers to one prompt hold both a right
and a wrong one to compare.

    task_prompt, task_split          the prompts; train problems are the checkpoint's own
                                     training problems, held-out are its 500 held-out ones
    sample_group                     G sampled completions per prompt, with response masks
    sequence_logprobs                per-token log pi(token | prefix) of given sequences
    task_accuracy                    greedy exact match with its binomial standard error
    grpo_train, dpo_train, sft_train the trainers; each returns a history dict
"""
from __future__ import annotations

import copy
import math
import random
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from llminfra_lab.checks import positive_int, positive_number
from llminfra_lab.data import arithmetic_answer, arithmetic_reward, arithmetic_split
from llminfra_lab.model import GPT, generate
from llminfra_lab.tokenizer import BPETokenizer
from llminfra_lab.training import AdamW

from .losses import dpo_loss, group_advantages, grpo_loss, k3_kl, masked_mean, sft_loss

__all__ = [
    "task_prompt", "task_split", "Rollout", "sample_group", "sequence_logprobs", "task_accuracy",
    "RLConfig", "grpo_train", "preference_pairs", "dpo_train", "sft_train",
]

MAX_NEW_TOKENS = 5          # up to three digits of a sum below 200, a newline, one spare


def task_prompt(problem: str) -> str:
    """The task's prompt for "37+58=95" (or "37+58="): "\n037+58=", the first operand
    zero-padded to three digits."""
    if not isinstance(problem, str) or "=" not in problem or "+" not in problem:
        raise ValueError(f"problem must be a string like '37+58=' or '37+58=95', got {problem!r}")
    left, right = problem[:problem.index("=")].split("+", 1)
    if not (left.isdigit() and right.isdigit()):
        raise ValueError(f"problem must be a string like '37+58=' or '37+58=95', got {problem!r}")
    return f"\n{int(left):03d}+{right}="


def task_split(n_train: int = 8_000, n_heldout: int = 500) -> tuple[list[str], list[str]]:
    """(train, held_out) problems "a+b=c": the shipped target checkpoint's own split (seed 0),
    so the held-out problems were never trained on, in any format."""
    positive_int("n_train", n_train)
    positive_int("n_heldout", n_heldout)
    train, heldout = arithmetic_split(8_000, 500, digits=2, seed=0, ops="+")
    if n_train > len(train) or n_heldout > len(heldout):
        raise ValueError(f"at most {len(train)} train and {len(heldout)} held-out problems, "
                         f"asked for {n_train} and {n_heldout}")
    return train[:n_train], heldout[:n_heldout]


@dataclass
class Rollout:
    """Sampled completions: ids (B, T) = prompt + completion; mask (B, T) is 1 on the response
    tokens up to and including the first newline; texts and rewards per row."""
    ids: torch.Tensor
    mask: torch.Tensor
    texts: list[str]
    rewards: torch.Tensor


def sample_group(model: GPT, tokenizer: BPETokenizer, problems: list[str], group_size: int,
                 generator: torch.Generator, temperature: float = 1.0) -> list[Rollout]:
    """For each problem, group_size sampled answers to its spaced prompt, scored by
    data.arithmetic_reward (1 if the text before the first newline starts with the sum)."""
    positive_int("group_size", group_size)
    newline = tokenizer.encode("\n")[0]
    out = []
    for problem in problems:
        prompt = tokenizer.encode(task_prompt(problem))
        x = torch.tensor([prompt] * group_size, dtype=torch.long)
        ids = generate(model, x, MAX_NEW_TOKENS, temperature=temperature, generator=generator)
        completion = ids[:, len(prompt):]
        is_nl = (completion == newline).int()
        before_stop = (is_nl.cumsum(1) - is_nl) == 0                 # up to and including the first "\n"
        mask = torch.cat([torch.zeros(group_size, len(prompt)), before_stop.float()], dim=1)
        texts = [tokenizer.decode(row.tolist()).split("\n")[0] for row in completion]
        rewards = torch.tensor([arithmetic_reward(_question(problem), t) for t in texts])
        out.append(Rollout(ids, mask, texts, rewards))
    return out


def sequence_logprobs(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """log pi(ids[:, t] | ids[:, :t]) for t >= 1, placed at position t: (B, T), column 0 is 0."""
    logits = model(ids[:, :-1]).float()
    logp = torch.gather(F.log_softmax(logits, dim=-1), 2, ids[:, 1:, None]).squeeze(2)
    return F.pad(logp, (1, 0))


@torch.no_grad()
def task_accuracy(model: GPT, tokenizer: BPETokenizer, problems: list[str]) -> tuple[float, float]:
    """(accuracy, standard error): greedy answers to the spaced prompts, exact match of the
    text before the first newline; standard error sqrt(p (1 - p) / n) of a binomial."""
    if isinstance(problems, str) or not problems:
        raise ValueError("problems must be a non-empty list of strings like '37+58=95'")
    by_len: dict[int, list[int]] = {}
    encoded = [tokenizer.encode(task_prompt(p)) for p in problems]
    for i, ids in enumerate(encoded):
        by_len.setdefault(len(ids), []).append(i)
    correct = 0
    for length, rows in by_len.items():
        out = generate(model, torch.tensor([encoded[i] for i in rows]), MAX_NEW_TOKENS, temperature=0.0)
        for r, i in enumerate(rows):
            text = tokenizer.decode(out[r, length:].tolist()).split("\n")[0].strip()
            correct += text == arithmetic_answer(_question(problems[i]))
    p = correct / len(problems)
    return p, math.sqrt(p * (1 - p) / len(problems))


@dataclass
class RLConfig:
    """Settings shared by the trainers. prompts_per_step x group_size answers per GRPO step."""
    steps: int = 150
    prompts_per_step: int = 8
    group_size: int = 8
    lr: float = 1e-4
    beta: float = 0.04               # GRPO: weight of the k3 KL; DPO: the beta of its loss
    clip_eps: float = 0.2
    eval_every: int = 25
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "prompts_per_step", "group_size", "eval_every"):
            positive_int(f"RLConfig.{name}", getattr(self, name))
        positive_number("RLConfig.lr", self.lr)
        positive_number("RLConfig.beta", self.beta)
        if not 0 < self.clip_eps < 1:
            raise ValueError(f"RLConfig.clip_eps must be in (0, 1), got {self.clip_eps!r}")


def grpo_train(policy: GPT, tokenizer: BPETokenizer, train: list[str], heldout: list[str],
               cfg: RLConfig) -> dict:
    """GRPO with the rule-based reward; trains `policy` in place against a frozen copy of it.

    Each step: sample group_size answers to each of prompts_per_step training prompts,
    normalise rewards within each group, take one gradient step on grpo_loss (one update
    per batch, so the old policy is the current one and the ratio starts at 1).
    Returns {"config", "step", "reward", "kl", "eval_step", "accuracy", "stderr"}.
    """
    reference = _frozen_copy(policy)
    optimizer = AdamW(policy.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    rng, gen = random.Random(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    history = _history(cfg, policy, tokenizer, heldout)
    for step in range(1, cfg.steps + 1):
        groups = sample_group(policy, tokenizer, rng.sample(train, cfg.prompts_per_step), cfg.group_size, gen)
        policy.train()
        optimizer.zero_grad(set_to_none=True)
        kl_sum = 0.0
        for g in groups:                                            # prompts differ in length
            logp = sequence_logprobs(policy, g.ids)
            with torch.no_grad():
                ref_logp = sequence_logprobs(reference, g.ids)
            adv = group_advantages(g.rewards, cfg.group_size)
            loss = grpo_loss(logp, logp.detach(), ref_logp, adv, g.mask, cfg.clip_eps, cfg.beta)
            (loss / len(groups)).backward()
            kl_sum += float(masked_mean(k3_kl(logp.detach(), ref_logp), g.mask))
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        history["step"].append(step)
        history["reward"].append(float(torch.cat([g.rewards for g in groups]).mean()))
        history["kl"].append(kl_sum / len(groups))
        _maybe_eval(history, step, cfg, policy, tokenizer, heldout)
    policy.eval()
    return history


def preference_pairs(model: GPT, tokenizer: BPETokenizer, train: list[str], n_pairs: int,
                     group_size: int = 8, seed: int = 0) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) completions from the model's own samples: rejected is a wrong
    sample, chosen a right one when the group has one, else the true sum (the "label")."""
    positive_int("n_pairs", n_pairs)
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    pairs = []
    for problem in rng.sample(train, len(train)):
        g = sample_group(model, tokenizer, [problem], group_size, gen)[0]
        wrong = [t for t, r in zip(g.texts, g.rewards) if r == 0]
        if not wrong:
            continue
        right = [t for t, r in zip(g.texts, g.rewards) if r == 1]
        chosen = right[0] if right else arithmetic_answer(_question(problem))
        pairs.append((task_prompt(problem), chosen + "\n", wrong[0] + "\n"))
        if len(pairs) == n_pairs:
            return pairs
    raise ValueError(f"only {len(pairs)} pairs could be made from {len(train)} problems")


def dpo_train(policy: GPT, tokenizer: BPETokenizer, pairs: list[tuple[str, str, str]],
              heldout: list[str], cfg: RLConfig) -> dict:
    """DPO on (prompt, chosen, rejected) pairs, prompts_per_step pairs per step, against a
    frozen copy of `policy`. Returns {"config", "step", "loss", "margin", "eval_step", ...}."""
    reference = _frozen_copy(policy)
    optimizer = AdamW(policy.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    rng = random.Random(cfg.seed)
    history = _history(cfg, policy, tokenizer, heldout)
    history.update(loss=[], margin=[])
    for step in range(1, cfg.steps + 1):
        batch = rng.sample(pairs, cfg.prompts_per_step)
        policy.train()
        seqs = {}
        for side in (1, 2):                                          # chosen, rejected
            ids, mask = _encode_batch(tokenizer, [(p[0], p[side]) for p in batch])
            with torch.no_grad():
                ref = (sequence_logprobs(reference, ids) * mask).sum(1)
            seqs[side] = ((sequence_logprobs(policy, ids) * mask).sum(1), ref)
        loss = dpo_loss(seqs[1][0], seqs[2][0], seqs[1][1], seqs[2][1], cfg.beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        margin = (seqs[1][0] - seqs[1][1]) - (seqs[2][0] - seqs[2][1])
        history["step"].append(step)
        history["loss"].append(float(loss.detach()))
        history["margin"].append(float(margin.detach().mean()))
        _maybe_eval(history, step, cfg, policy, tokenizer, heldout)
    policy.eval()
    return history


def sft_train(policy: GPT, tokenizer: BPETokenizer, train: list[str], heldout: list[str],
              cfg: RLConfig) -> dict:
    """SFT on demonstrations "\\n037+58=" -> "95\\n", loss on the answer tokens only."""
    optimizer = AdamW(policy.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    rng = random.Random(cfg.seed)
    history = _history(cfg, policy, tokenizer, heldout)
    history.update(loss=[])
    for step in range(1, cfg.steps + 1):
        batch = [(task_prompt(p), arithmetic_answer(_question(p)) + "\n") for p in rng.sample(train, cfg.prompts_per_step)]
        ids, mask = _encode_batch(tokenizer, batch)
        policy.train()
        loss = sft_loss(policy(ids[:, :-1]), ids[:, 1:], mask[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history["step"].append(step)
        history["loss"].append(float(loss.detach()))
        _maybe_eval(history, step, cfg, policy, tokenizer, heldout)
    policy.eval()
    return history


# ----------------------------------------------------------------------------- helpers

def _question(problem: str) -> str:
    return problem[:problem.index("=") + 1]                          # "37+58=95" -> "37+58="


def _frozen_copy(model: GPT) -> GPT:
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _encode_batch(tokenizer: BPETokenizer, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) of prompt + completion and the mask (B, T) of completion tokens."""
    rows = [(tokenizer.encode(p), tokenizer.encode(c)) for p, c in pairs]
    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width)
    for i, (p, c) in enumerate(rows):
        ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        mask[i, len(p):len(p) + len(c)] = 1.0
    return ids, mask


def _history(cfg: RLConfig, model: GPT, tokenizer: BPETokenizer, heldout: list[str]) -> dict:
    acc, err = task_accuracy(model, tokenizer, heldout)
    return {"config": asdict(cfg), "step": [], "reward": [], "kl": [],
            "eval_step": [0], "accuracy": [acc], "stderr": [err]}


def _maybe_eval(history: dict, step: int, cfg: RLConfig, model: GPT, tokenizer: BPETokenizer,
                heldout: list[str]) -> None:
    if step % cfg.eval_every == 0 or step == cfg.steps:
        acc, err = task_accuracy(model, tokenizer, heldout)
        history["eval_step"].append(step)
        history["accuracy"].append(acc)
        history["stderr"].append(err)
