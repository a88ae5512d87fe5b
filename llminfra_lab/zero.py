"""ZeRO: sharding the model states of data-parallel training, from the formula to a working engine.

Data parallelism keeps a full copy of the model states on every GPU: parameters,
gradients and optimizer state. ZeRO (Rajbhandari et al. 2020) removes the copies in
three stages. With Psi parameters, mixed-precision Adam (fp16 parameters and gradients,
K = 12 bytes of fp32 master weights, momentum and variance per parameter) and Nd
data-parallel ranks, the model states per rank are

    DDP      (2 + 2 + K) Psi                 16 Psi bytes
    stage 1  2 Psi + 2 Psi + K Psi / Nd      optimizer state sharded
    stage 2  2 Psi + (2 + K) Psi / Nd        ... and gradients
    stage 3  (2 + 2 + K) Psi / Nd            ... and parameters

and the bytes each rank communicates per step are 2 Psi for DDP, stage 1 and stage 2
(one reduce-scatter of gradients plus one all-gather of parameters is the same volume
as one all-reduce) and 3 Psi for stage 3 (parameters are all-gathered twice: before
each unit's forward and again before its backward).

This module has three parts:

1. The calculator: `model_state_bytes` (the table above) and
   `activation_bytes_per_layer` (Korthikanti et al. 2022, the other half of training
   memory, with tensor and sequence parallelism and recomputation).
2. `ZeroEngine`, a real implementation over torch.distributed of all four stages, for a
   model written as a chain of units (`gpt_units` cuts the book's GPT into embedding,
   blocks and head). It counts the bytes each rank holds and every element it sends.
3. `compare_runs`, the function each rank runs under `collectives.launch`: plain data
   parallel with torch.optim.Adam, the four ZeRO stages, and PyTorch's FSDP2
   (`fully_shard`) on the same GPT and the same data, so that their losses can be
   compared step by step. Plots for the chapter and the lab come last.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from llminfra_lab.checks import positive_int

__all__ = [
    "STAGES", "ZERO_FIGURE1", "model_state_bytes", "activation_bytes_per_layer", "measure_activation_bytes",
    "ZeroEngine", "CommLog", "gpt_units", "sequential_loss", "adam_update",
    "compare_runs", "small_gpt_config", "formula_for_run",
    "plot_memory_vs_gpus", "plot_stage_breakdown", "plot_measured_vs_formula",
]

STAGES = (0, 1, 2, 3)  # 0 = plain data parallel (DDP), 1-3 = ZeRO stages

# Rajbhandari et al. 2020, Figure 1: 7.5B parameters, K = 12, Nd = 64, GB per GPU (1 GB = 1e9 bytes).
ZERO_FIGURE1 = {"psi": 7.5e9, "k": 12, "n_gpus": 64,
                "gb_per_gpu": {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.88}}


# ============================================================================ 1. the calculator

def model_state_bytes(psi: float, stage: int, n_gpus: int, k: float = 12, param_bytes: float = 2,
                      grad_bytes: float = 2) -> dict[str, float]:
    """Bytes of model states per rank for DDP (stage 0) or ZeRO stage 1, 2, 3.

    psi: parameter count; n_gpus: data-parallel ranks Nd; k: optimizer-state bytes per
    parameter (12 for mixed-precision Adam: fp32 master copy, momentum, variance; 8 for
    Adam in plain fp32, where the parameters themselves are the fp32 copy);
    param_bytes/grad_bytes: bytes per element of the working parameters and gradients.
    Returns {"params", "grads", "optimizer", "total"} in bytes.
    """
    if not (isinstance(psi, (int, float)) and not isinstance(psi, bool) and psi > 0):
        raise ValueError(f"psi (parameter count) must be a number > 0, got {psi!r}")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES} (0 = DDP), got {stage!r}")
    positive_int("n_gpus", n_gpus)
    for name, value in (("k", k), ("param_bytes", param_bytes), ("grad_bytes", grad_bytes)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name} must be a number >= 0 (bytes per parameter), got {value!r}")
    params = param_bytes * psi / (n_gpus if stage >= 3 else 1)
    grads = grad_bytes * psi / (n_gpus if stage >= 2 else 1)
    optimizer = k * psi / (n_gpus if stage >= 1 else 1)
    return {"params": params, "grads": grads, "optimizer": optimizer, "total": params + grads + optimizer}


def activation_bytes_per_layer(seq_len: int, micro_batch: int, hidden: int, heads: int,
                               tensor_parallel: int = 1, sequence_parallel: bool = False,
                               recompute: str = "none", dropout: bool = True) -> float:
    """Activation bytes one transformer layer keeps for its backward pass (Korthikanti et al. 2022).

    16-bit activations, a GPT-style layer (LayerNorm, attention with dropout, 4h GeLU MLP).
    With s = seq_len, b = micro_batch, h = hidden, a = heads, t = tensor_parallel:

        recompute="none"       s b h (10 + 24/t + 5 a s / (h t))     (t = 1: 34 + 5 a s / h)
           with sequence_parallel:  s b h (34/t + 5 a s / (h t))
        recompute="selective"  drops the 5 a s / h attention term (softmax, its dropout,
                               recomputed in backward): s b h (10 + 24/t), or 34 s b h / t with SP
        recompute="full"       only the layer input is kept: 2 s b h (as the paper's Table 2
                               counts it, whatever t; the others recompute everything else)

    dropout=False drops the terms that exist only because of dropout, as in today's LLMs,
    which train without it: the two 1-byte masks after attention and MLP (2 s b h, outside
    the tensor-parallel region) and, in the score term, the 1-byte mask and the 2-byte
    dropped-out copy of the probabilities (3 a s^2 b). Without parallelism that leaves
    s b h (32 + 2 a s / h); `measure_activation_bytes` confirms it with autograd.
    """
    for name, value in (("seq_len", seq_len), ("micro_batch", micro_batch), ("hidden", hidden),
                        ("heads", heads), ("tensor_parallel", tensor_parallel)):
        positive_int(f"{name}", value)
    if hidden % heads or heads % tensor_parallel:
        raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads}) and heads by "
                         f"tensor_parallel ({tensor_parallel})")
    if recompute not in ("none", "selective", "full"):
        raise ValueError(f"recompute must be 'none', 'selective' or 'full', got {recompute!r}")
    if not isinstance(dropout, bool) or not isinstance(sequence_parallel, bool):
        raise ValueError(f"dropout and sequence_parallel must be bools, got {dropout!r}, {sequence_parallel!r}")
    s, b, h, a, t = seq_len, micro_batch, hidden, heads, tensor_parallel
    sbh = s * b * h
    if recompute == "full":
        return 2.0 * sbh
    attention_scores = (5 if dropout else 2) * a * s / (h * t) if recompute == "none" else 0.0
    replicated = 10 if dropout else 8           # layer-norm inputs, first linear inputs, dropout masks
    linear_part = (replicated + 24) / t if sequence_parallel else replicated + 24 / t
    return sbh * (linear_part + attention_scores)


class _PaperLayer(nn.Module):
    """The GPT layer Korthikanti et al. count (LayerNorm, fused QKV, softmax attention, 4h GeLU MLP), no dropout.

    Tensors are laid out (seq, batch, hidden) as in Megatron.
    """

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.qkv, self.proj = nn.LayerNorm(hidden), nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.ln2, self.fc1, self.fc2 = nn.LayerNorm(hidden), nn.Linear(hidden, 4 * hidden), nn.Linear(4 * hidden, hidden)

    def forward(self, x):
        s, b, h = x.shape
        d = h // self.heads
        q, k, v = (t.reshape(s, b * self.heads, d).transpose(0, 1) for t in self.qkv(self.ln1(x)).chunk(3, dim=-1))
        probs = torch.softmax((q @ k.transpose(1, 2)) / math.sqrt(d), dim=-1)   # (b*a, s, s)
        x = x + self.proj((probs @ v).transpose(0, 1).reshape(s, b, h))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


def measure_activation_bytes(seq_len: int, micro_batch: int, hidden: int, heads: int, seed: int = 0) -> int:
    """Bytes autograd saves for backward in one dropout-free GPT layer in bf16, measured.

    Runs the layer forward under `torch.autograd.graph.saved_tensors_hooks` and adds up the
    distinct storages saved for the backward pass, leaving out the parameters. The result
    is the paper's count without dropout, s b h (32 + 2 a s / h), plus the per-token mean and
    reciprocal standard deviation that each LayerNorm keeps (4 s b values), which the paper
    neglects.
    """
    for name, value in (("seq_len", seq_len), ("micro_batch", micro_batch), ("hidden", hidden), ("heads", heads)):
        positive_int(f"{name}", value)
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
    gen = torch.Generator().manual_seed(seed)
    layer = _PaperLayer(hidden, heads).to(torch.bfloat16)
    params = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    x = torch.randn(seq_len, micro_batch, hidden, generator=gen).to(torch.bfloat16).requires_grad_()
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    return sum(saved.values())


# ============================================================================ 2. the engine

class CommLog:
    """Every collective a rank issued, with the element count of the FULL (unsharded) tensor.

    The paper measures volume in elements moved per rank, for bandwidth-optimal (ring)
    algorithms: an all-gather or a reduce-scatter of n elements moves n (N-1)/N per rank,
    an all-reduce twice that. `volume_psi` drops the (N-1)/N factor, as the paper does.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def record(self, op: str, full_numel: int) -> None:
        if op not in ("all_reduce", "all_gather", "reduce_scatter"):
            raise ValueError(f"op must be 'all_reduce', 'all_gather' or 'reduce_scatter', got {op!r}")
        if isinstance(full_numel, bool) or not isinstance(full_numel, int) or full_numel < 0:
            raise ValueError(f"full_numel must be an int >= 0, got {full_numel!r}")
        self.calls.append((op, full_numel))

    def elements(self) -> int:
        """Elements of full tensors moved, an all-reduce counting twice (reduce-scatter + all-gather)."""
        return sum(2 * n if op == "all_reduce" else n for op, n in self.calls)

    def bytes_sent_per_rank(self, world_size: int, element_bytes: int = 4) -> float:
        """Bytes each rank sends under ring algorithms: elements x (N-1)/N x bytes per element."""
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1 or element_bytes <= 0:
            raise ValueError(f"expected world_size an int >= 1 and element_bytes > 0, got {world_size!r}, {element_bytes!r}")
        return self.elements() * (world_size - 1) / world_size * element_bytes

    def reset(self) -> None:
        self.calls.clear()


