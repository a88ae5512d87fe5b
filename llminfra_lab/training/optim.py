"""The optimizer side of a training step: AdamW, the learning-rate schedule, clipping.

    adamw_step       one AdamW update of one tensor, written out (the lab's implement-it)
    AdamW            a torch.optim.Optimizer that applies adamw_step to every parameter;
                     it equals torch.optim.AdamW bit for bit in float32
    lr_at            linear warm-up, then cosine decay to a floor
    clip_grad_norm   scale all gradients so that their global L2 norm is at most max_norm
"""
from __future__ import annotations

import math
import numbers

import torch

from llminfra_lab.checks import positive_number

__all__ = ["adamw_step", "AdamW", "lr_at", "clip_grad_norm"]


def adamw_step(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: int, *,
               lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
               weight_decay: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One AdamW update (Loshchilov & Hutter 2019) of parameter p with gradient g at step t >= 1.

    m and v are the first and second moments before the step. Returns the new (p, m, v)
    and leaves the inputs unchanged. The order of operations is torch.optim.AdamW's, so
    AdamW below, which calls this, equals PyTorch's optimizer bit for bit in float32.
    """
    p = p * (1 - lr * weight_decay)                       # decoupled weight decay
    m = torch.lerp(m, g, 1 - beta1)                       # m = beta1 m + (1 - beta1) g
    v = torch.addcmul(v * beta2, g, g, value=1 - beta2)   # v = beta2 v + (1 - beta2) g^2
    step_size = lr / (1 - beta1 ** t)                     # bias correction of m
    denom = v.sqrt() / (1 - beta2 ** t) ** 0.5 + eps      # bias correction of v
    return torch.addcdiv(p, m, denom, value=-step_size), m, v


class AdamW(torch.optim.Optimizer):
    """AdamW written out: `adamw_step` applied to every parameter that has a gradient.

    State per parameter: the step count and m and v, each the size of p (the "12 bytes"
    of a mixed-precision recipe are these two plus an FP32 master copy of p).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or lr < 0:
            raise ValueError(f"lr must be a number >= 0, got {lr!r}")
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(isinstance(b, numbers.Real) and 0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        positive_number("eps", eps)
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real) or weight_decay < 0:
            raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            (beta1, beta2) = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                new_p, m, v = adamw_step(p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"],
                                         lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                                         weight_decay=group["weight_decay"])
                p.copy_(new_p)
                state["exp_avg"], state["exp_avg_sq"] = m, v
        return loss


def lr_at(step: int, *, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate at optimizer step `step` (0-based): linear warm-up, then cosine decay.

    Steps 0 .. warmup_steps-1 rise linearly to max_lr (step s gets max_lr * (s+1)/warmup_steps);
    from warmup_steps to total_steps the rate follows half a cosine from max_lr down to
    min_lr, and it stays at min_lr after that.
    """
    for name, value in (("step", step), ("warmup_steps", warmup_steps), ("total_steps", total_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if warmup_steps > total_steps or total_steps == 0:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps and total_steps > 0, "
                         f"got warmup_steps={warmup_steps}, total_steps={total_steps}")
    if not (0 <= min_lr <= max_lr):
        raise ValueError(f"need 0 <= min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """Scale all gradients by min(1, max_norm / ||g||), ||g|| the L2 norm over every parameter.

    Returns the norm before clipping, as torch.nn.utils.clip_grad_norm_ does.
    """
    positive_number("max_norm", max_norm)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, 2.0) for g in grads]), 2.0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef)
    return total
