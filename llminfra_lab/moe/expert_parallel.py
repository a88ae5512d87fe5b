"""Expert parallelism: each rank holds E / N experts; tokens travel to them by all-to-all.

One MoE layer on rank r of N (its own tokens x_r, the router replicated on every rank):

    1. route:    gates, experts = top-k(router(x_r))
    2. dispatch: sort the T*k assignments by destination rank (expert // (E/N)); exchange
                 the counts (all_to_all_single of N integers), then the token rows
                 (all_to_all_single with uneven split sizes) and their expert ids
    3. compute:  run the local experts on what arrived (the grouped computation)
    4. combine:  send the results back by the reverse all-to-all; scale by the gates; add

`AllToAll` makes the exchange differentiable: its backward pass is the same exchange with
the split sizes swapped, so gradients flow back to the ranks the tokens came from.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist

from llminfra_lab.checks import positive_int
from llminfra_lab.moe.layer import MoEConfig, MoELayer, dropless_grouped, expert_loop
from llminfra_lab.moe.routing import route

__all__ = ["AllToAll", "all_to_all", "ep_moe_forward", "ep_equivalence_check",
           "dispatch_bytes_per_token", "expected_nodes_per_token"]


class AllToAll(torch.autograd.Function):
    """all_to_all_single with uneven splits; the gradient goes back the way the rows came."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, send_splits: list[int], recv_splits: list[int]) -> torch.Tensor:
        ctx.send_splits, ctx.recv_splits = send_splits, recv_splits
        out = x.new_empty((sum(recv_splits),) + tuple(x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), recv_splits, send_splits)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        back = grad.new_empty((sum(ctx.send_splits),) + tuple(grad.shape[1:]))
        dist.all_to_all_single(back, grad.contiguous(), ctx.send_splits, ctx.recv_splits)
        return back, None, None


def all_to_all(x: torch.Tensor, send_splits: list[int], recv_splits: list[int]) -> torch.Tensor:
    """Send rows send_splits[j] of x to rank j; receive recv_splits[j] rows from rank j."""
    return AllToAll.apply(x, send_splits, recv_splits)


