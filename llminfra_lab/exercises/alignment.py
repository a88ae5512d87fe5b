"""Lab 9 (alignment): implement-it tasks and exercises."""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from llminfra_lab import alignment
from llminfra_lab.labkit import exercise, task

# ----------------------------------------------------------------------------- implement-it tasks


def _group_cases(rng: random.Random) -> list[tuple]:
    cases = [(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0]), 4),     # two groups of four
             (torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0]), 3)]               # a group with no spread
    for _ in range(12):
        g = rng.choice([2, 3, 4, 8])
        n = rng.choice([1, 2, 3])
        gen = torch.Generator().manual_seed(rng.randrange(10**6))
        binary = rng.random() < 0.5
        r = torch.randint(0, 2, (g * n,), generator=gen).float() if binary else torch.randn(g * n, generator=gen)
        cases.append((r, g))
    return cases


def _whole_batch_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    return (rewards - rewards.mean()) / (rewards.std() + 1e-6)           # one baseline for all prompts


task(
    "alignment.group_advantages",
    "Return GRPO's advantages (1-D tensor): `rewards` holds len(rewards) // group_size groups of "
    "consecutive answers to one prompt; each reward minus its group's mean, divided by its group's "
    "sample standard deviation (torch's default) plus 1e-6.",
    reference=lambda rewards, group_size: alignment.group_advantages(rewards, group_size),
    cases=_group_cases,
    mistake=_whole_batch_advantages,
)


def _logp_cases(rng: random.Random) -> list[tuple]:
    cases = [(torch.log(torch.tensor([0.5, 0.5])), torch.log(torch.tensor([0.25, 0.5])))]
    for _ in range(12):
        gen = torch.Generator().manual_seed(rng.randrange(10**6))
        shape = (rng.randint(1, 3), rng.randint(1, 6))
        cases.append((-3 * torch.rand(shape, generator=gen), -3 * torch.rand(shape, generator=gen)))
    return cases


task(
    "alignment.k3_kl",
    "Return the per-token k3 estimate of KL(pi || ref) from log-probabilities `logp` (of pi, at tokens "
    "sampled from pi) and `ref_logp` (same shape): with x = ref_logp - logp, exp(x) - x - 1.",
    reference=lambda logp, ref_logp: alignment.k3_kl(logp, ref_logp),
    cases=_logp_cases,
    mistake=lambda logp, ref_logp: logp - ref_logp,                       # k1: unbiased but often negative
)


def _dpo_cases(rng: random.Random) -> list[tuple]:
    cases = [(torch.tensor([-3.0]), torch.tensor([-4.0]), torch.tensor([-3.5]), torch.tensor([-3.0]), 0.1)]
    for _ in range(12):
        gen = torch.Generator().manual_seed(rng.randrange(10**6))
        b = rng.randint(1, 5)
        pc, pr, rc, rr = (-10 * torch.rand(b, generator=gen) for _ in range(4))
        cases.append((pc, pr, rc, rr, rng.choice([0.05, 0.1, 0.5, 1.0])))
    return cases


task(
    "alignment.dpo_loss",
    "Return DPO's loss (a 0-d tensor, the mean over pairs): the four arguments are (B,) sequence "
    "log-probabilities of the chosen and rejected answers under the policy and the frozen reference.",
    reference=alignment.dpo_loss,
    cases=_dpo_cases,
    mistake=lambda pc, pr, rc, rr, beta: -F.logsigmoid(beta * (pc - pr)).mean(),   # forgets the reference
)

# ----------------------------------------------------------------------------- exercises


def _dpo_params(seed: int) -> dict:
    if seed == 0:
        return {"pc": -3.0, "pr": -4.0, "rc": -3.5, "rr": -3.0, "beta": 0.1}
    rng = random.Random(seed)
    vals = [round(-rng.uniform(0.5, 9.0), 1) for _ in range(4)]
    return {"pc": vals[0], "pr": vals[1], "rc": vals[2], "rr": vals[3], "beta": rng.choice([0.05, 0.1, 0.2, 0.5])}


def _dpo_value(pc, pr, rc, rr, beta):
    return -math.log(1 / (1 + math.exp(-beta * ((pc - rc) - (pr - rr)))))


exercise(
    "alignment.dpo_value",
    text=lambda pc, pr, rc, rr, beta: (
        f"The policy gives the chosen answer log-probability {pc} and the rejected one {pr}; the frozen "
        f"reference gives them {rc} and {rr}. What is the DPO loss of this pair with beta = {beta}?"),
    params=_dpo_params,
    solve=_dpo_value,
    mistake=lambda pc, pr, rc, rr, beta: -math.log(1 / (1 + math.exp(-beta * (pc - pr)))),
    rtol=0.01,
    hint="the margin is (policy - reference) of the chosen minus (policy - reference) of the rejected.",
)


def _adv_params(seed: int) -> dict:
    if seed == 0:
        return {"group": 8, "right": 2}
    rng = random.Random(seed)
    g = rng.choice([4, 8, 16, 64])
    return {"group": g, "right": rng.randint(1, g - 1)}


exercise(
    "alignment.grpo_advantage",
    text=lambda group, right: (
        f"GRPO samples a group of {group} answers to one prompt; {right} are right (reward 1), the rest wrong "
        "(reward 0). What advantage does each right answer get, with the sample standard deviation (n - 1)?"),
    params=_adv_params,
    solve=lambda group, right: float(alignment.group_advantages(
        torch.tensor([1.0] * right + [0.0] * (group - right)), group, eps=0.0)[0]),
    mistake=lambda group, right: 1 - right / group,                        # forgets to divide by the std
    rtol=0.01,
    hint="mean p = right / group; sample variance = group p (1 - p) / (group - 1).",
)


def _se_params(seed: int) -> dict:
    if seed == 0:
        return {"p": 0.5, "target": 1.0}
    rng = random.Random(seed)
    return {"p": rng.choice([0.1, 0.2, 0.3, 0.5, 0.8, 0.9]), "target": rng.choice([0.5, 1.0, 2.0])}


exercise(
    "alignment.heldout_size",
    text=lambda p, target: (
        f"A model answers a fraction p = {p} of held-out problems right. How many problems (round up) must the "
        f"held-out set hold for the binomial standard error of the accuracy to be at most {target} percentage point(s)?"),
    params=_se_params,
    solve=lambda p, target: math.ceil(p * (1 - p) / (target / 100) ** 2 - 1e-9),
    mistake=lambda p, target: math.ceil(math.sqrt(p * (1 - p)) / (target / 100) - 1e-9),   # forgets the square
    rtol=0.0,
    hint="standard error = sqrt(p (1 - p) / n); solve for n.",
)


def _ppo_params(seed: int) -> dict:
    return {"billions": 7} if seed == 0 else {"billions": random.Random(seed).choice([1.5, 7, 8, 14, 32, 70])}


exercise(
    "alignment.ppo_weights",
    text=lambda billions: (
        f"RLHF with PPO holds four models: the policy ({billions}B parameters), a critic and a reward model of the "
        "same size, and a frozen reference copy of the policy. GRPO with a rule-based reward keeps only the policy "
        "and the reference. How many GB (1e9 bytes) of BF16 weights does GRPO not need to hold?"),
    params=_ppo_params,
    solve=lambda billions: 2 * 2 * billions,
    mistake=lambda billions: 2 * billions,                                 # drops only the critic
    rtol=0.01,
    hint="the critic and the reward model, 2 bytes per parameter each.",
)
