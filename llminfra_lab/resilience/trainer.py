"""A trainer that can be killed at any instant and resumes bit for bit.

Everything that decides the next weights is saved at each checkpoint and restored on resume:

- the model's parameters and the AdamW optimizer's moments and step counts;
- the data position: the `torch.Generator` that draws each batch's windows (its state *is*
  the position in the sample stream) and the number of steps taken;
- the global torch RNG, which the trainer uses for input noise (a few tokens of each batch
  replaced at random, a stand-in for dropout and other randomness in real training).

Leave any of them out and the resumed run drifts from the uninterrupted one; the tests show
each. The run writes an append-only event log (``events.jsonl``: resume, step, save begin and
end) that the fault-injection campaign in `faults.py` reads after each kill.

Run one from a shell (the campaign does exactly this, then kills it):

    python -m llminfra_lab.resilience.trainer --run-dir /tmp/run --steps 60 --interval 10
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from llminfra_lab import data, model
from llminfra_lab.checks import nonnegative_int, positive_int, positive_number
from llminfra_lab.resilience.atomic import load_latest, prune_checkpoints, save_checkpoint, state_digest

__all__ = ["TrainerConfig", "training_state", "restore_training_state", "run_training", "final_weights",
           "read_events"]


@dataclass(frozen=True)
class TrainerConfig:
    """A small, fast run of the tiny GPT ("small": 2 layers, d_model 64) on the stories corpus."""

    steps: int = 60                 # optimizer steps of the whole run
    interval: int = 10              # save a checkpoint every `interval` steps
    seed: int = 0
    batch_size: int = 8
    seq_len: int = 32
    lr: float = 3e-3
    noise: float = 0.05             # fraction of input tokens replaced at random (global RNG)
    keep: int = 2                   # verified checkpoints kept on disk
    pause_before_rename_s: float = 0.0   # fault injection: widen the mid-save window
    step_sleep_s: float = 0.0            # fault injection: slow each step down

    def __post_init__(self) -> None:
        for name in ("steps", "interval", "batch_size", "seq_len", "keep"):
            positive_int(name, getattr(self, name))
        nonnegative_int("seed", self.seed)
        positive_number("lr", self.lr)
        if not 0 <= self.noise < 1:
            raise ValueError(f"noise must be in [0, 1), got {self.noise!r}")
        if self.pause_before_rename_s < 0 or self.step_sleep_s < 0:
            raise ValueError("pause_before_rename_s and step_sleep_s must be >= 0")


def training_state(net: torch.nn.Module, opt: torch.optim.Optimizer, sampler: torch.Generator,
                   step: int) -> dict[str, Any]:
    """Everything a bit-exact resume needs: weights, optimizer, both RNGs and the data position."""
    return {
        "step": step,
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "sampler_rng": sampler.get_state(),          # the data position in the sample stream
        "torch_rng": torch.get_rng_state(),          # input noise
        "digest": state_digest(dict(net.state_dict())),
    }


def restore_training_state(state: dict[str, Any], net: torch.nn.Module, opt: torch.optim.Optimizer,
                           sampler: torch.Generator) -> int:
    """Put a saved `training_state` back in place; returns the step to continue from."""
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sampler.set_state(state["sampler_rng"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def _setup(cfg: TrainerConfig) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.Generator, torch.Tensor]:
    torch.manual_seed(cfg.seed)
    net = model.GPT(model.tiny_config("small", max_seq_len=cfg.seq_len), seed=cfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.01)
    sampler = torch.Generator().manual_seed(cfg.seed + 1)
    text = data.stories(20_000, seed=cfg.seed)
    ids = torch.tensor([min(ord(c), 127) for c in text], dtype=torch.long)   # byte-level, vocab 128
    return net, opt, sampler, ids


def _train_step(net, opt, sampler, ids, cfg: TrainerConfig) -> float:
    x, y = data.batches(ids, cfg.batch_size, cfg.seq_len, generator=sampler)
    replace = torch.rand(x.shape) < cfg.noise                     # global RNG: restored on resume
    x = torch.where(replace, torch.randint(0, 128, x.shape), x)
    logits = net(x)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def run_training(cfg: TrainerConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train to `cfg.steps`, resuming from the newest good checkpoint in ``run_dir/ckpt``.

    Appends events to ``run_dir/events.jsonl`` (flushed at once, so a kill loses none that
    were written): ``resume`` (from which step, the loaded weights' digest, the checkpoints
    refused), ``step``, ``save_begin``, ``save_end``, ``done``. Returns the final weights'
    digest and the step it resumed from.
    """
    if not isinstance(cfg, TrainerConfig):
        raise ValueError(f"cfg must be a TrainerConfig, got {type(cfg).__name__}")
    run_dir = Path(run_dir)
    ckpt = run_dir / "ckpt"
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    net, opt, sampler, ids = _setup(cfg)
    step, state, refused = load_latest(ckpt)
    start = 0
    if state is not None:
        start = restore_training_state(state, net, opt, sampler)
    with open(run_dir / "events.jsonl", "a") as log:
        def event(kind: str, **fields: Any) -> None:
            log.write(json.dumps({"event": kind, "pid": os.getpid(), "t": time.time(), **fields}) + "\n")
            log.flush()
        event("resume", step=start, digest=state_digest(dict(net.state_dict())),
              saved_digest=None if state is None else state["digest"], refused=refused)
        for s in range(start, cfg.steps):
            loss = _train_step(net, opt, sampler, ids, cfg)
            event("step", step=s + 1, loss=loss)
            if cfg.step_sleep_s:
                time.sleep(cfg.step_sleep_s)
            if (s + 1) % cfg.interval == 0 or s + 1 == cfg.steps:
                event("save_begin", step=s + 1)
                save_checkpoint(training_state(net, opt, sampler, s + 1), ckpt, s + 1,
                                pause_before_rename_s=cfg.pause_before_rename_s)
                event("save_end", step=s + 1, digest=state_digest(dict(net.state_dict())))
                prune_checkpoints(ckpt, cfg.keep)
        digest = state_digest(dict(net.state_dict()))
        event("done", step=cfg.steps, digest=digest)
    return {"digest": digest, "resumed_from": start}


def final_weights(run_dir: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of the newest good checkpoint of a run (the final ones once it is done)."""
    _, state, _ = load_latest(Path(run_dir) / "ckpt")
    if state is None:
        raise ValueError(f"no good checkpoint under {run_dir}/ckpt")
    return state["model"]


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    """The events a run (and all its restarts) logged, in order; a torn last line is dropped."""
    path = Path(run_dir) / "events.jsonl"
    events = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            events.append(json.loads(line))
        except ValueError:          # the process was killed in the middle of writing this line
            continue
    return events


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m llminfra_lab.resilience.trainer --run-dir DIR [options]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    defaults = TrainerConfig()
    for name, value in asdict(defaults).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    run_dir = args.pop("run_dir")
    torch.set_num_threads(1)
    run_training(TrainerConfig(**args), run_dir)


if __name__ == "__main__":
    main()