def ep_moe_forward(x: torch.Tensor, router: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor,
                   w_down: torch.Tensor, cfg: MoEConfig, grouped: bool = True) -> torch.Tensor:
    """The routed part of an MoE layer under expert parallelism (call on every rank).

    x (T_local, d) are this rank's tokens; router (d, E) is replicated; w_gate/w_up
    (E/N, d, f) and w_down (E/N, f, d) are this rank's experts: global ids
    rank*E/N ... (rank+1)*E/N - 1. Returns (T_local, d), differentiable in all inputs.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    if cfg.n_experts % world:
        raise ValueError(f"n_experts ({cfg.n_experts}) must be divisible by the world size ({world})")
    local = cfg.n_experts // world
    if w_gate.shape[0] != local:
        raise ValueError(f"each rank holds {local} experts, got weights for {w_gate.shape[0]}")
    gates, experts, _ = route(x @ router, cfg.k, cfg.gating)
    # 2. dispatch: assignments sorted by destination rank, then counts, then rows
    flat_expert = experts.reshape(-1)
    order = torch.argsort(flat_expert, stable=True)
    token = order // cfg.k
    send_counts = torch.bincount(flat_expert // local, minlength=world)
    recv_counts = torch.empty_like(send_counts)
    dist.all_to_all_single(recv_counts, send_counts)
    send, recv = send_counts.tolist(), recv_counts.tolist()
    rows = all_to_all(x[token], send, recv)
    their_expert = all_to_all(flat_expert[order, None], send, recv)[:, 0] - rank * local
    # 3. compute: each received row is one assignment with gate 1 (gates are applied at home)
    ones = torch.ones(rows.shape[0], 1, dtype=rows.dtype)
    compute = dropless_grouped if grouped else expert_loop
    out = compute(rows, ones, their_expert[:, None], w_gate, w_up, w_down) if rows.shape[0] else rows * 0
    # 4. combine: back to where they came from, gated, summed per token
    back = all_to_all(out, recv, send)
    weighted = gates.reshape(-1)[order, None] * back
    return torch.zeros_like(x).index_add(0, token, weighted)


def ep_equivalence_check(rank: int, world_size: int, cfg: MoEConfig, tokens_per_rank: int = 24,
                         seed: int = 0) -> dict:
    """Run one MoE layer both ways on this rank and return the largest differences.

    Every rank builds the same full layer (same seed) and the same global batch; the
    single-process layer runs on the whole batch, the expert-parallel one on this rank's
    slice with this rank's experts. The loss is sum(y * w) for a fixed random w.
    Gradients: x and the local experts compare directly; the router's gradient is
    all-reduced (summed) over ranks first, as data parallelism would.
    """
    positive_int("tokens_per_rank", tokens_per_rank)
    layer = MoELayer(cfg, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    x_all = torch.randn(world_size * tokens_per_rank, cfg.d_model, generator=gen)
    w_all = torch.randn(world_size * tokens_per_rank, cfg.d_model, generator=gen)
    # single process, whole batch
    x_ref = x_all.clone().requires_grad_(True)
    gates, experts, _ = route(x_ref @ layer.router, cfg.k, cfg.gating)
    y_ref = expert_loop(x_ref, gates, experts, layer.w_gate, layer.w_up, layer.w_down)
    (y_ref * w_all).sum().backward()
    # expert parallel, this rank's tokens and experts
    local = cfg.n_experts // world_size
    mine = slice(rank * tokens_per_rank, (rank + 1) * tokens_per_rank)
    experts_mine = slice(rank * local, (rank + 1) * local)
    x = x_all[mine].clone().requires_grad_(True)
    router = layer.router.detach().clone().requires_grad_(True)
    weights = [w.detach()[experts_mine].clone().requires_grad_(True) for w in (layer.w_gate, layer.w_up, layer.w_down)]
    y = ep_moe_forward(x, router, *weights, cfg)
    (y * w_all[mine]).sum().backward()
    dist.all_reduce(router.grad)
    ref_grads = [w.grad[experts_mine] for w in (layer.w_gate, layer.w_up, layer.w_down)]
    return {
        "output": float((y - y_ref[mine]).detach().abs().max()),
        "grad_x": float((x.grad - x_ref.grad[mine]).abs().max()),
        "grad_router": float((router.grad - layer.router.grad).abs().max()),
        "grad_experts": max(float((w.grad - r).abs().max()) for w, r in zip(weights, ref_grads)),
    }


def dispatch_bytes_per_token(d_model: int, k: int, ep_ranks: int, bytes_per_element: float = 2.0) -> float:
    """Bytes one token sends to OTHER ranks in one dispatch, with uniform routing:
    k * d_model * bytes * (N - 1) / N. The combine sends the same back (often in bf16
    while dispatch may use FP8: DeepSeek-V3 dispatches in FP8, combines in BF16)."""
    positive_int("d_model", d_model)
    positive_int("k", k)
    positive_int("ep_ranks", ep_ranks)
    if not bytes_per_element > 0:
        raise ValueError(f"bytes_per_element must be > 0, got {bytes_per_element!r}")
    return k * d_model * bytes_per_element * (ep_ranks - 1) / ep_ranks


def expected_nodes_per_token(n_experts: int, k: int, n_nodes: int, max_nodes: int | None = None) -> float:
    """Expected number of distinct nodes that receive a copy of a token.

    The n_experts are spread evenly over n_nodes; the k experts are chosen uniformly at
    random without replacement. A node that hosts several of them receives ONE copy
    (DeepEP forwards it inside the node over NVLink). With `max_nodes` = M the router
    first picks at most M nodes (DeepSeek-V3: M = 4), so the count is min(D, M).
    """
    for name, value in (("n_experts", n_experts), ("k", k), ("n_nodes", n_nodes)):
        positive_int(name, value)
    if k > n_experts or n_experts % n_nodes:
        raise ValueError(f"need k <= n_experts and n_experts divisible by n_nodes; got {k}, {n_experts}, {n_nodes}")
    if max_nodes is not None:
        positive_int("max_nodes", max_nodes)
    per_node, cap = n_experts // n_nodes, max_nodes or n_nodes
    total = math.comb(n_experts, k)
    expected = 0.0
    for j in range(1, n_nodes + 1):          # P(exactly j nodes used), by inclusion-exclusion
        onto = sum((-1) ** i * math.comb(j, i) * math.comb((j - i) * per_node, k) for i in range(j + 1))
        expected += min(j, cap) * math.comb(n_nodes, j) * onto / total
    return expected
