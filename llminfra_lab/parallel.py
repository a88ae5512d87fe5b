"""Parallelism: splitting one training step across many devices.

Three ideas, each small enough to read in one sitting, and one planner that combines them:

1. Tensor parallelism (Shoeybi et al. 2019). A linear layer's weight is cut by output
   columns (`ColumnParallelLinear`) or by input rows (`RowParallelLinear`). A column
   split followed by a row split needs one all-reduce at its end in the forward pass
   (the "g" operator) and one at its start in the backward pass (the "f" operator), so
   a transformer layer (attention + MLP) costs 2 all-reduces forward and 2 backward.
   `TensorParallelMLP`, `TensorParallelAttention` and `TensorParallelBlock` shard a
   `model.Block` and give the same outputs and gradients as the unsharded block.
2. Data parallelism. Every rank holds the whole model, takes a slice of the batch and
   averages gradients with an all-reduce (`allreduce_gradients`, optionally bucketed).
3. Pipeline parallelism. Layers are cut into stages; micro-batches flow through them.
   `pipeline_schedule` simulates GPipe, 1F1B, interleaved 1F1B, a zero-bubble (ZB-H1)
   schedule and DeepSeek-V3's bidirectional DualPipe from per-op costs and returns every
   rank's timeline, its bubble fraction and its peak number of in-flight micro-batches.

`plan_layouts` enumerates (TP, PP, DP) layouts of a catalog model on a cluster and
keeps those whose memory per GPU fits (model states under ZeRO-1, from
`zero.model_state_bytes`, plus activations).

Everything distributed uses torch.distributed; `collectives.launch` runs the
`*_worker` functions below on local CPU processes with the gloo backend.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .checks import positive_int
from .zero import model_state_bytes

__all__ = [
    # tensor parallelism
    "copy_to_tp", "reduce_from_tp", "ColumnParallelLinear", "RowParallelLinear",
    "TensorParallelMLP", "TensorParallelAttention", "TensorParallelBlock", "record_allreduces",
    # data parallelism
    "allreduce_gradients",
    # pipeline schedules
    "PipelineOp", "PipelineSchedule", "pipeline_schedule", "SCHEDULES", "plot_schedule", "plot_schedules",
    # layout planning
    "Layout", "plan_layouts", "layout_memory_bytes", "RECOMPUTE",
    # workers run by collectives.launch
    "tp_block_worker", "dp_step_worker", "tp_shard_dim",
]


# ============================================================================ tensor parallelism
#
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
    for name, value in (("rank", rank), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"expected world_size >= 1 and 0 <= rank < world_size, got rank={rank}, "
                         f"world_size={world_size}")


def _shard(weight: torch.Tensor, dim: int, rank: int, world_size: int, what: str) -> torch.Tensor:
    if weight.shape[dim] % world_size:
        raise ValueError(f"{what}: dimension {dim} of size {weight.shape[dim]} is not divisible by "
                         f"world_size {world_size}")
    return weight.detach().chunk(world_size, dim=dim)[rank].clone()


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
        return cls(_shard(linear.weight, 0, rank, world_size, "ColumnParallelLinear"), **kw)

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
        return cls(_shard(linear.weight, 1, rank, world_size, "RowParallelLinear"))

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
        from .model import apply_rope, causal_attention

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
        import copy

        for name in ("attn_norm", "attn", "mlp_norm", "mlp"):
            if not hasattr(block, name):
                raise ValueError(f"block must be a model.Block with .{name}, got {type(block).__name__}")
        return cls(copy.deepcopy(block.attn_norm), TensorParallelAttention(block.attn, rank, world_size),
                   copy.deepcopy(block.mlp_norm), TensorParallelMLP(block.mlp, rank, world_size))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


# ============================================================================ data parallelism

def allreduce_gradients(module: nn.Module, bucket_bytes: int | None = None) -> int:
    """Average every parameter's .grad over the data-parallel group; returns the number of all-reduces.

    Without `bucket_bytes`, one all-reduce per parameter. With it, gradients are packed
    into flat buckets of at most `bucket_bytes` (a parameter larger than that gets its own
    bucket), one all-reduce each, as PyTorch DDP does (its default bucket is 25 MiB).
    Parameters without a gradient are skipped. Works (and does nothing) without a group.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if bucket_bytes is not None and (isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, int)
                                     or bucket_bytes < 1):
        raise ValueError(f"bucket_bytes must be None or a positive int, got {bucket_bytes!r}")
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world == 1 or not grads:
        return 0
    if bucket_bytes is None:
        for g in grads:
            dist.all_reduce(g)
            g.div_(world)
        return len(grads)
    buckets: list[list[torch.Tensor]] = [[]]
    size = 0
    for g in grads:
        nbytes = g.numel() * g.element_size()
        if buckets[-1] and size + nbytes > bucket_bytes:
            buckets.append([])
            size = 0
        buckets[-1].append(g)
        size += nbytes
    for bucket in buckets:
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat.div_(world)
        offset = 0
        for g in bucket:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
    return len(buckets)


# ============================================================================ workers
# Run with collectives.launch(fn, world_size, ...); they must live at module level.

def _tiny_config(cfg_kwargs: dict):
    from .model import GPTConfig

    return GPTConfig(**cfg_kwargs)


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


