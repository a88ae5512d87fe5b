"""An MoE feed-forward layer: a router, shared experts and fine-grained routed experts.

    y = sum_shared FFN_s(x) + sum_{e in top-k(x)} gate_e(x) * FFN_e(x)      (DeepSeekMoE)

Each expert is a SwiGLU FFN like the dense model's MLP; the E experts' weights are stored
stacked, (E, d_model, d_expert), so that both ways of computing the layer read the same
tensors:

* `expert_loop`: for each expert, pick its tokens, run its FFN, add the gated result back.
  Clear, and what most first implementations do; E small matmuls, one after the other.
* `dropless_grouped`: sort the (token, expert) assignments by expert, pad each expert's
  group to a multiple of a block size, and run ALL experts as one batched matmul over
  blocks. This is the MegaBlocks idea (block-sparse, no token is dropped), written with
  torch.bmm instead of a custom kernel.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llminfra_lab.checks import nonnegative_int, positive_int, positive_number
from llminfra_lab.moe.routing import (
    GATINGS,
    capacity_mask,
    expert_capacity,
    expert_load,
    route,
    sequence_aux_loss,
    switch_aux_loss,
    update_bias,
)

__all__ = ["BALANCING", "MoEConfig", "MoELayer", "expert_loop", "dropless_grouped", "swiglu"]

BALANCING = ("none", "aux", "bias")


@dataclass
class MoEConfig:
    d_model: int = 64
    d_expert: int = 32                 # width of one routed expert's FFN (fine-grained: small)
    n_experts: int = 8                 # routed experts
    k: int = 2                         # routed experts per token
    n_shared: int = 0                  # shared experts every token uses (DeepSeekMoE)
    gating: str = "softmax"            # "softmax" (Switch, Mixtral) or "sigmoid" (DeepSeek-V3)
    capacity_factor: float | None = None   # None = dropless
    balancing: str = "none"            # "none", "aux" (Switch loss) or "bias" (DeepSeek-V3)
    aux_alpha: float = 0.01            # Switch loss weight
    bias_gamma: float = 1e-3           # bias update speed
    seq_alpha: float = 0.0             # DeepSeek-V3 sequence-wise loss weight (with "bias")

    def __post_init__(self):
        for name in ("d_model", "d_expert", "n_experts", "k"):
            positive_int(f"MoEConfig.{name}", getattr(self, name))
        nonnegative_int("MoEConfig.n_shared", self.n_shared)
        if self.k > self.n_experts:
            raise ValueError(f"MoEConfig.k ({self.k}) must be <= n_experts ({self.n_experts})")
        if self.gating not in GATINGS:
            raise ValueError(f"MoEConfig.gating must be one of {GATINGS}, got {self.gating!r}")
        if self.balancing not in BALANCING:
            raise ValueError(f"MoEConfig.balancing must be one of {BALANCING}, got {self.balancing!r}")
        if self.capacity_factor is not None:
            positive_number("MoEConfig.capacity_factor", self.capacity_factor)
        positive_number("MoEConfig.aux_alpha", self.aux_alpha)
        positive_number("MoEConfig.bias_gamma", self.bias_gamma)
        if not self.seq_alpha >= 0:
            raise ValueError(f"MoEConfig.seq_alpha must be >= 0, got {self.seq_alpha!r}")


class MoELayer(nn.Module):
    """Drop-in replacement for the GPT's MLP: (batch, seq, d_model) -> same shape.

    After each forward pass: `last_load` (n_experts,) assignments per expert,
    `last_dropped` assignments dropped by the capacity limit, and `aux_loss` (a scalar
    tensor to add to the training loss; zero without an auxiliary loss).
    With balancing="bias", call `update_bias()` after each optimizer step.
    """

    def __init__(self, cfg: MoEConfig, seed: int = 0):
        super().__init__()
        if not isinstance(cfg, MoEConfig):
            raise ValueError(f"cfg must be an MoEConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        gen = torch.Generator().manual_seed(seed)
        e, d, f = cfg.n_experts, cfg.d_model, cfg.d_expert
        init = lambda *shape: nn.Parameter(torch.randn(*shape, generator=gen) * 0.02)  # noqa: E731
        self.router = init(d, e)
        self.w_gate, self.w_up, self.w_down = init(e, d, f), init(e, d, f), init(e, f, d)
        s = cfg.n_shared                       # (0, d, f) stacks when there are none
        self.shared_gate, self.shared_up, self.shared_down = init(s, d, f), init(s, d, f), init(s, f, d)
        self.register_buffer("bias", torch.zeros(e))
        self.last_load = torch.zeros(e)
        self.last_dropped = 0
        self.aux_loss = torch.zeros(())

    def forward(self, x: torch.Tensor, grouped: bool = True) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.cfg.d_model:
            raise ValueError(f"x must be (batch, seq, {self.cfg.d_model}), got {getattr(x, 'shape', x)!r}")
        cfg = self.cfg
        b, t, d = x.shape
        flat = x.reshape(-1, d)
        bias = self.bias if cfg.balancing == "bias" else None
        gates, experts, scores = route(flat @ self.router, cfg.k, cfg.gating, bias)
        if cfg.capacity_factor is not None:
            keep = capacity_mask(experts, cfg.n_experts, expert_capacity(flat.shape[0], cfg.n_experts, cfg.k,
                                                                         cfg.capacity_factor))
            self.last_dropped = int((~keep).sum())
            gates = gates * keep
        else:
            self.last_dropped = 0
        self.last_load = expert_load(experts, cfg.n_experts)
        self.aux_loss = torch.zeros((), device=x.device)
        if cfg.balancing == "aux":
            self.aux_loss = switch_aux_loss(scores, experts, cfg.aux_alpha)
        elif cfg.balancing == "bias" and cfg.seq_alpha > 0:
            self.aux_loss = sequence_aux_loss(scores.reshape(b, t, -1), experts.reshape(b, t, -1), cfg.seq_alpha)
        compute = dropless_grouped if grouped else expert_loop
        y = compute(flat, gates, experts, self.w_gate, self.w_up, self.w_down)
        for s in range(cfg.n_shared):
            y = y + swiglu(flat, self.shared_gate[s], self.shared_up[s], self.shared_down[s])
        return y.reshape(b, t, d)

    @torch.no_grad()
    def update_bias(self) -> None:
        """One auxiliary-loss-free step on the load of the last forward pass."""
        self.bias.copy_(update_bias(self.bias, self.last_load, self.cfg.bias_gamma))


def swiglu(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """One expert's FFN: (silu(x W_gate) * x W_up) W_down, x (n, d), W_gate/W_up (d, f), W_down (f, d)."""
    return (F.silu(x @ w_gate) * (x @ w_up)) @ w_down


