"""The losses of alignment, each written as its paper writes it.

    sft_loss               next-token cross-entropy on the response only (prompt masked)
    bradley_terry_loss     -log sigmoid(r_chosen - r_rejected)         (reward model)
    gae                    generalised advantage estimation            (Schulman et al. 2016)
    kl_penalized_rewards   per-token reward -beta (log pi - log ref), plus the score at the end
    ppo_clip_loss          -min(rho A, clip(rho, 1-eps, 1+eps) A)     (Schulman et al. 2017)
    dpo_loss               -log sigmoid(beta (chosen margin - rejected margin))   (Rafailov et al. 2023)
    group_advantages       (r - mean) / std within each group of answers          (Shao et al. 2024)
    k3_kl                  exp(ref - logp) - (ref - logp) - 1 >= 0, an unbiased KL estimate
    grpo_loss              clipped surrogate with group advantages minus beta * k3

Shapes: a batch of B sequences of T tokens; `mask` (B, T) is 1 on response tokens.
Log-probabilities are per token, (B, T), or per sequence, (B,), as each docstring says.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from llminfra_lab.checks import positive_int, positive_number

__all__ = [
    "sft_loss", "bradley_terry_loss", "gae", "kl_penalized_rewards", "ppo_clip_loss", "value_loss",
    "dpo_loss", "group_advantages", "k3_kl", "grpo_loss", "masked_mean",
]


def sft_loss(logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the tokens where loss_mask is 1 (the response), not the prompt.

    logits (B, T, V) predict targets (B, T); loss_mask (B, T) of 0/1. Averaged over
    unmasked tokens of the whole batch, so a long answer weighs more than a short one.
    """
    _check_same_shape(targets=targets, loss_mask=loss_mask)
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(f"logits must be (B, T, V) with (B, T) = targets' shape {tuple(targets.shape)}, "
                         f"got {tuple(logits.shape)}")
    if loss_mask.sum() == 0:
        raise ValueError("loss_mask is all zeros: no response token to learn from")
    per_token = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    return masked_mean(per_token.view_as(targets), loss_mask)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Reward-model loss: mean of -log sigmoid(r_chosen - r_rejected) over pairs (B,).

    Under the Bradley-Terry model P(chosen beats rejected) = sigmoid(r_c - r_r).
    """
    _check_same_shape(r_chosen=r_chosen, r_rejected=r_rejected)
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), each (B, T), by generalised advantage estimation.

    values (B, T) are V(s_t); the value after the last token is 0 (the episode ends).
    delta_t = r_t + gamma V(s_{t+1}) - V(s_t);  A_t = delta_t + gamma lam A_{t+1};
    returns = A + V (the value head's regression target).
    """
    _check_same_shape(rewards=rewards, values=values)
    _check_unit("gamma", gamma)
    _check_unit("lam", lam)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    T = rewards.shape[-1]
    for t in reversed(range(T)):
        next_value = values[..., t + 1] if t + 1 < T else torch.zeros_like(running)
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        running = delta + gamma * lam * running
        advantages[..., t] = running
    return advantages, advantages + values


