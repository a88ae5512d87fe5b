"""Tensor parallelism (Shoeybi et al. 2019): Megatron's column and row split.

A linear layer's weight is cut by output features (`ColumnParallelLinear`) or by input
features (`RowParallelLinear`); `shard_linear_weight` says which slice a rank keeps. A
column split followed by a row split needs one all-reduce at its end in the forward pass
(the "g" operator) and one at its start in the backward pass (the "f" operator), so a
transformer layer (attention + MLP) costs 2 all-reduces forward and 2 backward.
`TensorParallelMLP`, `TensorParallelAttention` and `TensorParallelBlock` shard a
`model.Block` and give the same outputs and gradients as the unsharded block.

Megatron's two conjugate operators. With Y = X A split as A = [A_1 | A_2] (columns) and
Z = Y B split as B = [B_1; B_2] (rows), rank i computes Z_i = (X A_i) B_i and Z = sum_i Z_i.
  f: identity forward, all-reduce backward  (X is replicated; its gradient is a sum of parts)
  g: all-reduce forward, identity backward  (Z is a sum of parts; its gradient is replicated)
"""
from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from llminfra_lab.checks import nonnegative_int, positive_int
from llminfra_lab.model import apply_rope, causal_attention

__all__ = [
    "copy_to_tp", "reduce_from_tp", "shard_linear_weight", "ColumnParallelLinear", "RowParallelLinear",
    "TensorParallelMLP", "TensorParallelAttention", "TensorParallelBlock", "record_allreduces", "tp_shard_dim",
]
# Megatron's two conjugate operators. With Y = X A split as A = [A_1 | A_2] (columns) and
# Z = Y B split as B = [B_1; B_2] (rows), rank i computes Z_i = (X A_i) B_i and Z = sum_i Z_i.
#   f: identity forward, all-reduce backward  (X is replicated; its gradient is a sum of parts)
#   g: all-reduce forward, identity backward  (Z is a sum of parts; its gradient is replicated)

_ALLREDUCE_LOG: list[list[tuple[str, int]]] = []   # stack of active recorders


def _all_reduce(x: torch.Tensor, where: str) -> torch.Tensor:
    for log in _ALLREDUCE_LOG:
        log.append((where, x.numel()))
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        x = x.contiguous()
        dist.all_reduce(x)
    return x


class record_allreduces:
    """Context manager recording every tensor-parallel all-reduce as (where, elements).

    `where` is "g-forward" or "f-backward". Use it to count a layer's communication:

        with record_allreduces() as log:
            block(x, cos, sin).sum().backward()
        len(log)   # 4 for one transformer block: 2 forward + 2 backward
    """

    def __enter__(self) -> list[tuple[str, int]]:
        self.log: list[tuple[str, int]] = []
        _ALLREDUCE_LOG.append(self.log)
        return self.log

    def __exit__(self, *exc) -> None:
        _ALLREDUCE_LOG.remove(self.log)


class _CopyToTP(torch.autograd.Function):
    """f: forward identity, backward all-reduce of the input gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return _all_reduce(grad.clone(), "f-backward")


class _ReduceFromTP(torch.autograd.Function):
    """g: forward all-reduce of the partial sums, backward identity."""

    @staticmethod
    def forward(ctx, x):
        return _all_reduce(x.clone(), "g-forward")

    @staticmethod
    def backward(ctx, grad):
        return grad


def copy_to_tp(x: torch.Tensor) -> torch.Tensor:
    """Megatron's f operator: identity in the forward pass, all-reduce in the backward pass."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor, got {type(x).__name__}")
    return _CopyToTP.apply(x)