def expert_loop(x: torch.Tensor, gates: torch.Tensor, experts: torch.Tensor, w_gate: torch.Tensor,
                w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """The routed experts, one expert at a time: x (T, d), gates/experts (T, k) -> (T, d)."""
    _check_expert_args(x, gates, experts, w_gate, w_up, w_down)
    y = torch.zeros_like(x)
    for e in range(w_gate.shape[0]):
        token, slot = torch.where(experts == e)             # the tokens that chose expert e
        if token.numel():
            out = swiglu(x[token], w_gate[e], w_up[e], w_down[e])
            y = y.index_add(0, token, gates[token, slot, None] * out)
    return y


def dropless_grouped(x: torch.Tensor, gates: torch.Tensor, experts: torch.Tensor, w_gate: torch.Tensor,
                     w_up: torch.Tensor, w_down: torch.Tensor, block: int = 16) -> torch.Tensor:
    """The routed experts as ONE batched matmul over blocks (MegaBlocks-style, no drops).

    1. flatten the T*k assignments and sort them by expert (stable);
    2. pad each expert's group to a multiple of `block` rows, so every block belongs to
       exactly one expert: the block-diagonal (block-sparse) structure;
    3. gather each block's expert weights and run torch.bmm over all blocks at once;
    4. drop the padding, scale by the gates, and add the rows back to their tokens.
    """
    _check_expert_args(x, gates, experts, w_gate, w_up, w_down)
    positive_int("block", block)
    n_experts, d = w_gate.shape[0], x.shape[1]
    flat_expert = experts.reshape(-1)
    order = torch.argsort(flat_expert, stable=True)                 # assignments grouped by expert
    token = order // experts.shape[1]
    counts = torch.bincount(flat_expert, minlength=n_experts)
    padded = (counts + block - 1) // block * block
    starts = torch.cumsum(padded, 0) - padded                        # first padded row of each expert
    rank_in_group = torch.arange(order.numel()) - (torch.cumsum(counts, 0) - counts)[flat_expert[order]]
    rows = starts[flat_expert[order]] + rank_in_group                # padded row of each assignment
    n_rows = int(padded.sum())
    buffer = x.new_zeros(n_rows, d).index_copy(0, rows, x[token])
    block_expert = torch.repeat_interleave(torch.arange(n_experts), padded // block)
    blocks = buffer.reshape(-1, block, d)                            # (n_blocks, block, d)
    hidden = F.silu(torch.bmm(blocks, w_gate[block_expert])) * torch.bmm(blocks, w_up[block_expert])
    out = torch.bmm(hidden, w_down[block_expert]).reshape(n_rows, d)[rows]
    weighted = gates.reshape(-1)[order, None] * out
    return torch.zeros_like(x).index_add(0, token, weighted)


def _check_expert_args(x, gates, experts, w_gate, w_up, w_down) -> None:
    if x.dim() != 2 or gates.shape != experts.shape or gates.dim() != 2 or gates.shape[0] != x.shape[0]:
        raise ValueError(f"expected x (T, d) with gates and experts (T, k); got {tuple(x.shape)}, "
                         f"{tuple(gates.shape)}, {tuple(experts.shape)}")
    e, d, f = w_gate.shape
    if d != x.shape[1] or w_up.shape != (e, d, f) or w_down.shape != (e, f, d):
        raise ValueError(f"expected w_gate/w_up (E, {x.shape[1]}, f) and w_down (E, f, {x.shape[1]}); got "
                         f"{tuple(w_gate.shape)}, {tuple(w_up.shape)}, {tuple(w_down.shape)}")
    if experts.numel() and (experts.min() < 0 or experts.max() >= e):
        raise ValueError(f"expert indices must be in [0, {e})")