def kl_penalized_rewards(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor,
                         mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token rewards (B, T) of RLHF with PPO: -beta (logp - ref_logp) on every response token,
    plus the sequence's score (B,) on its last response token (InstructGPT's shaped reward)."""
    _check_same_shape(logp=logp, ref_logp=ref_logp, mask=mask)
    if score.shape != logp.shape[:1]:
        raise ValueError(f"score must be (B,) = ({logp.shape[0]},), got {tuple(score.shape)}")
    _check_beta(beta)
    rewards = -beta * (logp - ref_logp) * mask
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, -1).amax(dim=1)
    if (last < 0).any():
        raise ValueError("every row of mask needs at least one response token")
    rewards[torch.arange(mask.shape[0]), last] += score
    return rewards


def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                  mask: torch.Tensor, clip_eps: float = 0.2) -> torch.Tensor:
    """PPO's clipped surrogate, negated to be minimised, averaged over response tokens.

    rho = exp(logp - old_logp);  loss = -min(rho A, clip(rho, 1 - eps, 1 + eps) A).
    """
    _check_same_shape(logp=logp, old_logp=old_logp, advantages=advantages, mask=mask)
    _check_clip(clip_eps)
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages
    return masked_mean(-torch.minimum(unclipped, clipped), mask)


def value_loss(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The critic's loss: 0.5 (V - returns)^2 averaged over response tokens."""
    _check_same_shape(values=values, returns=returns, mask=mask)
    return masked_mean(0.5 * (values - returns) ** 2, mask)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """DPO: mean over pairs of -log sigmoid(beta ((pi_c - ref_c) - (pi_r - ref_r))).

    Each argument is a (B,) tensor of sequence log-probabilities, log pi(y | x) summed
    over the response tokens, of the policy or the frozen reference.
    """
    _check_same_shape(policy_chosen=policy_chosen, policy_rejected=policy_rejected,
                      ref_chosen=ref_chosen, ref_rejected=ref_rejected)
    _check_beta(beta)
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's advantages: (r - group mean) / (group std + eps), with the sample std (n - 1).

    rewards (B,) holds B / group_size groups of consecutive answers to the same prompt.
    A group whose answers all score the same gets advantage 0: it teaches nothing.
    """
    positive_int("group_size", group_size)
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a length divisible by group_size={group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    if group_size < 2:
        raise ValueError("group_size must be >= 2: a group of one has no spread to normalise by")
    grouped = rewards.view(-1, group_size).float()
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True)
    adv = (grouped - mean) / (std + eps)
    same = grouped.amax(dim=1) == grouped.amin(dim=1)              # rounding must not make a spread
    return torch.where(same[:, None], torch.zeros_like(adv), adv).view(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || ref) at tokens sampled from pi (Schulman 2020).

    With log r = ref_logp - logp: k3 = exp(log r) - log r - 1, which is >= 0 because
    exp(x) >= 1 + x; its expectation under pi is exactly KL(pi || ref).
    """
    _check_same_shape(logp=logp, ref_logp=ref_logp)
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor,
              advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float = 0.2, beta: float = 0.04
              ) -> torch.Tensor:
    """GRPO's objective, negated: per token, -(min(rho A, clip(rho) A) - beta k3), where A (B,)
    is the sequence's group advantage on each of its tokens; averaged over each sequence's
    response tokens, then over sequences (DeepSeekMath's 1/|o_i| then 1/G)."""
    _check_same_shape(logp=logp, old_logp=old_logp, ref_logp=ref_logp, mask=mask)
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages must be (B,) = ({logp.shape[0]},), got {tuple(advantages.shape)}")
    _check_clip(clip_eps)
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or beta < 0:
        raise ValueError(f"beta must be a number >= 0, got {beta!r}")
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None]
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    per_token = -(surrogate - beta * k3_kl(logp, ref_logp))
    lengths = mask.sum(dim=1)
    if (lengths == 0).any():
        raise ValueError("every row of mask needs at least one response token")
    return ((per_token * mask).sum(dim=1) / lengths).mean()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is 1."""
    return (x * mask).sum() / mask.sum()


# ----------------------------------------------------------------------------- input checks

def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        shapes[name] = tuple(t.shape)
    if len(set(shapes.values())) > 1:
        raise ValueError(f"tensors must have the same shape, got {shapes}")


def _check_unit(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def _check_beta(beta: float) -> None:
    positive_number("beta", beta)


def _check_clip(clip_eps: float) -> None:
    if isinstance(clip_eps, bool) or not isinstance(clip_eps, (int, float)) or not 0 < clip_eps < 1:
        raise ValueError(f"clip_eps must be a number in (0, 1), got {clip_eps!r}")
