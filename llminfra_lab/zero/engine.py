"""ZeroEngine: data-parallel training with DDP (stage 0) or ZeRO stage 1, 2 or 3, over torch.distributed.

The model is a chain of units (`units.gpt_units` cuts the book's GPT into embedding,
blocks and head). Each unit's parameters live in one flat buffer padded to a multiple of
the world size N; rank r owns slice r of it (`shard_range`). Between steps a rank keeps

    stage 0  the whole buffer, the whole gradient, Adam's moments for everything
    stage 1  the whole buffer and gradient, Adam's moments for its slice only
    stage 2  the whole buffer, its slice of the reduced gradient and of the moments
    stage 3  its slice of everything; a unit is all-gathered just before it runs
             (forward, and again backward) and freed right after

and `held_bytes` reads those bytes off the tensors, while `CommLog` counts every
element each collective moves, so both can be checked against `memory.model_state_bytes`
and the paper's 2 Psi / 3 Psi traffic (Rajbhandari et al. 2020).
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from llminfra_lab.checks import positive_int, positive_number
from llminfra_lab.collectives import BUSBW_FACTORS
from llminfra_lab.memory import ZERO_STAGES

__all__ = ["STAGES", "CommLog", "adam_update", "shard_range", "ZeroEngine"]

STAGES = ZERO_STAGES  # 0 = plain data parallel (DDP), 1-3 = ZeRO stages

# torch 2.13 names the flat collectives *_single; torch 2.9-2.12 have the same functions
# as reduce_scatter_tensor and all_gather_into_tensor (same arguments).
_reduce_scatter_flat = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
_all_gather_flat = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def shard_range(numel: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, stop) of rank `rank`'s slice of a flat buffer of `numel` elements.

    The buffer is padded with zeros to a multiple of world_size, so that every rank owns
    the same number of elements, ceil(numel / world_size); the last ranks' slices may lie
    partly or wholly in the padding. This is how DeepSpeed's flat partitions and FSDP1's
    FlatParameter split a unit, and how `ZeroEngine` does.
    """
    positive_int("numel", numel)
    positive_int("world_size", world_size)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    per_rank = -(-numel // world_size)
    return rank * per_rank, (rank + 1) * per_rank


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


class CommLog:
    """Every collective a rank issued, with the element count of the FULL (unsharded) tensor.

    The paper measures volume in elements moved per rank, for bandwidth-optimal (ring)
    algorithms: an all-gather or a reduce-scatter of n elements moves n (N-1)/N per rank,
    an all-reduce twice that (`collectives.BUSBW_FACTORS`). `elements` drops the
    (N-1)/N factor, as the paper does.
    """

    OPS = ("all_reduce", "all_gather", "reduce_scatter")

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def record(self, op: str, full_numel: int) -> None:
        if op not in self.OPS:
            raise ValueError(f"op must be one of {self.OPS}, got {op!r}")
        if isinstance(full_numel, bool) or not isinstance(full_numel, int) or full_numel < 0:
            raise ValueError(f"full_numel must be an int >= 0, got {full_numel!r}")
        self.calls.append((op, full_numel))

    def elements(self) -> int:
        """Elements of full tensors moved, an all-reduce counting twice (reduce-scatter + all-gather)."""
        return sum(2 * n if op == "all_reduce" else n for op, n in self.calls)

    def bytes_sent_per_rank(self, world_size: int, element_bytes: float = 4) -> float:
        """Bytes each rank sends under ring algorithms: elements x ring factor x bytes per element."""
        positive_int("world_size", world_size)
        positive_number("element_bytes", element_bytes)
        return sum(n * BUSBW_FACTORS[op](world_size) for op, n in self.calls) * element_bytes

    def reset(self) -> None:
        self.calls.clear()


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
    saved: tuple[torch.Tensor, torch.Tensor] | None = None   # (unit input, unit output) between forward and backward


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
        positive_number("lr", lr)
        owners: dict[int, int] = {}
        for i, unit in enumerate(units):
            for p in unit.parameters():
                if id(p) in owners and owners[id(p)] != i:
                    raise ValueError("a parameter is shared by two units (tied weights); untie it "
                                     "(GPTConfig(tie_embeddings=False)) or put both users in one unit")
                owners[id(p)] = i
        if not dist.is_initialized():
            raise ValueError("ZeroEngine needs an initialised torch.distributed process group (see launch.launch)")
        self.stage, self.lr, self.betas, self.eps, self.group = stage, lr, betas, eps, group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        self.loss_fn, self.comm, self.steps = loss_fn, CommLog(), 0
        # every buffer lives where the units' parameters do (cuda:LOCAL_RANK under NCCL)
        self.device = next((p.device for u in units for p in u.parameters()), torch.device("cpu"))
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
        for i, u in enumerate(self.units):                     # forward, unit by unit
            if self.stage == 3:
                self._gather(u)
            h_in = h.detach().requires_grad_() if h.is_floating_point() else h
            hooks = torch.autograd.graph.saved_tensors_hooks(*self._hooks(u)) if self.stage == 3 else nullcontext()
            with hooks:
                h = u.module(h_in)
                if i == len(self.units) - 1:
                    h = self.loss_fn(h, targets)
            u.saved = (h_in, h)
            if self.stage == 3:
                self._free(u)
        loss = h.item()
        del h, h_in                                            # the graph now lives only in u.saved
        grad_out = None
        for u in reversed(self.units):                         # backward, unit by unit
            if self.stage == 3:
                self._gather(u)                                # the second all-gather of stage 3
            unit_in, unit_out = u.saved
            u.saved = None
            torch.autograd.backward(unit_out, grad_out)
            grad_out = unit_in.grad if unit_in.is_floating_point() else None
            del unit_in, unit_out
            self._reduce_gradients(u)
            if self.stage == 3:
                self._free(u)
        self.steps += 1
        for u in self.units:                                   # optimizer step
            self._update(u)
        return loss

    def _reduce_gradients(self, u: _UnitState) -> None:
        flat = torch.zeros(u.padded, device=self.device)
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
        self._drop(flat)

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
                full = torch.empty(u.padded, device=self.device)
                _all_gather_flat(full, u.shard, group=self.group)
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
        start, stop = shard_range(numel, self.world, self.rank)
        padded = (stop - start) * self.world
        full = torch.zeros(padded, device=self.device)
        torch.cat([p.detach().reshape(-1) for p in params], out=full[:numel])
        mine = full[start:stop]
        u = _UnitState(module, params, [p.shape for p in params], numel, padded, full, mine)
        optim_size = padded if self.stage == 0 else stop - start
        u.exp_avg, u.exp_avg_sq = (torch.zeros(optim_size, device=self.device) for _ in range(2))
        if self.stage <= 1:
            u.grad_full = torch.zeros(padded, device=self.device)
        else:
            u.grad_shard = torch.zeros(stop - start, device=self.device)
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
            p.data = full[offset:offset + n].view(shape) if full is not None else torch.empty(0, device=self.device)
            offset += n

    def _gather(self, u: _UnitState) -> None:
        u.full = torch.empty(u.padded, device=self.device)
        self._all_gather(u.full, u.shard)
        self._hold(u.full)
        self._point_params(u, u.full)

    def _free(self, u: _UnitState) -> None:
        """Free a gathered unit: point its parameters away and give its bytes back now."""
        self._point_params(u, None)
        self._drop(u.full)
        u.full = None

    def _hooks(self, u: _UnitState):
        """Saved-tensor hooks: a saved tensor that lives in the gathered buffer is stored as its place."""
        storage, device = u.full.untyped_storage().data_ptr(), u.full.device

        def pack(t: torch.Tensor):
            if t.device == device and t.untyped_storage().data_ptr() == storage:
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

    def _drop(self, t: torch.Tensor) -> None:
        """Give a transient buffer's bytes back at once, as FSDP does (`storage.resize_(0)`).

        Dropping our last reference is not enough: the collective library may still hold
        the tensor after the call returns (gloo's worker thread can keep a finished
        collective's output for a while), so when the bytes would go back would depend on
        thread scheduling. Resizing the storage frees them now, and
        anything that still reads the buffer fails loudly instead of keeping it alive.
        """
        self._transient -= t.numel() * t.element_size()
        t.untyped_storage().resize_(0)

    def _all_reduce(self, t: torch.Tensor) -> None:
        self.comm.record("all_reduce", t.numel())
        dist.all_reduce(t, group=self.group)

    def _reduce_scatter(self, out: torch.Tensor, full: torch.Tensor) -> None:
        self.comm.record("reduce_scatter", full.numel())
        _reduce_scatter_flat(out, full, group=self.group)

    def _all_gather(self, full: torch.Tensor, shard: torch.Tensor) -> None:
        self.comm.record("all_gather", full.numel())
        _all_gather_flat(full, shard, group=self.group)