def adam_update(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                step: int, lr: float, betas: tuple[float, float], eps: float) -> None:
    """One Adam step (Kingma & Ba 2015), in place, elementwise; the same arithmetic as torch.optim.Adam.

    Because it is elementwise, updating a shard of a flat buffer gives exactly the values
    that updating the whole buffer would give for those elements: that is why ZeRO can
    split the optimizer state across ranks without changing the result.
    """
    if not (param.shape == grad.shape == exp_avg.shape == exp_avg_sq.shape):
        raise ValueError(f"param, grad and both moments must share a shape, got {tuple(param.shape)}, "
                         f"{tuple(grad.shape)}, {tuple(exp_avg.shape)}, {tuple(exp_avg_sq.shape)}")
    if not (isinstance(step, int) and step >= 1 and lr > 0 and eps > 0 and 0 <= betas[0] < 1 and 0 <= betas[1] < 1):
        raise ValueError(f"expected step >= 1, lr > 0, eps > 0, 0 <= betas < 1; got {step}, {lr}, {eps}, {betas}")
    beta1, beta2 = betas
    with torch.no_grad():
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = lr / (1 - beta1 ** step)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** step)).add_(eps)
        param.addcdiv_(exp_avg, denom, value=-step_size)


@dataclass
class _UnitState:
    """One unit's parameters as a flat buffer padded to a multiple of N, and this rank's slice."""
    module: nn.Module
    params: list[nn.Parameter]
    shapes: list[torch.Size]
    numel: int                   # parameters in the unit (Psi_unit)
    padded: int                  # numel rounded up to a multiple of N
    full: torch.Tensor | None    # the whole flat parameter buffer while it is materialised
    shard: torch.Tensor          # this rank's padded/N parameters (a view into `full` below stage 3)
    grad_full: torch.Tensor | None = None   # stages 0-1: the whole flat gradient, kept between steps
    grad_shard: torch.Tensor | None = None  # stages 2-3: this rank's slice of the reduced gradient
    exp_avg: torch.Tensor | None = None
    exp_avg_sq: torch.Tensor | None = None
    saved: list = field(default_factory=list)


