"""The comparison run: one GPT trained by plain data parallel, ZeRO stages 0-3 and FSDP2, side by side.

`compare_runs` is what each rank runs under `launch.launch`. Sharding changes where
bytes live, never the arithmetic, so every method must give plain data parallel's losses
and final weights (float32: to the last bit in practice, <= 1e-6 asserted). PyTorch's
FSDP2 (`fully_shard`) matches exactly on CPU from torch 2.9; torch 2.7-2.8 differ by
about 1e-4, and torch 2.6 fails inside `fully_shard` on this model.
"""
from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from llminfra_lab.checks import positive_int
from llminfra_lab.memory import model_state_bytes
from llminfra_lab.model import GPT, GPTConfig, tiny_config

from .engine import STAGES, ZeroEngine
from .units import gpt_units, sequential_loss

__all__ = ["ZERO_FIGURE1", "compare_runs", "formula_for_run"]

# Rajbhandari et al. 2020, Figure 1: 7.5B parameters, K = 12, Nd = 64, GB per GPU (1 GB = 1e9 bytes).
ZERO_FIGURE1 = {"psi": 7.5e9, "k": 12, "n_gpus": 64,
                "gb_per_gpu": {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.88}}


def _batch(cfg: GPTConfig, rank: int, micro_batch: int, seq_len: int, seed: int):
    """This rank's micro-batch, the same for every method and every step (so that three
    steps show the loss falling): rows count up from a random start with a random stride,
    modulo vocab_size."""
    gen = torch.Generator().manual_seed(seed * 100_003 + rank)
    start = torch.randint(cfg.vocab_size, (micro_batch, 1), generator=gen)
    stride = torch.randint(1, 4, (micro_batch, 1), generator=gen)
    tokens = (start + stride * torch.arange(seq_len + 1)) % cfg.vocab_size
    return tokens[:, :-1], tokens[:, 1:]


def compare_runs(rank: int, world_size: int, steps: int = 3, stages=STAGES, fsdp2: bool = True,
                 cfg_overrides: dict | None = None, micro_batch: int = 2, seq_len: int = 16,
                 lr: float = 3e-2, seed: int = 0, device: str = "cpu") -> dict:
    """Run on every rank (via `launch.launch`): the same GPT trained by each method.

    The GPT is `model.tiny_config("small")` (90,432 parameters, untied) with `cfg_overrides`.
    Methods: "torch-ddp" (torch.optim.Adam on full replicas, gradients all-reduced and
    averaged, the reference), "zero0" .. "zero3" (`ZeroEngine`), and "fsdp2" (PyTorch's
    `fully_shard` on each block and on the root, torch.optim.Adam).
    Returns {method: {"losses": [local loss per step], ...}}; the ZeRO entries add
    "held_bytes", "peak_transient_bytes", "comm_elements", "comm_calls", "psi", "padded_psi";
    fsdp2 adds "param_bytes" and "optimizer_bytes" held by this rank; both add
    "max_weight_diff", the largest difference of the final weights from torch-ddp's; every
    method adds "weights_sha256", a fingerprint of its final weights (float32 bytes, unit
    order), equal between two runs only when the weights are equal to the last bit.
    Models and batches are built on the CPU and moved to `device` ("cuda:LOCAL_RANK" under NCCL).
    """
    positive_int("steps", steps)
    if any(s not in STAGES for s in stages):
        raise ValueError(f"stages must be drawn from {STAGES}, got {stages!r}")
    cfg = tiny_config("small", **(cfg_overrides or {}))
    if seq_len > cfg.max_seq_len:
        raise ValueError(f"seq_len ({seq_len}) must be <= max_seq_len ({cfg.max_seq_len})")
    batches = [tuple(t.to(device) for t in _batch(cfg, rank, micro_batch, seq_len, seed)) for _ in range(steps)]
    out: dict[str, dict] = {}

    model = GPT(cfg, seed=seed).to(device)                     # the reference: plain DDP in PyTorch
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
    reference = torch.cat([p.detach().reshape(-1) for p in model.parameters()])   # final weights, unit order
    out["torch-ddp"] = {"losses": losses, "weights_sha256": _fingerprint(reference)}

    for stage in stages:
        engine = ZeroEngine(gpt_units(GPT(cfg, seed=seed).to(device)), sequential_loss, stage=stage, lr=lr)
        losses = []
        for i, (x, y) in enumerate(batches):
            if i == steps - 1:
                engine.comm.reset()                            # count one steady-state step
            losses.append(engine.step(x, y))
        weights = torch.cat(list(engine.full_state_dict().values()))
        out[f"zero{stage}"] = {"losses": losses, "held_bytes": engine.held_bytes(),
                               "max_weight_diff": (weights - reference).abs().max().item(),
                               "weights_sha256": _fingerprint(weights),
                               "peak_transient_bytes": engine.peak_transient_bytes,
                               "comm_elements": engine.comm.elements(), "comm_calls": list(engine.comm.calls),
                               "psi": engine.numel, "padded_psi": engine.padded_numel}

    if fsdp2:
        model = GPT(cfg, seed=seed).to(device)
        mesh = init_device_mesh(torch.device(device).type, (world_size,))
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
                        "weights_sha256": _fingerprint(weights),
                        "param_type": type(next(model.parameters())).__name__}
    return out


def _fingerprint(weights: torch.Tensor) -> str:
    return hashlib.sha256(weights.detach().cpu().float().numpy().tobytes()).hexdigest()


def formula_for_run(result: dict, stage: int, world_size: int) -> dict[str, float]:
    """`memory.model_state_bytes` for a float32 run (4-byte params and grads, K = 8) of result's padded Psi."""
    if f"zero{stage}" not in result:
        raise KeyError(f"no zero{stage} in the result; it has {sorted(result)}")
    return model_state_bytes(result[f"zero{stage}"]["padded_psi"], stage, world_size, k=8,
                             param_bytes=4, grad_bytes=4)
