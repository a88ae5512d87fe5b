"""The training loop: a step over micro-batches, a run with a schedule, a held-out loss.

    TrainConfig    the hyperparameters of one run
    train_step     one optimizer step over micro-batches (gradient accumulation, optional
                   BF16 autocast, clipping)
    train          a run: a schedule, random batches from a seeded generator, a history
    evaluate_loss  mean next-token loss over consecutive windows of held-out ids
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from llminfra_lab.checks import positive_int
from llminfra_lab.data import batches
from llminfra_lab.model import GPT
from llminfra_lab.training.optim import AdamW, clip_grad_norm, lr_at

__all__ = ["TrainConfig", "train_step", "train", "evaluate_loss"]


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (all sizes in tokens or steps)."""
    steps: int = 200
    batch_size: int = 16            # sequences per optimizer step (= micro_batch * accum_steps)
    accum_steps: int = 1            # micro-batches whose gradients are summed before a step
    seq_len: int = 64
    max_lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    precision: str = "fp32"         # "fp32" or "bf16" (autocast of forward and loss)
    seed: int = 0                   # the batch sampler's seed
    eval_every: int = 0             # 0 = never; else record a held-out loss every this many steps

    def __post_init__(self):
        for name in ("steps", "batch_size", "accum_steps", "seq_len"):
            value = getattr(self, name)
            positive_int(f"TrainConfig.{name}", value)
        for name in ("warmup_steps", "eval_every", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be an int >= 0, got {value!r}")
        if self.batch_size % self.accum_steps:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of accum_steps ({self.accum_steps})")
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be <= steps ({self.steps})")
        if not (0 <= self.min_lr <= self.max_lr):
            raise ValueError(f"need 0 <= min_lr <= max_lr, got {self.min_lr}, {self.max_lr}")
        if not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        self.betas = tuple(self.betas)


def train_step(model: GPT, optimizer: torch.optim.Optimizer,
               micro_batches: list[tuple[torch.Tensor, torch.Tensor]], *, grad_clip: float | None = 1.0,
               precision: str = "fp32") -> tuple[float, float]:
    """One optimizer step over a list of (x, y) micro-batches; returns (mean loss, grad norm).

    Each micro-batch loss is divided by the number of micro-batches before backward, so
    the summed gradient equals that of one batch holding all of them (equal sizes).
    """
    if not isinstance(micro_batches, (list, tuple)) or not micro_batches:
        raise ValueError("micro_batches must be a non-empty list of (x, y) tensor pairs")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    n = len(micro_batches)
    for x, y in micro_batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model.loss(x, y)
        (loss / n).backward()
        total += loss.item()
    params = [p for p in model.parameters() if p.grad is not None]
    if grad_clip is not None:
        norm = clip_grad_norm(params, grad_clip)
    else:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    optimizer.step()
    return total / n, float(norm)


def train(model: GPT, train_ids: torch.Tensor, cfg: TrainConfig, *, val_ids: torch.Tensor | None = None,
          optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Train `model` (a GPT) in place on a 1-D tensor of token ids; return the history.

    Batches are random windows of cfg.seq_len + 1 tokens drawn by `data.batches` with a
    generator seeded by cfg.seed, so a run repeats bit for bit on the same machine with
    the same software and thread count; another CPU, another kernel (ATEN_CPU_CAPABILITY)
    or another torch version sums in another order and the losses differ in the third or
    fourth digit.
    The history holds, per step: "step", "loss", "lr", "grad_norm", "tokens" (seen so
    far), and when cfg.eval_every > 0: "eval_step", "val_loss".
    """
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    _check_ids(train_ids, "train_ids", cfg.seq_len)
    if val_ids is not None:
        _check_ids(val_ids, "val_ids", cfg.seq_len)
    if cfg.eval_every and val_ids is None:
        raise ValueError("cfg.eval_every > 0 needs val_ids")
    if optimizer is None:
        optimizer = AdamW(model.parameters(), lr=cfg.max_lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    micro = cfg.batch_size // cfg.accum_steps
    hist: dict[str, list] = {"step": [], "loss": [], "lr": [], "grad_norm": [], "tokens": [],
                             "eval_step": [], "val_loss": []}
    for step in range(cfg.steps):
        lr = lr_at(step, max_lr=cfg.max_lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps,
                   min_lr=cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        mbs = [batches(train_ids, micro, cfg.seq_len, gen) for _ in range(cfg.accum_steps)]
        loss, norm = train_step(model, optimizer, mbs, grad_clip=cfg.grad_clip, precision=cfg.precision)
        hist["step"].append(step)
        hist["loss"].append(loss)
        hist["lr"].append(lr)
        hist["grad_norm"].append(norm)
        hist["tokens"].append((step + 1) * cfg.batch_size * cfg.seq_len)
        if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            hist["eval_step"].append(step)
            hist["val_loss"].append(evaluate_loss(model, val_ids, cfg.seq_len))
    model.eval()
    return hist


@torch.no_grad()
def evaluate_loss(model: GPT, ids: torch.Tensor, seq_len: int, max_windows: int = 64) -> float:
    """Mean next-token loss (nats) over consecutive, non-overlapping windows of `ids`.

    Deterministic: windows start at 0, seq_len, 2*seq_len, ... (at most max_windows).
    """
    _check_ids(ids, "ids", seq_len)
    positive_int("max_windows", max_windows)
    n = min(max_windows, (ids.numel() - 1) // seq_len)
    x = torch.stack([ids[i * seq_len:(i + 1) * seq_len] for i in range(n)])
    y = torch.stack([ids[i * seq_len + 1:(i + 1) * seq_len + 1] for i in range(n)])
    was = model.training
    model.eval()
    losses = [model.loss(x[i:i + 16], y[i:i + 16]).item() * len(x[i:i + 16]) for i in range(0, n, 16)]
    model.train(was)
    return sum(losses) / n


def _check_ids(ids, name: str, seq_len: int) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.dim() != 1:
        raise ValueError(f"{name} must be a 1-D torch.long tensor of token ids")
    if ids.numel() < seq_len + 2:
        raise ValueError(f"{name} holds {ids.numel()} tokens; need at least seq_len + 2 = {seq_len + 2}")