class ZeroEngine:
    """Data-parallel training of a chain of units with DDP (stage 0) or ZeRO stage 1, 2 or 3.

    `units` is a list of modules applied one after the other (`h = unit(h)`); the last
    one's output goes to `loss_fn(output, targets)`. Every rank must build identical
    units (same seed). Call `step(inputs, targets)` with this rank's micro-batch; it
    returns the local loss. Collectives are issued per unit, the unit being ZeRO's (and
    FSDP's) bucket: stage 3 all-gathers one unit's parameters just before the unit runs
    and frees them right after, in the forward and again in the backward.

    The backward runs unit by unit in reverse: each unit's forward graph is kept apart
    (its input is detached), so that the engine can act between two units' backward
    passes, exactly where DeepSpeed and FSDP hook in. At stage 3 a saved-tensor hook
    swaps every saved parameter for a note of where it lives in the flat buffer, so the
    graph does not keep gathered parameters alive; the backward re-gathers them.
    """

    def __init__(self, units: list[nn.Module], loss_fn, stage: int, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, group=None):
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES} (0 = DDP), got {stage!r}")
        if not isinstance(units, (list, tuple)) or not units or not all(isinstance(u, nn.Module) for u in units):
            raise ValueError("units must be a non-empty list of nn.Module")
        if not callable(loss_fn):
            raise ValueError("loss_fn must be callable as loss_fn(output, targets)")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        owners: dict[int, int] = {}
        for i, unit in enumerate(units):
            for p in unit.parameters():
                if id(p) in owners and owners[id(p)] != i:
                    raise ValueError("a parameter is shared by two units (tied weights); untie it "
                                     "(GPTConfig(tie_embeddings=False)) or put both users in one unit")
                owners[id(p)] = i
        if not dist.is_initialized():
            raise ValueError("ZeroEngine needs an initialised torch.distributed process group (see collectives.launch)")
        self.stage, self.lr, self.betas, self.eps, self.group = stage, lr, betas, eps, group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        self.loss_fn, self.comm, self.steps = loss_fn, CommLog(), 0
        self.peak_transient_bytes = 0   # gathered parameters and full gradients alive at once
        self._transient = 0
        self.units = [self._shard_unit(u) for u in units]

    # ---------------------------------------------------------------- the training step
    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """Forward, backward and optimizer step on this rank's micro-batch; returns the local loss."""
        if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
            raise ValueError(f"inputs and targets must be tensors, got {type(inputs).__name__}, {type(targets).__name__}")
        self._transient = 0
        h = inputs
        for u in self.units:                                   # forward, unit by unit
            if self.stage == 3:
                self._gather(u)
            h_in = h.detach().requires_grad_() if h.is_floating_point() else h
            hooks = torch.autograd.graph.saved_tensors_hooks(*self._hooks(u)) if self.stage == 3 else nullcontext()
            with hooks:
                h_out = u.module(h_in)
                if u is self.units[-1]:
                    h_out = self.loss_fn(h_out, targets)
            u.saved = [h_in, h_out]
            if self.stage == 3:
                self._free(u)
            h = h_out
        loss = h.item()
        grad_out = None
        for u in reversed(self.units):                         # backward, unit by unit
            if self.stage == 3:
                self._gather(u)                                # the second all-gather of stage 3
            h_in, h_out = u.saved
            torch.autograd.backward(h_out, grad_out)
            grad_out = h_in.grad if h_in.is_floating_point() else None
            u.saved = []
            self._reduce_gradients(u)
            if self.stage == 3:
                self._free(u)
        self.steps += 1
        for u in self.units:                                   # optimizer step
            self._update(u)
        return loss

    def _reduce_gradients(self, u: _UnitState) -> None:
        flat = torch.zeros(u.padded)
        torch.cat([p.grad.reshape(-1) for p in u.params], out=flat[:u.numel])
        for p in u.params:
            p.grad = None
        self._hold(flat)
        if self.stage == 0:                                    # DDP: all-reduce, keep the full gradient
            self._all_reduce(flat)
            u.grad_full.copy_(flat.div_(self.world))
        elif self.stage == 1:                                  # keep the full local gradient; reduce at the step
            u.grad_full.copy_(flat)
        else:                                                  # reduce-scatter now, keep only my slice
            self._reduce_scatter(u.grad_shard, flat)
            u.grad_shard.div_(self.world)
        self._release(flat)

    def _update(self, u: _UnitState) -> None:
        if self.stage == 0:
            adam_update(u.full, u.grad_full, u.exp_avg, u.exp_avg_sq, self.steps, self.lr, self.betas, self.eps)
            return
        if self.stage == 1:
            grad_shard = torch.empty_like(u.shard)
            self._reduce_scatter(grad_shard, u.grad_full)
            grad_shard.div_(self.world)
        else:
            grad_shard = u.grad_shard
        adam_update(u.shard, grad_shard, u.exp_avg, u.exp_avg_sq, self.steps, self.lr, self.betas, self.eps)
        if self.stage in (1, 2):                               # everyone needs everyone's new parameters
            self._all_gather(u.full, u.shard.clone())

    # ---------------------------------------------------------------- what a rank holds
    def held_bytes(self) -> dict[str, int]:
        """Bytes of model states this rank keeps between steps, read off the tensors it holds."""
        nbytes = lambda t: 0 if t is None else t.numel() * t.element_size()  # noqa: E731
        params = sum(nbytes(u.full) if self.stage < 3 else nbytes(u.shard) for u in self.units)
        grads = sum(nbytes(u.grad_full) + nbytes(u.grad_shard) for u in self.units)
        optim = sum(nbytes(u.exp_avg) + nbytes(u.exp_avg_sq) for u in self.units)
        return {"params": params, "grads": grads, "optimizer": optim, "total": params + grads + optim}

    @property
    def numel(self) -> int:
        """Psi: parameters in the model."""
        return sum(u.numel for u in self.units)

    @property
    def padded_numel(self) -> int:
        """Psi after padding each unit to a multiple of the world size (what the buffers hold)."""
        return sum(u.padded for u in self.units)

    def full_state_dict(self) -> dict[int, torch.Tensor]:
        """Every unit's full flat parameter vector (gathers at stage 3; a collective: call on all ranks)."""
        out = {}
        for i, u in enumerate(self.units):
            if self.stage == 3:
                full = torch.empty(u.padded)
                dist.all_gather_single(full, u.shard, group=self.group)
                out[i] = full[:u.numel].clone()
            else:
                out[i] = u.full[:u.numel].clone()
        return out

    # ---------------------------------------------------------------- helpers
    def _shard_unit(self, module: nn.Module) -> _UnitState:
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"unit {type(module).__name__} has no trainable parameters")
        numel = sum(p.numel() for p in params)
        padded = -(-numel // self.world) * self.world
        per_rank = padded // self.world
        full = torch.zeros(padded)
        torch.cat([p.detach().reshape(-1) for p in params], out=full[:numel])
        mine = full[self.rank * per_rank:(self.rank + 1) * per_rank]
        u = _UnitState(module, params, [p.shape for p in params], numel, padded, full, mine)
        optim_size = padded if self.stage == 0 else per_rank
        u.exp_avg, u.exp_avg_sq = torch.zeros(optim_size), torch.zeros(optim_size)
        if self.stage <= 1:
            u.grad_full = torch.zeros(padded)
        else:
            u.grad_shard = torch.zeros(per_rank)
        if self.stage == 3:
            u.shard = mine.clone()                             # keep my slice, drop the rest
            u.full = None
            self._point_params(u, None)
        else:
            self._point_params(u, full)
        return u

    def _point_params(self, u: _UnitState, full: torch.Tensor | None) -> None:
        """Make the module's parameters views into `full`, or empty when the unit is not gathered."""
        offset = 0
        for p, shape in zip(u.params, u.shapes):
            n = shape.numel()
            p.data = full[offset:offset + n].view(shape) if full is not None else torch.empty(0)
            offset += n

    def _gather(self, u: _UnitState) -> None:
        u.full = torch.empty(u.padded)
        self._all_gather(u.full, u.shard)
        self._hold(u.full)
        self._point_params(u, u.full)

    def _free(self, u: _UnitState) -> None:
        self._release(u.full)
        u.full = None
        self._point_params(u, None)

    def _hooks(self, u: _UnitState):
        """Saved-tensor hooks: a saved tensor that lives in the gathered buffer is stored as its place."""
        storage = u.full.untyped_storage().data_ptr()

        def pack(t: torch.Tensor):
            if t.device.type == "cpu" and t.untyped_storage().data_ptr() == storage:
                return ("in_flat_buffer", t.shape, t.stride(), t.storage_offset())
            return t

        def unpack(saved):
            if isinstance(saved, tuple) and saved[0] == "in_flat_buffer":
                return u.full.as_strided(saved[1], saved[2], saved[3])   # re-gathered by then
            return saved
        return pack, unpack

    def _hold(self, t: torch.Tensor) -> None:
        self._transient += t.numel() * t.element_size()
        self.peak_transient_bytes = max(self.peak_transient_bytes, self._transient)

    def _release(self, t: torch.Tensor) -> None:
        self._transient -= t.numel() * t.element_size()

    def _all_reduce(self, t: torch.Tensor) -> None:
        self.comm.record("all_reduce", t.numel())
        dist.all_reduce(t, group=self.group)

    def _reduce_scatter(self, out: torch.Tensor, full: torch.Tensor) -> None:
        self.comm.record("reduce_scatter", full.numel())
        dist.reduce_scatter_single(out, full, group=self.group)

    def _all_gather(self, full: torch.Tensor, shard: torch.Tensor) -> None:
        self.comm.record("all_gather", full.numel())
        dist.all_gather_single(full, shard, group=self.group)


# ---------------------------------------------------------------- the book's GPT as a chain of units

class _Embed(nn.Module):
    def __init__(self, tok_emb: nn.Embedding):
        super().__init__()
        self.tok_emb = tok_emb

    def forward(self, idx):
        return self.tok_emb(idx)


class _Layer(nn.Module):
    def __init__(self, block: nn.Module, cos: torch.Tensor, sin: torch.Tensor):
        super().__init__()
        self.block, self.cos, self.sin = block, cos, sin

    def forward(self, x):
        t = x.shape[1]
        return self.block(x, self.cos[:t], self.sin[:t])


class _Head(nn.Module):
    def __init__(self, norm: nn.Module, lm_head: nn.Linear):
        super().__init__()
        self.norm, self.lm_head = norm, lm_head

    def forward(self, x):
        return self.lm_head(self.norm(x))


def gpt_units(model) -> list[nn.Module]:
    """The book's GPT (`llminfra_lab.model.GPT`) cut into units: embedding, each block, norm + head.

    The units share the model's parameters (no copy). The embedding and the head must be
    untied: a tied weight would belong to two units.
    """
    from .model import GPT

    if not isinstance(model, GPT):
        raise ValueError(f"model must be an llminfra_lab.model.GPT, got {type(model).__name__}")
    if model.cfg.tie_embeddings:
        raise ValueError("gpt_units needs GPTConfig(tie_embeddings=False): a tied weight would sit in two units")
    return ([_Embed(model.tok_emb)] + [_Layer(b, model.rope_cos, model.rope_sin) for b in model.blocks]
            + [_Head(model.norm, model.lm_head)])


def sequential_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: logits (batch, seq, vocab), targets (batch, seq)."""
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (batch, seq, vocab) and targets (batch, seq), got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def small_gpt_config(**overrides):
    """The small untied GPT that the lab and tests train: 90,432 parameters."""
    from dataclasses import fields

    from .model import GPTConfig

    valid = {f.name for f in fields(GPTConfig)}
    if set(overrides) - valid:
        raise ValueError(f"unknown GPTConfig fields {sorted(set(overrides) - valid)}; valid: {sorted(valid)}")
    base = dict(vocab_size=128, n_layer=2, n_head=4, n_kv_head=2, d_model=64, d_ff=128,
                max_seq_len=32, tie_embeddings=False)
    base.update(overrides)
    return GPTConfig(**base)


# ============================================================================ 3. the comparison run

def _batch(cfg, rank: int, step: int, micro_batch: int, seq_len: int, seed: int):
    """This rank's micro-batch, the same for every method and (so that three steps show the
    loss falling) for every step: rows count up from a random start with a random stride,
    modulo vocab_size. `step` is kept in the signature for a reader who wants fresh data.
    """
    gen = torch.Generator().manual_seed(seed * 100_003 + rank)
    start = torch.randint(cfg.vocab_size, (micro_batch, 1), generator=gen)
    stride = torch.randint(1, 4, (micro_batch, 1), generator=gen)
    tokens = (start + stride * torch.arange(seq_len + 1)) % cfg.vocab_size
    return tokens[:, :-1], tokens[:, 1:]


def compare_runs(rank: int, world_size: int, steps: int = 3, stages=STAGES, fsdp2: bool = True,
                 cfg_overrides: dict | None = None, micro_batch: int = 2, seq_len: int = 16,
                 lr: float = 3e-2, seed: int = 0) -> dict:
    """Run on every rank (via `collectives.launch`): the same GPT trained by each method.

    Methods: "torch-ddp" (torch.optim.Adam on full replicas, gradients all-reduced and
    averaged, the reference), "zero0" .. "zero3" (this module's `ZeroEngine`), and
    "fsdp2" (PyTorch's `fully_shard` on each block and on the root, torch.optim.Adam).
    Returns {method: {"losses": [local loss per step], ...}}; the ZeRO entries add
    "held_bytes", "peak_transient_bytes", "comm_elements", "comm_calls", "psi", "padded_psi";
    fsdp2 adds "param_bytes" and "optimizer_bytes" held by this rank; both add
    "max_weight_diff", the largest difference of the final weights from torch-ddp's.
    """
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if any(s not in STAGES for s in stages):
        raise ValueError(f"stages must be drawn from {STAGES}, got {stages!r}")
    from .model import GPT

    cfg = small_gpt_config(**(cfg_overrides or {}))
    if seq_len > cfg.max_seq_len:
        raise ValueError(f"seq_len ({seq_len}) must be <= max_seq_len ({cfg.max_seq_len})")
    batches = [_batch(cfg, rank, s, micro_batch, seq_len, seed) for s in range(steps)]
    out: dict[str, dict] = {}

    model = GPT(cfg, seed=seed)                                # the reference: plain DDP in PyTorch
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for x, y in batches:
        loss = model.loss(x, y)
        loss.backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
            p.grad.div_(world_size)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    out["torch-ddp"] = {"losses": losses}
    reference = torch.cat([p.detach().reshape(-1) for p in model.parameters()])   # final weights, unit order

    for stage in stages:
        engine = ZeroEngine(gpt_units(GPT(cfg, seed=seed)), sequential_loss, stage=stage, lr=lr)
        losses = []
        for i, (x, y) in enumerate(batches):
            if i == steps - 1:
                engine.comm.reset()                            # count one steady-state step
            losses.append(engine.step(x, y))
        weights = torch.cat(list(engine.full_state_dict().values()))
        out[f"zero{stage}"] = {"losses": losses, "held_bytes": engine.held_bytes(),
                               "max_weight_diff": (weights - reference).abs().max().item(),
                               "peak_transient_bytes": engine.peak_transient_bytes,
                               "comm_elements": engine.comm.elements(), "comm_calls": list(engine.comm.calls),
                               "psi": engine.numel, "padded_psi": engine.padded_numel}

    if fsdp2:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        model = GPT(cfg, seed=seed)
        mesh = init_device_mesh("cpu", (world_size,))
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        losses = []
        for x, y in batches:
            loss = model.loss(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        local = lambda t: t.to_local() if hasattr(t, "to_local") else t  # noqa: E731
        param_bytes = sum(local(p).numel() * 4 for p in model.parameters())
        optim_bytes = sum(local(v).numel() * v.element_size() for st in opt.state.values()
                          for k, v in st.items() if k in ("exp_avg", "exp_avg_sq"))
        weights = torch.cat([p.full_tensor().reshape(-1) for p in model.parameters()])
        out["fsdp2"] = {"losses": losses, "param_bytes": param_bytes, "optimizer_bytes": optim_bytes,
                        "max_weight_diff": (weights - reference).abs().max().item(),
                        "param_type": type(next(model.parameters())).__name__}
    return out


def formula_for_run(result: dict, stage: int, world_size: int) -> dict[str, float]:
    """The paper's model-state bytes for a fp32 run (4-byte params and grads, K = 8) of result's padded Psi."""
    if f"zero{stage}" not in result:
        raise KeyError(f"no zero{stage} in the result; it has {sorted(result)}")
    return model_state_bytes(result[f"zero{stage}"]["padded_psi"], stage, world_size, k=8,
                             param_bytes=4, grad_bytes=4)


# ============================================================================ plots

_STAGE_NAMES = {0: "DDP", 1: "ZeRO-1 (P_os)", 2: "ZeRO-2 (P_os+g)", 3: "ZeRO-3 (P_os+g+p)"}


def plot_memory_vs_gpus(psi: float = 7.5e9, k: float = 12, max_gpus: int = 1024, ax=None):
    """Model-state GB per GPU against data-parallel degree, one line per stage (log-log)."""
    import matplotlib.pyplot as plt

    if isinstance(max_gpus, bool) or not isinstance(max_gpus, int) or max_gpus < 2:
        raise ValueError(f"max_gpus must be an int >= 2, got {max_gpus!r}")
    ax = ax or plt.subplots(figsize=(6.4, 4))[1]
    gpus = [2 ** i for i in range(int(math.log2(max_gpus)) + 1)]
    for stage in STAGES:
        ax.plot(gpus, [model_state_bytes(psi, stage, n, k)["total"] / 1e9 for n in gpus], marker="o",
                ms=3, label=_STAGE_NAMES[stage])
    ax.axhline(80, color="grey", ls=":", lw=1)
    ax.text(gpus[-1], 80 * 0.8, "80 GB of HBM", color="grey", fontsize=8, ha="right", va="top")
    ax.set(xscale="log", yscale="log", xlabel="data-parallel GPUs (Nd)", ylabel="model states per GPU (GB)",
           title=f"Psi = {psi / 1e9:g}B parameters, K = {k:g}")
    ax.set_xticks(gpus[::2], [str(g) for g in gpus[::2]])
    ax.legend(fontsize=8)
    return ax


def plot_stage_breakdown(psi: float = 7.5e9, n_gpus: int = 64, k: float = 12, ax=None):
    """Stacked bars of parameters, gradients and optimizer state per GPU for each stage."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6.4, 3.6))[1]
    parts = [model_state_bytes(psi, s, n_gpus, k) for s in STAGES]
    bottom = [0.0] * len(STAGES)
    names = [_STAGE_NAMES[s] for s in STAGES]
    for key, color in (("params", "C0"), ("grads", "C1"), ("optimizer", "C2")):
        vals = [p[key] / 1e9 for p in parts]
        ax.bar(names, vals, bottom=bottom, color=color, label=key)
        bottom = [b + v for b, v in zip(bottom, vals)]
    for i, total in enumerate(bottom):
        ax.text(i, total, f"{total:.3g} GB", ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="GB per GPU", title=f"Psi = {psi / 1e9:g}B, Nd = {n_gpus}, K = {k:g}")
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(fontsize=8)
    return ax


def plot_measured_vs_formula(result: dict, world_size: int, ax=None):
    """Bars of the bytes a rank held in a real run beside the paper's formula, per stage."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6.4, 3.6))[1]
    stages = [s for s in STAGES if f"zero{s}" in result]
    measured = [result[f"zero{s}"]["held_bytes"]["total"] / 1e3 for s in stages]
    formula = [formula_for_run(result, s, world_size)["total"] / 1e3 for s in stages]
    xs = range(len(stages))
    ax.bar([x - 0.2 for x in xs], measured, width=0.4, label="measured (tensors held)")
    ax.bar([x + 0.2 for x in xs], formula, width=0.4, label="formula (fp32, K = 8)")
    ax.set_xticks(list(xs), [_STAGE_NAMES[s] for s in stages], fontsize=8)
    ax.set(ylabel="kB of model states per rank", title=f"{world_size} ranks, real run")
    ax.legend(fontsize=8)
    return ax