def reduce_from_tp(x: torch.Tensor) -> torch.Tensor:
    """Megatron's g operator: all-reduce (sum) in the forward pass, identity in the backward pass."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor, got {type(x).__name__}")
    return _ReduceFromTP.apply(x)


def _check_rank(rank: int, world_size: int) -> None:
    positive_int("world_size", world_size)
    nonnegative_int("rank", rank)
    if not rank < world_size:
        raise ValueError(f"expected world_size >= 1 and 0 <= rank < world_size, got rank={rank}, "
                         f"world_size={world_size}")


def shard_linear_weight(weight: torch.Tensor, rank: int, world_size: int, style: str) -> torch.Tensor:
    """The slice of a Linear's weight (out_features, in_features) that `rank` keeps.

    style "column": a contiguous 1/world_size of the output features (rows of the
    weight), shape (out/N, in); each rank computes its own slice of y = x W^T.
    style "row": a contiguous 1/world_size of the input features (columns of the
    weight), shape (out, in/N); each rank computes a partial y, and the partials must be
    summed by an all-reduce (Megatron's g). Returns a copy.
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError("weight must be a 2-D tensor (out_features, in_features)")
    _check_rank(rank, world_size)
    if style not in ("column", "row"):
        raise ValueError(f"style must be 'column' or 'row', got {style!r}")
    dim = 0 if style == "column" else 1
    if weight.shape[dim] % world_size:
        raise ValueError(f"{style}-parallel split: dimension {dim} of size {weight.shape[dim]} is not "
                         f"divisible by world_size {world_size}")
    size = weight.shape[dim] // world_size
    return weight.detach().narrow(dim, rank * size, size).clone()


class ColumnParallelLinear(nn.Module):
    """y_i = x A_i^T: this rank's slice of the output features (weight (out/N, in)).

    The input is replicated; `f` (copy_to_tp) in front makes the input gradient the sum
    of every rank's part. With gather_output=False the output stays sharded, ready for a
    `RowParallelLinear` or for per-head attention.
    """

    def __init__(self, weight_shard: torch.Tensor, *, input_is_replicated: bool = True):
        super().__init__()
        if not isinstance(weight_shard, torch.Tensor) or weight_shard.dim() != 2:
            raise ValueError("weight_shard must be a 2-D tensor (out_features / N, in_features)")
        self.weight = nn.Parameter(weight_shard)
        self.input_is_replicated = input_is_replicated

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, world_size: int, **kw) -> ColumnParallelLinear:
        """Shard an existing bias-free nn.Linear by output features."""
        _check_linear(linear)
        _check_rank(rank, world_size)
        return cls(shard_linear_weight(linear.weight, rank, world_size, "column"), **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_is_replicated:
            x = copy_to_tp(x)
        return F.linear(x, self.weight)


class RowParallelLinear(nn.Module):
    """z = sum_i x_i B_i^T: the input arrives sharded by features (weight (out, in/N)).

    Each rank computes a partial output; `g` (reduce_from_tp) sums them into the full,
    replicated output.
    """

    def __init__(self, weight_shard: torch.Tensor):
        super().__init__()
        if not isinstance(weight_shard, torch.Tensor) or weight_shard.dim() != 2:
            raise ValueError("weight_shard must be a 2-D tensor (out_features, in_features / N)")
        self.weight = nn.Parameter(weight_shard)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, world_size: int) -> RowParallelLinear:
        """Shard an existing bias-free nn.Linear by input features."""
        _check_linear(linear)
        _check_rank(rank, world_size)
        return cls(shard_linear_weight(linear.weight, rank, world_size, "row"))

    def forward(self, x_shard: torch.Tensor) -> torch.Tensor:
        return reduce_from_tp(F.linear(x_shard, self.weight))


def _check_linear(linear) -> None:
    if not isinstance(linear, nn.Linear) or linear.bias is not None:
        raise ValueError("expected a bias-free torch.nn.Linear (as in llminfra_lab.model)")