def dp_step_worker(rank: int, world_size: int, cfg_kwargs: dict, x: torch.Tensor, y: torch.Tensor,
                   lr: float = 0.1, seed: int = 0, bucket_bytes: int | None = None) -> dict:
    """Data-parallel SGD step: rank r takes the r-th contiguous 1/N of the batch rows and averages grads.

    Every rank builds the same model (same seed), computes the mean loss on its
    batch/N rows, all-reduces the gradients and steps. Returns the same dictionary as
    {"loss", "grads", "params"} of the one-process step (the loss averaged over ranks)
    plus the number of all-reduces.
    """
    from .model import GPT

    if x.shape[0] % world_size:
        raise ValueError(f"batch {x.shape[0]} must be divisible by the data-parallel size {world_size}")
    model = GPT(_tiny_config(cfg_kwargs), seed=seed)
    rows = slice(rank * x.shape[0] // world_size, (rank + 1) * x.shape[0] // world_size)
    loss = model.loss(x[rows], y[rows])
    loss.backward()
    n_allreduce = allreduce_gradients(model, bucket_bytes)
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    return {"loss": mean_loss.item() / world_size, "grads": grads, "allreduces": n_allreduce,
            "params": {n: p.detach().clone() for n, p in model.named_parameters()}}


def tp_block_worker(rank: int, world_size: int, cfg_kwargs: dict, x: torch.Tensor, part: str = "block",
                    lr: float = 0.1, seed: int = 0) -> dict:
    """Tensor-parallel forward, backward and SGD step of block 0 (or its MLP) of the tiny GPT.

    Every rank builds the same GPT (same seed) and shards block 0 with
    `TensorParallelBlock.from_block` (part="block") or its MLP with `TensorParallelMLP`
    (part="mlp"), runs x (batch, seq, d_model) through it with loss = sum(out^2) / 2, and
    takes an SGD step. Returns this rank's output (replicated), input gradient, weight
    shards' gradients and updated values, and the all-reduce log, for the caller to
    compare with the unsharded module.
    """
    from .model import GPT

    if part not in ("block", "mlp"):
        raise ValueError(f"part must be 'block' or 'mlp', got {part!r}")
    model = GPT(_tiny_config(cfg_kwargs), seed=seed)
    t = x.shape[1]
    cos, sin = model.rope_cos[:t], model.rope_sin[:t]
    if part == "block":
        tp = TensorParallelBlock.from_block(model.blocks[0], rank, world_size)
        run = lambda inp: tp(inp, cos, sin)                        # noqa: E731
    else:
        tp = TensorParallelMLP(model.blocks[0].mlp, rank, world_size)
        run = tp
    x = x.clone().requires_grad_(True)
    with record_allreduces() as log:
        out = run(x)
        (out.pow(2).sum() / 2).backward()
    grads = {n: p.grad.clone() for n, p in tp.named_parameters()}
    with torch.no_grad():
        for p in tp.parameters():
            p -= lr * p.grad
    return {"out": out.detach(), "x_grad": x.grad.clone(), "grads": grads, "log": list(log),
            "params": {n: p.detach().clone() for n, p in tp.named_parameters()}}


# ============================================================================ pipeline schedules

@dataclass(frozen=True)
class PipelineOp:
    """One unit of pipeline work on one rank.

    kind: "F" forward, "B" backward (input gradient; the whole backward unless the
    schedule splits off "W"), "W" weight gradient. stage: virtual stage 0..p*v-1
    (rank = stage % p), except for "dualpipe", whose micro-batches 0..m/2-1 run stage s
    on rank s and micro-batches m/2..m-1 run it on rank p-1-s. start/end in the unit of
    the op costs. overlapped: the op belongs to a DualPipe "F&B" unit (a forward of one
    direction and a whole backward B + W of the other, run as one unit of cost t_fb; the
    three ops are recorded back to back inside it and their results count as ready at
    the unit's end).
    """
    kind: str
    microbatch: int
    stage: int
    rank: int
    start: float
    end: float
    overlapped: bool = False


@dataclass
class PipelineSchedule:
    """A simulated pipeline schedule: every op with its times, plus the derived measures.

    bubble_fraction = (makespan - busy) / busy averaged over ranks, where busy is a rank's
    total compute time: Narayanan et al.'s "bubble time / ideal time".
    peak_inflight[r]: the most micro-batches whose activations rank r held at once (a
    micro-batch counts from its forward's start until its backward "B" ends; with
    interleaving, each chunk counts 1/v; with DualPipe each of a rank's two stages counts
    1, as in the DualPipe README's "activation per device").
    params_per_rank[r]: the model parameters rank r holds, counted from the ops as the
    number of distinct stages it runs divided by v, in units of one 1F1B stage (L/p
    layers): 1 for every schedule except DualPipe, 2.
    """
    name: str
    p: int
    m: int
    v: int
    costs: dict
    ops: list[PipelineOp] = field(repr=False)
    makespan: float = 0.0
    busy: list[float] = field(default_factory=list)
    bubble_fraction: float = 0.0
    peak_inflight: list[float] = field(default_factory=list)
    params_per_rank: list[float] = field(default_factory=list)

    def rank_ops(self, rank: int) -> list[PipelineOp]:
        """Rank `rank`'s ops in time order."""
        if not 0 <= rank < self.p:
            raise ValueError(f"rank must be in [0, {self.p}), got {rank!r}")
        return sorted((o for o in self.ops if o.rank == rank), key=lambda o: o.start)


SCHEDULES = ("gpipe", "1f1b", "interleaved", "zb-h1", "dualpipe")


def pipeline_schedule(name: str, p: int, m: int, v: int = 1, *, t_f: float = 1.0, t_b: float = 2.0,
                      t_w: float | None = None, t_comm: float = 0.0,
                      t_fb: float | None = None) -> PipelineSchedule:
    """Simulate pipeline schedule `name` on p stages (ranks) with m micro-batches.

    name: "gpipe" (all forwards, then all backwards; Huang et al. 2019), "1f1b"
    (PipeDream-Flush: warm-up forwards then one forward / one backward; Narayanan et
    al. 2021), "interleaved" (1F1B over v model chunks per rank; needs m % p == 0),
    "zb-h1" (zero-bubble ZB-H1, Qi et al. 2024: backward split into B (input grad) and W
    (weight grad); W ops are deferred into what would be bubbles, with 1F1B's limit on
    in-flight micro-batches; see `_zb_h1_policy`), "dualpipe" (DeepSeek-V3's
    bidirectional schedule; see `_dualpipe_order`): m/2 micro-batches enter at rank 0 and
    m/2 at rank p-1, each rank holds stage r for the first direction and stage p-1-r for
    the second (twice the parameters), the backward is split into B and W, and a forward
    of one direction is paired with a whole backward of the other. Needs p even, m even
    and m >= 2p, as DeepSeek's implementation asserts; m counts both directions. Against
    the DualPipe README's bubble (PP/2-1)(F&B+B-3W): with t_f = t_b - t_w = t_w the idle time of
    the rank that waits most equals it for any t_fb (every rank's, when t_fb = t_f + t_b);
    with other costs this simulation differs from the formula in both directions (p=8,
    t_f=1, t_b=2, t_w=0.5: 9 against 10.5; t_f=1, t_b=1, t_w=0.5, t_fb=2: 6 against 4.5).
    Peak in-flight is PP+1 and parameters 2x on every rank, as the README's table says.
    Not modelled: the all-to-all that F&B hides, and the reference's blocking batched sends.
    Costs are per micro-batch for a rank's whole share of layers: t_f forward, t_b the
    full backward. t_w is the part of t_b that is the weight gradient (default t_b/2);
    zb-h1 and dualpipe split it off (B then costs t_b - t_w). With interleaving each chunk
    op costs 1/v of that. t_comm delays each stage-to-stage hand-off. t_fb (dualpipe
    only) is the cost of one overlapped "F&B" unit, between max(t_f, t_b) and t_f + t_b;
    the default t_f + t_b means overlap saves no compute time: this simulator has no
    all-to-all to hide, so any gain has to be given through t_fb.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in SCHEDULES:
        raise KeyError(f"unknown schedule {name!r}; valid names: {', '.join(SCHEDULES)}")
    for label, value in (("p", p), ("m", m), ("v", v)):
        positive_int(f"{label}", value)
    if t_w is None:
        t_w = t_b / 2
    for label, value in (("t_f", t_f), ("t_b", t_b)):
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"{label} must be a positive number, got {value!r}")
    if not (isinstance(t_w, (int, float)) and 0 < t_w < t_b):
        raise ValueError(f"t_w must be a number in (0, t_b) = (0, {t_b}), got {t_w!r}")
    if not (isinstance(t_comm, (int, float)) and t_comm >= 0):
        raise ValueError(f"t_comm must be a number >= 0, got {t_comm!r}")
    if key != "interleaved" and v != 1:
        raise ValueError(f"v (virtual stages per rank) applies to 'interleaved' only; got v={v} for {name!r}")
    if key == "interleaved" and v < 2:
        raise ValueError(f"interleaved 1F1B needs v >= 2 model chunks per rank (v=1 is plain '1f1b'), got v={v}")
    if key == "interleaved" and m % p:
        raise ValueError(f"interleaved 1F1B needs m divisible by p (Megatron's rule); got m={m}, p={p}")
    if key == "dualpipe" and (p % 2 or m % 2 or m < 2 * p):
        raise ValueError(f"dualpipe needs an even p, an even m (both directions) and m >= 2p; got p={p}, m={m}")
    if t_fb is not None and key != "dualpipe":
        raise ValueError(f"t_fb (cost of an overlapped F&B unit) applies to 'dualpipe' only; got it for {name!r}")
    if t_fb is None:
        t_fb = t_f + t_b
    if not (isinstance(t_fb, (int, float)) and max(t_f, t_b) <= t_fb <= t_f + t_b):
        raise ValueError(f"t_fb must be a number in [max(t_f, t_b), t_f + t_b] = [{max(t_f, t_b)}, {t_f + t_b}], "
                         f"got {t_fb!r}")

    split = key in ("zb-h1", "dualpipe")
    cost = {"F": t_f / v, "B": (t_b - t_w if split else t_b) / v, "W": t_w / v, "F&B": t_fb}
    if key == "zb-h1":
        ops = _simulate(p, 1, m, cost, t_comm, policy=_zb_h1_policy(p, m))
    elif key == "dualpipe":
        ops = _simulate_units(p, cost, t_comm, [_dualpipe_order(r, p, m) for r in range(p)])
    else:
        orders = {"gpipe": _gpipe_order, "1f1b": _one_f_one_b_order, "interleaved": _interleaved_order}[key]
        ops = _simulate(p, v, m, cost, t_comm, orders=[orders(r, p, m, v) for r in range(p)])
    makespan = max(o.end for o in ops)
    busy = [sum(o.end - o.start for o in ops if o.rank == r) for r in range(p)]
    bubble = sum((makespan - b) / b for b in busy) / p
    peak = [_peak_inflight([o for o in ops if o.rank == r], v) for r in range(p)]
    params = [len({o.stage for o in ops if o.rank == r}) / v for r in range(p)]
    costs = dict(t_f=t_f, t_b=t_b, t_w=t_w, t_comm=t_comm)
    if key == "dualpipe":
        costs["t_fb"] = t_fb
    return PipelineSchedule(name=key, p=p, m=m, v=v, costs=costs, ops=ops, makespan=makespan, busy=busy,
                            bubble_fraction=bubble, peak_inflight=peak, params_per_rank=params)


# --- per-rank orders (each a list of (kind, microbatch, stage))

def _gpipe_order(r, p, m, v):
    return [("F", i, r) for i in range(m)] + [("B", i, r) for i in range(m)]


def _one_f_one_b_order(r, p, m, v):
    warmup = min(p - r - 1, m)
    order = [("F", i, r) for i in range(warmup)]
    f, b = warmup, 0
    while f < m:                      # steady state: one forward, one backward
        order += [("F", f, r), ("B", b, r)]
        f, b = f + 1, b + 1
    order += [("B", i, r) for i in range(b, m)]
    return order


def _interleaved_order(r, p, m, v):
    """Megatron-LM's interleaved 1F1B: forwards go through chunks 0..v-1 in groups of p micro-batches."""
    total = m * v

    def op(k, forward):
        in_group = k % (p * v)
        chunk = in_group // p
        if not forward:
            chunk = v - 1 - chunk
        mb = (k // (p * v)) * p + k % p
        return ("F" if forward else "B", mb, chunk * p + r)

    warmup = min((p - r - 1) * 2 + (v - 1) * p, total)
    order = [op(k, True) for k in range(warmup)]
    for k in range(total - warmup):
        order += [op(warmup + k, True), op(k, False)]
    order += [op(k, False) for k in range(total - warmup, total)]
    return order


def _zb_h1_policy(p, m):
    """Greedy zero-bubble schedule in the spirit of ZB-H1. A ready B first (it is on the
    critical path). At most p - 1 weight-gradient ops (W) may wait on a rank; below that,
    the next F goes first while fewer than p - r micro-batches are in flight (1F1B's
    limit), else a waiting W fills what would be a bubble. With F, B and W of equal cost
    its bubble is ZB-H1's, (p-1)(F+B-2W) with B the full backward."""

    def pick(r, ready, state):
        bs = [o for o in ready if o[0] == "B"]
        if bs:
            return min(bs, key=lambda o: o[1])
        ws = sorted((o for o in ready if o[0] == "W"), key=lambda o: o[1])
        if len(ws) > p - 1:
            return ws[0]
        fs = [o for o in ready if o[0] == "F"]
        if fs and state["inflight"][r] < p - r:
            return min(fs, key=lambda o: o[1])
        return ws[0] if ws else None

    return pick


def _dualpipe_order(r, p, m):
    """Rank r's work in DualPipe order, as a list of units (tuples of (kind, microbatch, stage)).

    Transcribes the eight steps of DeepSeek's reference schedule (deepseek-ai/DualPipe,
    `DualPipe.step`). Phase 0 is the direction in which rank r sits in the first half of
    the pipeline, phase 1 the other; h = min(r, p-1-r), H = p/2, n = m/2 per direction:
    1. 2(H-h-1) forwards of phase 0;            2. h+1 pairs F0, F1;
    3. H-h-1 times B1 (W deferred), W, F1;      4. n-p+h+1 times F0&B1, F1&B0 (overlapped);
    5. H-h-1 times B1, F1&B0;                   6. h+1 times B1, B0 (W deferred in the second half);
    7. H-h-1 times W, B0 (W deferred);          8. h+1 deferred W.
    A unit of one op costs that op; an overlapped unit (F, B, W) costs t_fb, because the
    reference's overlapped backward is a whole one. A backward whose W is not deferred
    runs B then W at once. Deferred W ops run oldest first. On the two middle ranks the
    first step-4 pair is not overlapped, as in the reference ("to further reduce bubble").
    """
    half, n, h = p // 2, m // 2, min(r, p - 1 - r)
    second, middle = r >= half, h == half - 1
    taken = {"F": [0, 0], "B": [0, 0]}
    deferred: list[tuple] = []
    order: list[tuple] = []

    def take(kind, phase):
        d = phase ^ second                         # direction 0 enters at rank 0, 1 at rank p-1
        k = taken[kind][phase]
        taken[kind][phase] += 1
        return (kind, d * n + k, r if d == 0 else p - 1 - r)

    def forward(phase):
        order.append((take("F", phase),))

    def backward(phase, defer_w=False):
        b = take("B", phase)
        order.append((b,))
        (deferred.append if defer_w else lambda w: order.append((w,)))(("W",) + b[1:])

    def weight():
        order.append((deferred.pop(0),))

    def overlapped(f_phase, b_phase):
        f, b = take("F", f_phase), take("B", b_phase)
        order.append((f, b, ("W",) + b[1:]))

    for _ in range(2 * (half - h - 1)):                  # 1
        forward(0)
    for _ in range(h + 1):                               # 2
        forward(0)
        forward(1)
    for _ in range(half - h - 1):                        # 3
        backward(1, defer_w=True)
        weight()
        forward(1)
    for i in range(n - p + h + 1):                       # 4
        if i == 0 and middle:
            forward(0)
            backward(1)
        else:
            overlapped(0, 1)
        overlapped(1, 0)
    for _ in range(half - h - 1):                        # 5
        backward(1)
        overlapped(1, 0)
    defer = False
    for i in range(h + 1):                               # 6
        if i == (h + 1) // 2 and h % 2 == 1:
            defer = True
        backward(1, defer)
        if i == (h + 1) // 2 and h % 2 == 0:
            defer = True
        backward(0, defer)
    for _ in range(half - h - 1):                        # 7
        weight()
        backward(0, defer_w=True)
    for _ in range(h + 1):                               # 8
        weight()
    return order


def _simulate_units(p, cost, t_comm, orders) -> list[PipelineOp]:
    """Run each rank's units strictly in order: a unit starts when its rank is free and
    every dependency outside the unit has finished (plus t_comm across a hand-off). A
    unit of three ops (F, B, W) is an overlapped F&B of cost cost["F&B"]: its ops are
    recorded back to back in proportion to their own costs, and all three results are
    ready only when the unit ends (the reference sends both after the pair)."""
    end: dict[tuple, float] = {}
    free = [0.0] * p
    nxt = [0] * p
    ops: list[PipelineOp] = []

    def ready_at(unit, r):
        times = [free[r]]
        for op in unit:
            for dep, handoff in _deps(*op, p):
                if dep in unit:
                    continue
                if dep not in end:
                    return None
                times.append(end[dep] + (t_comm if handoff else 0.0))
        return max(times)

    progress = True
    while progress:
        progress = False
        for r in range(p):
            while nxt[r] < len(orders[r]) and (start := ready_at(orders[r][nxt[r]], r)) is not None:
                unit = orders[r][nxt[r]]
                nxt[r] += 1
                progress = True
                if len(unit) == 1:
                    finish = start + cost[unit[0][0]]
                    ops.append(PipelineOp(*unit[0], r, start, finish))
                    end[unit[0]] = free[r] = finish
                    continue
                finish = start + cost["F&B"]
                scale = cost["F&B"] / sum(cost[op[0]] for op in unit)
                t = start
                for op in unit:
                    ops.append(PipelineOp(*op, r, t, t + cost[op[0]] * scale, overlapped=True))
                    t += cost[op[0]] * scale
                    end[op] = finish
                free[r] = finish
    if any(nxt[r] < len(orders[r]) for r in range(p)):
        raise RuntimeError("pipeline schedule deadlocked: the per-rank orders are inconsistent")
    return sorted(ops, key=lambda o: (o.rank, o.start))


def _deps(kind, mb, stage, n_stages):
    """(op, needs hand-off) pairs that must finish before (kind, mb, stage)."""
    if kind == "F":
        return [(("F", mb, stage - 1), True)] if stage > 0 else []
    if kind == "B":
        own = [(("F", mb, stage), False)]
        return own + ([(("B", mb, stage + 1), True)] if stage < n_stages - 1 else [])
    return [(("B", mb, stage), False)]


def _simulate(p, v, m, cost, t_comm, orders=None, policy=None) -> list[PipelineOp]:
    """Event-driven list scheduling. Each rank runs one op at a time; an op starts when its
    rank is free and its dependencies have finished (plus t_comm across a hand-off).
    With `orders`, each rank follows its list strictly; with `policy`, it picks among ready ops."""
    n_stages = p * v
    split = policy is not None
    kinds = ("F", "B", "W") if split else ("F", "B")
    todo = {r: [(k, i, c * p + r) for c in range(v) for i in range(m) for k in kinds] for r in range(p)}
    end: dict[tuple, float] = {}
    free = [0.0] * p
    state = {"inflight": [0] * p}
    releases: list[tuple[float, int]] = []     # (time, rank): B finished, activations freed
    ops: list[PipelineOp] = []
    remaining = sum(len(t) for t in todo.values())
    t = 0.0
    while remaining:
        while releases and releases[0][0] <= t:
            _, r = heapq.heappop(releases)
            state["inflight"][r] -= 1

        def ready_at(o):
            times = [0.0]
            for dep, handoff in _deps(*o, n_stages):
                if dep not in end:
                    return None
                times.append(end[dep] + (t_comm if handoff else 0.0))
            return max(times)

        started = False
        for r in range(p):
            if free[r] > t:
                continue
            if orders is not None:
                if not orders[r]:
                    continue
                nxt = orders[r][0]
                at = ready_at(nxt)
                choice = nxt if at is not None and at <= t else None
            else:
                ready = [o for o in todo[r] if (a := ready_at(o)) is not None and a <= t]
                choice = policy(r, ready, state)
            if choice is None:
                continue
            if orders is not None:
                orders[r].pop(0)
            todo[r].remove(choice)
            kind, mb, stage = choice
            finish = t + cost[kind]
            end[choice] = finish
            ops.append(PipelineOp(kind, mb, stage, r, t, finish))
            free[r] = finish
            if kind == "F":
                state["inflight"][r] += 1
            elif kind == "B":
                heapq.heappush(releases, (finish, r))
            remaining -= 1
            started = True
        if started:
            continue   # look again at the same t: a rank that started nothing may still be idle
        # advance to the next moment something can change: a rank frees up or a hand-off lands
        candidates = [f for f in free if f > t]
        candidates += [e + t_comm for e in end.values() if e + t_comm > t]
        candidates += [rt for rt, _ in releases if rt > t]
        if not candidates:
            raise RuntimeError("pipeline schedule deadlocked: the per-rank orders are inconsistent")
        t = min(candidates)
    return sorted(ops, key=lambda o: (o.rank, o.start))


def _peak_inflight(rank_ops: Sequence[PipelineOp], v: int) -> float:
    events = []
    for o in rank_ops:
        if o.kind == "F":
            events.append((o.start, 1))
        elif o.kind == "B":
            events.append((o.end, -1))
    events.sort(key=lambda e: (e[0], e[1]))   # a release at time t happens before a start at t
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak / v


def plot_schedule(schedule: PipelineSchedule, ax=None):
    """Draw one schedule as a timeline: a row per rank, a box per op labelled with its micro-batch.

    Forward boxes are blue, backward (B) orange, weight-gradient (W) green; a darker
    shade marks later model chunks when interleaved, and DualPipe's second direction
    (micro-batches entering at the last rank, numbered from 1 again). A black border
    encloses each overlapped F&B unit of DualPipe. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib import colors as mcolors
    from matplotlib.patches import Rectangle

    if not isinstance(schedule, PipelineSchedule):
        raise ValueError(f"schedule must be a PipelineSchedule, got {type(schedule).__name__}")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.45 * schedule.p + 1))
    base = {"F": "#4C72B0", "B": "#DD8452", "W": "#55A868"}
    dual = schedule.name == "dualpipe"
    for o in schedule.ops:
        if dual:
            shade, label = (0.65 if o.microbatch >= schedule.m // 2 else 1.0), o.microbatch % (schedule.m // 2) + 1
        else:
            chunk = o.stage // schedule.p
            shade = 1.0 - 0.35 * chunk / max(schedule.v - 1, 1) if schedule.v > 1 else 1.0
            label = o.microbatch + 1
        rgb = [c * shade for c in mcolors.to_rgb(base[o.kind])]
        ax.barh(o.rank, o.end - o.start, left=o.start, height=0.8, color=rgb, edgecolor="white", linewidth=0.5)
        if (o.end - o.start) >= 0.45 * max(schedule.costs["t_f"] / schedule.v, 0.3):
            ax.text((o.start + o.end) / 2, o.rank, str(label), ha="center", va="center", fontsize=6, color="white")
    for o in schedule.ops:
        if o.overlapped and o.kind == "F":           # the unit is this F and the B, W recorded right after it
            w = next(x for x in schedule.ops if x.overlapped and x.kind == "W" and x.rank == o.rank
                     and x.start >= o.start and x.microbatch // (schedule.m // 2) != o.microbatch // (schedule.m // 2))
            ax.add_patch(Rectangle((o.start, o.rank - 0.4), w.end - o.start, 0.8, fill=False,
                                   edgecolor="black", linewidth=0.8))
    ax.set_yticks(range(schedule.p))
    ax.set_yticklabels([f"rank {r}" for r in range(schedule.p)])
    ax.invert_yaxis()
    ax.set_xlim(0, schedule.makespan)
    ax.set_xlabel("time (units of the op costs)")
    label = {"gpipe": "GPipe", "1f1b": "1F1B", "interleaved": f"interleaved 1F1B (v={schedule.v})",
             "zb-h1": "zero-bubble ZB-H1", "dualpipe": "DualPipe (m/2 from each end)"}[schedule.name]
    ax.set_title(f"{label}: p={schedule.p}, m={schedule.m}, bubble {schedule.bubble_fraction:.1%}, "
                 f"peak in-flight {max(schedule.peak_inflight):g} micro-batches", fontsize=9)
    return ax


def plot_schedules(p: int = 4, m: int = 8, v: int = 2, names: Sequence[str] = SCHEDULES[:4], **costs):
    """Schedules `names` (default: all but DualPipe) one above the other on a shared time
    axis; returns the Figure. v is used by "interleaved", t_fb (in costs) by "dualpipe"."""
    import matplotlib.pyplot as plt

    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty sequence of schedule names, got {names!r}")
    t_fb = costs.pop("t_fb", None)
    keys = [n.lower() if isinstance(n, str) else n for n in names]
    scheds = [pipeline_schedule(k, p, m, v if k == "interleaved" else 1, **costs,
                                **({"t_fb": t_fb} if k == "dualpipe" else {})) for k in keys]
    fig, axes = plt.subplots(len(scheds), 1, figsize=(10, len(scheds) * (0.45 * p + 0.9)), sharex=True,
                             squeeze=False)
    axes = axes[:, 0]
    for s, ax in zip(scheds, axes):
        plot_schedule(s, ax)
        ax.set_xlim(0, max(x.makespan for x in scheds))
    for ax in axes[:-1]:
        ax.set_xlabel("")
    fig.tight_layout()
    return fig


# ============================================================================ layout planning

RECOMPUTE = ("none", "selective", "full")


@dataclass(frozen=True)
class Layout:
    """One (TP, PP, DP) layout and what it costs per GPU, per optimizer step.

    Memory in bytes per GPU: model states (bf16 weights and grads, fp32 Adam states and
    master weights, sharded over DP by the ZeRO stage) and activations of the in-flight
    micro-batches. Communication in bytes sent per GPU per step: tensor-parallel
    all-reduces stay inside a node (NVLink); pipeline hand-offs and the data-parallel
    gradient reduction cross nodes. step_time_s is a rough model (see `plan_layouts`).
    """
    tp: int
    pp: int
    dp: int
    microbatches: int
    params_per_gpu: float
    weights_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    activation_bytes: float
    tp_comm_bytes: float
    pp_comm_bytes: float
    dp_comm_bytes: float
    bubble_fraction: float
    step_time_s: float

    @property
    def memory_bytes(self) -> float:
        return self.weights_bytes + self.grads_bytes + self.optimizer_bytes + self.activation_bytes

    @property
    def intra_node_comm_bytes(self) -> float:
        return self.tp_comm_bytes

    @property
    def inter_node_comm_bytes(self) -> float:
        return self.pp_comm_bytes + self.dp_comm_bytes


def layout_memory_bytes(params: float, n_layers: int, d_model: int, *, tp: int, pp: int, dp: int,
                        seq_len: int, micro_batch: int, microbatches: int, n_heads: int = 1,
                        zero_stage: int = 1, recompute: str = "selective") -> dict[str, float]:
    """Per-GPU bytes of weights, grads, optimizer states and activations for one layout.

    Model states: each GPU holds params / (tp * pp) parameters, whose mixed-precision Adam
    states (Rajbhandari et al. 2020: 2 bytes of bf16 weights, 2 of grads, 12 of fp32
    master weights + momentum + variance per parameter) are sharded over the DP group
    by the ZeRO stage: 0 keeps all of it on every DP rank, 1 shards the 12, 2 also the
    grads, 3 also the weights. That is `zero.model_state_bytes`, which this calls.
    Activations per layer per micro-batch follow Korthikanti et al. 2022 with sequence
    parallelism (s = seq_len, b = micro_batch, h = d_model, a = n_heads, t = tp):
    recompute "none" s*b*h*(34 + 5*a*s/h)/t bytes, "selective" (attention core
    recomputed, as FlashAttention does) 34*s*b*h/t, the same as
    `zero.activation_bytes_per_layer(..., sequence_parallel=True)`; "full" (only each
    layer's input kept) 2*s*b*h/t, because with sequence parallelism that input is
    itself split over the t ranks (the paper's Table 2 lists 2*s*b*h without that
    split). Under 1F1B the first stage holds min(pp, m) micro-batches of its
    ceil(L / pp) layers.
    """
    for label, value in (("tp", tp), ("pp", pp), ("dp", dp), ("seq_len", seq_len),
                         ("micro_batch", micro_batch), ("microbatches", microbatches),
                         ("n_layers", n_layers), ("d_model", d_model), ("n_heads", n_heads)):
        positive_int(f"{label}", value)
    if isinstance(params, bool) or not (isinstance(params, (int, float)) and params > 0):
        raise ValueError(f"params must be a number > 0, got {params!r}")
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")
    if recompute not in RECOMPUTE:
        raise ValueError(f"recompute must be one of {RECOMPUTE}, got {recompute!r}")
    # TP x PP cut the model into tp * pp pieces; ZeRO then shards each piece's states over DP.
    states = model_state_bytes(params / (tp * pp), zero_stage, dp, k=12, param_bytes=2, grad_bytes=2)
    sbh = seq_len * micro_batch * d_model
    per_layer = {"none": sbh * (34 + 5 * n_heads * seq_len / d_model), "selective": 34 * sbh,
                 "full": 2 * sbh}[recompute] / tp
    activations = per_layer * math.ceil(n_layers / pp) * min(pp, microbatches)
    return {"weights": states["params"], "grads": states["grads"], "optimizer": states["optimizer"],
            "activations": activations}


def plan_layouts(model, gpu, n_gpus: int, *, gpus_per_node: int = 8, seq_len: int = 4096,
                 global_batch: int = 1024, micro_batch: int = 1, zero_stage: int = 1,
                 recompute: str = "selective", usable_memory_fraction: float = 0.9,
                 scaleout_gbps: float = 50.0, mfu: float = 0.5, virtual_stages: int = 1) -> list[Layout]:
    """Every (TP, PP, DP) with TP * PP * DP = n_gpus whose memory per GPU fits, fastest first.

    model: a catalog name or `catalog.ModelSpec`; gpu: a `hardware` name or
    `hardware.Accelerator`. Rules: TP divides gpus_per_node (it stays inside the NVLink
    domain) and the number of attention heads; PP <= n_layers (uneven stages allowed,
    as Llama 3 405B's 126 layers on 16 stages); global_batch (sequences of seq_len
    tokens) splits into DP x micro_batch x m with m >= 1. A layout fits when memory
    (`layout_memory_bytes`) <= usable_memory_fraction x HBM.

    Communication per GPU per step, bf16 (2 bytes): TP, 4 ring all-reduces of an
    (s, b, h) activation per layer per micro-batch (2 forward, 2 backward), each sending
    2(t-1)/t of it; PP, one activation out and one gradient back per micro-batch; DP, a
    ring all-reduce (ZeRO: reduce-scatter + all-gather, the same volume) of this GPU's
    gradients. step_time_s, a rough model with no overlap: compute 6 x active params x
    tokens / (n_gpus x dense bf16 peak x mfu), stretched by (1 + bubble), plus TP bytes
    over half the scale-up bandwidth (one direction) and PP + DP bytes over scaleout_gbps
    (GB/s per GPU; 50 = a 400 Gb/s NIC). MoE models count every expert on every GPU (no
    expert parallelism): an upper bound on memory. virtual_stages v > 1 models the
    interleaved schedule: bubble (pp-1)/(v m), v times the pipeline hand-offs (its
    slightly larger activation memory is not counted).
    """
    from .catalog import ModelSpec, model_spec

    spec = model_spec(model) if isinstance(model, str) else model
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"model must be a catalog name or a ModelSpec, got {type(model).__name__}")
    acc = _accelerator(gpu)
    for label, value in (("n_gpus", n_gpus), ("gpus_per_node", gpus_per_node), ("seq_len", seq_len),
                         ("global_batch", global_batch), ("micro_batch", micro_batch),
                         ("virtual_stages", virtual_stages)):
        positive_int(f"{label}", value)
    for label, value, hi in (("usable_memory_fraction", usable_memory_fraction, 1.0), ("mfu", mfu, 1.0),
                             ("scaleout_gbps", scaleout_gbps, math.inf)):
        if not (isinstance(value, (int, float)) and 0 < value <= hi):
            raise ValueError(f"{label} must be a number in (0, {hi}], got {value!r}")
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")
    if recompute not in RECOMPUTE:
        raise ValueError(f"recompute must be one of {RECOMPUTE}, got {recompute!r}")
    params = spec.total_params()
    limit = usable_memory_fraction * acc.hbm_gb * 1e9
    act_bytes = seq_len * micro_batch * spec.d_model * 2          # one bf16 activation tensor (s, b, h)
    compute_s = 6 * spec.active_params() * global_batch * seq_len / (n_gpus * acc.peak_flops("bf16") * mfu)
    scaleup = acc.scaleup_gbps / 2 * 1e9                          # bytes/s one way
    scaleout = scaleout_gbps * 1e9
    ring = lambda n: 2 * (n - 1) / n                              # noqa: E731  all-reduce bytes factor
    out = []
    for tp in _divisors(gpus_per_node):
        if spec.n_heads % tp or tp > n_gpus:
            continue
        for pp in range(1, spec.n_layers + 1):
            if n_gpus % (tp * pp):
                continue
            dp = n_gpus // (tp * pp)
            if global_batch % (dp * micro_batch):
                continue
            m = global_batch // (dp * micro_batch)
            mem = layout_memory_bytes(params, spec.n_layers, spec.d_model, tp=tp, pp=pp, dp=dp,
                                      seq_len=seq_len, micro_batch=micro_batch, microbatches=m,
                                      n_heads=spec.n_heads, zero_stage=zero_stage, recompute=recompute)
            if sum(mem.values()) > limit:
                continue
            layers = math.ceil(spec.n_layers / pp)
            tp_comm = 4 * ring(tp) * act_bytes * layers * m
            v = virtual_stages if pp > 1 else 1
            pp_comm = (2 * act_bytes * m * v) if pp > 1 else 0.0
            dp_comm = ring(dp) * 2 * params / (tp * pp)
            bubble = (pp - 1) / (v * m)
            step = compute_s * (1 + bubble) + tp_comm / scaleup + (pp_comm + dp_comm) / scaleout
            out.append(Layout(tp, pp, dp, m, params / (tp * pp), mem["weights"], mem["grads"],
                              mem["optimizer"], mem["activations"], tp_comm, pp_comm, dp_comm, bubble, step))
    return sorted(out, key=lambda L: (L.step_time_s, L.memory_bytes))


def _accelerator(gpu):
    from . import hardware

    if isinstance(gpu, str):
        return hardware.accelerator(gpu)
    if isinstance(gpu, hardware.Accelerator):
        return gpu
    raise ValueError(f"gpu must be a hardware name or a hardware.Accelerator, got {type(gpu).__name__}")


def _divisors(n: int) -> Iterable[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
