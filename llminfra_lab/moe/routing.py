"""Routing: which experts each token goes to, with what weight, and how balanced the load is.

    logits = x @ W_router                     (tokens, n_experts)
    scores = softmax(logits)  (Switch, Mixtral)   or   sigmoid(logits)  (DeepSeek-V3)
    chosen = top-k of (scores + bias)         the bias only steers the choice (aux-loss-free)
    gates  = scores of the chosen experts, renormalised to sum to 1 (or not)

Capacity (GShard, Switch): each expert takes at most C = ceil(capacity_factor * k * T / E)
token slots; assignments beyond that are dropped (earlier tokens win). Three ways to keep
the load even: nothing; the Switch auxiliary loss alpha * E * sum_i f_i P_i; DeepSeek-V3's
bias update (no loss at all), optionally with its small sequence-wise loss.
"""
from __future__ import annotations

import math

import torch

from llminfra_lab.checks import positive_int, positive_number

__all__ = ["GATINGS", "route", "expert_capacity", "capacity_mask", "expert_load",
           "switch_aux_loss", "sequence_aux_loss", "update_bias", "max_violation"]

GATINGS = ("softmax", "sigmoid")


def route(logits: torch.Tensor, k: int, gating: str = "softmax", bias: torch.Tensor | None = None,
          normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k routing of logits (tokens, n_experts).

    Returns (gates (tokens, k), experts (tokens, k) int64, scores (tokens, n_experts)).
    `bias` (n_experts,) is added to the scores for the CHOICE only; the gates use the
    unbiased scores (DeepSeek-V3, eq. 16). normalize=True divides the k gates by their sum.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError(f"logits must be a (tokens, n_experts) tensor, got {getattr(logits, 'shape', logits)!r}")
    n_experts = logits.shape[1]
    positive_int("k", k)
    if k > n_experts:
        raise ValueError(f"k ({k}) must be <= n_experts ({n_experts})")
    if gating not in GATINGS:
        raise ValueError(f"gating must be one of {GATINGS}, got {gating!r}")
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (n_experts,)):
        raise ValueError(f"bias must be a tensor of shape ({n_experts},)")
    work = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits   # 16-bit: in fp32
    scores = torch.softmax(work, dim=-1) if gating == "softmax" else torch.sigmoid(work)
    choice = scores if bias is None else scores + bias.to(scores.dtype)
    experts = torch.topk(choice.detach(), k, dim=-1).indices
    gates = scores.gather(1, experts)
    if normalize:
        gates = gates / gates.sum(-1, keepdim=True)
    return gates.to(logits.dtype), experts, scores


def expert_capacity(tokens: int, n_experts: int, k: int, capacity_factor: float) -> int:
    """Token slots per expert: ceil(capacity_factor * k * tokens / n_experts) (Switch, eq. 3)."""
    positive_int("tokens", tokens)
    positive_int("n_experts", n_experts)
    positive_int("k", k)
    positive_number("capacity_factor", capacity_factor)
    return math.ceil(capacity_factor * k * tokens / n_experts)


def capacity_mask(experts: torch.Tensor, n_experts: int, capacity: int) -> torch.Tensor:
    """Bool (tokens, k): True where an assignment fits in its expert's `capacity` slots.

    Slots are filled in token order, first choices of all tokens before second choices
    (as GShard and Switch do), so a token's top-1 is dropped last.
    """
    if not isinstance(experts, torch.Tensor) or experts.dim() != 2:
        raise ValueError("experts must be a (tokens, k) tensor of expert indices")
    positive_int("n_experts", n_experts)
    positive_int("capacity", capacity)
    flat = experts.t().reshape(-1)                                   # choice-major order
    one_hot = torch.nn.functional.one_hot(flat, n_experts)
    position = (one_hot.cumsum(0) * one_hot).sum(-1) - 1             # slot each assignment would take
    return (position < capacity).reshape(experts.shape[1], -1).t()


def expert_load(experts: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Assignments per expert (n_experts,) as float: how many token slots each received."""
    positive_int("n_experts", n_experts)
    return torch.bincount(experts.reshape(-1), minlength=n_experts).float()


def switch_aux_loss(scores: torch.Tensor, experts: torch.Tensor, alpha: float = 0.01) -> torch.Tensor:
    """Switch Transformer load-balancing loss alpha * E * sum_i f_i * P_i (Fedus et al., eq. 4).

    f_i: fraction of the token-to-expert assignments that went to expert i (top-k: of T*k);
    P_i: mean router probability of expert i. Equals alpha when both are uniform (1/E).
    Only P_i carries a gradient (f_i comes from a non-differentiable top-k).
    """
    if scores.dim() != 2 or experts.dim() != 2 or scores.shape[0] != experts.shape[0]:
        raise ValueError("scores must be (tokens, n_experts) and experts (tokens, k) for the same tokens")
    positive_number("alpha", alpha)
    n_experts = scores.shape[1]
    dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
    f = expert_load(experts, n_experts).to(dtype) / experts.numel()
    p = scores.to(dtype).mean(0)
    return alpha * n_experts * (f * p).sum()


def sequence_aux_loss(scores: torch.Tensor, experts: torch.Tensor, alpha: float = 1e-4) -> torch.Tensor:
    """DeepSeek-V3's sequence-wise balance loss (eqs. 17-20), averaged over the sequences.

    scores (batch, seq, E) are the sigmoid affinities, experts (batch, seq, k) the choices.
    f_i = E / (k T) * #tokens of the sequence choosing i;  P_i = mean_t of s_i,t / sum_j s_j,t;
    loss = alpha * sum_i f_i P_i, which is alpha when every sequence is perfectly balanced.
    """
    if scores.dim() != 3 or experts.dim() != 3 or scores.shape[:2] != experts.shape[:2]:
        raise ValueError("scores must be (batch, seq, n_experts) and experts (batch, seq, k)")
    positive_number("alpha", alpha)
    batch, seq, n_experts = scores.shape
    k = experts.shape[2]
    counts = torch.zeros(batch, n_experts).scatter_add_(1, experts.reshape(batch, -1),
                                                        torch.ones(batch, seq * k))
    f = counts * n_experts / (k * seq)
    p = (scores.float() / scores.float().sum(-1, keepdim=True)).mean(1)
    return alpha * (f * p).sum(-1).mean()


def update_bias(bias: torch.Tensor, load: torch.Tensor, gamma: float = 1e-3) -> torch.Tensor:
    """DeepSeek-V3's auxiliary-loss-free step: bias_i -= gamma if expert i is overloaded
    (load above the mean), += gamma if underloaded. Returns the new bias (n_experts,)."""
    if not isinstance(bias, torch.Tensor) or not isinstance(load, torch.Tensor) or bias.shape != load.shape \
            or bias.dim() != 1:
        raise ValueError("bias and load must be 1-D tensors of the same shape (n_experts,)")
    positive_number("gamma", gamma)
    return bias + gamma * torch.sign(load.float().mean() - load.float())


def max_violation(load: torch.Tensor) -> float:
    """MaxVio of Wang et al. 2024: (max load - mean load) / mean load; 0 = perfectly even."""
    if not isinstance(load, torch.Tensor) or load.dim() != 1 or load.numel() == 0 or load.sum() <= 0:
        raise ValueError("load must be a non-empty 1-D tensor with a positive sum")
    mean = load.float().mean()
    return float((load.float().max() - mean) / mean)