class TensorParallelMLP(nn.Module):
    """The model's SwiGLU MLP split Megatron-style across `world_size` ranks.

    w_gate and w_up are column-parallel (each rank owns d_ff/N hidden units), w_down is
    row-parallel; the elementwise silu(gate) * up needs no communication because each
    rank owns matching hidden units. One all-reduce forward (g), one backward (f).
    """

    def __init__(self, mlp: nn.Module, rank: int, world_size: int):
        super().__init__()
        _check_rank(rank, world_size)
        for name in ("w_gate", "w_up", "w_down"):
            if not isinstance(getattr(mlp, name, None), nn.Linear):
                raise ValueError(f"mlp must have bias-free nn.Linear {name} (a model.MLP), got {type(mlp).__name__}")
        self.rank, self.world_size = rank, world_size
        # f is applied once for both column-parallel layers: they share the same input.
        self.w_gate = ColumnParallelLinear.from_linear(mlp.w_gate, rank, world_size, input_is_replicated=False)
        self.w_up = ColumnParallelLinear.from_linear(mlp.w_up, rank, world_size, input_is_replicated=False)
        self.w_down = RowParallelLinear.from_linear(mlp.w_down, rank, world_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = copy_to_tp(x)
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class TensorParallelAttention(nn.Module):
    """The model's grouped-query attention with heads split across ranks.

    Rank i owns n_head/N query heads and the n_kv_head/N key/value heads their group
    uses, so GQA's sharing stays inside one rank: wq, wk, wv are column-parallel by
    heads, wo is row-parallel. Needs n_kv_head divisible by N, as Megatron-Core does
    (inference engines such as vLLM instead replicate K/V heads when N > n_kv_head).
    """

    def __init__(self, attn: nn.Module, rank: int, world_size: int):
        super().__init__()
        _check_rank(rank, world_size)
        for name in ("wq", "wk", "wv", "wo"):
            if not isinstance(getattr(attn, name, None), nn.Linear):
                raise ValueError(f"attn must have bias-free nn.Linear {name} (a model.Attention)")
        n_head, n_kv_head, head_dim = attn.n_head, attn.n_kv_head, attn.head_dim
        if n_head % world_size or n_kv_head % world_size:
            raise ValueError(f"n_head ({n_head}) and n_kv_head ({n_kv_head}) must be divisible by the "
                             f"tensor-parallel size {world_size}")
        self.n_head, self.n_kv_head, self.head_dim = n_head // world_size, n_kv_head // world_size, head_dim
        # Heads are contiguous blocks of head_dim output features, so chunking rows picks whole heads.
        self.wq = ColumnParallelLinear.from_linear(attn.wq, rank, world_size, input_is_replicated=False)
        self.wk = ColumnParallelLinear.from_linear(attn.wk, rank, world_size, input_is_replicated=False)
        self.wv = ColumnParallelLinear.from_linear(attn.wv, rank, world_size, input_is_replicated=False)
        self.wo = RowParallelLinear.from_linear(attn.wo, rank, world_size)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        x = copy_to_tp(x)
        q = self.wq(x).view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = causal_attention(q, k, v)
        return self.wo(out.transpose(1, 2).reshape(b, t, self.n_head * self.head_dim))


class TensorParallelBlock(nn.Module):
    """A model.Block whose attention and MLP are tensor-parallel; norms are replicated.

    Per forward pass: 2 all-reduces (after attention, after MLP); per backward pass: 2
    (before attention, before MLP). Build it with `TensorParallelBlock.from_block`.
    """

    def __init__(self, attn_norm: nn.Module, attn: TensorParallelAttention,
                 mlp_norm: nn.Module, mlp: TensorParallelMLP):
        super().__init__()
        self.attn_norm, self.attn, self.mlp_norm, self.mlp = attn_norm, attn, mlp_norm, mlp

    @classmethod
    def from_block(cls, block: nn.Module, rank: int, world_size: int) -> TensorParallelBlock:
        """Shard a model.Block's weights for `rank` of `world_size` (copies; the block is unchanged)."""
        for name in ("attn_norm", "attn", "mlp_norm", "mlp"):
            if not hasattr(block, name):
                raise ValueError(f"block must be a model.Block with .{name}, got {type(block).__name__}")
        return cls(copy.deepcopy(block.attn_norm), TensorParallelAttention(block.attn, rank, world_size),
                   copy.deepcopy(block.mlp_norm), TensorParallelMLP(block.mlp, rank, world_size))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


def tp_shard_dim(param_name: str) -> int | None:
    """The dimension along which tensor parallelism splits a parameter of the model's Block.

    0 for column-parallel weights (wq, wk, wv, w_gate, w_up: each rank keeps a slice of
    the output features), 1 for row-parallel ones (wo, w_down: a slice of the input
    features), None for the replicated RMSNorm weights. Concatenating the ranks' shards
    along this dimension rebuilds the full parameter.
    """
    if not isinstance(param_name, str):
        raise ValueError(f"param_name must be a str, got {type(param_name).__name__}")
    if param_name.endswith(("wo.weight", "w_down.weight")):
        return 1
    if param_name.endswith(("wq.weight", "wk.weight", "wv.weight", "w_gate.weight", "w_up.weight")):
        return 0
    if param_name.endswith("norm.weight"):
        return None
    raise ValueError(f"{param_name!r} is not a parameter of a transformer Block; expected a name ending "
                     "in wq/wk/wv/wo/w_gate/w_up/w_down.weight or norm.weight")
