"""Load balancing over time: a small MoE variant of the tiny GPT trained three ways.

`moe_gpt` takes the book's GPT (`model.tiny_config`) and replaces each block's MLP with an
`MoELayer`; everything else (attention, norms, the loss) is the spine's. `train_balance`
trains it on the synthetic stories (bytes as tokens) with one balancing method and records,
at every step, each layer's expert load, its MaxVio and the language-model loss:

    "none"  no balancing: the router is free to collapse onto a few experts
    "aux"   the Switch auxiliary loss, alpha = 0.01, added to the training loss
    "bias"  DeepSeek-V3's auxiliary-loss-free bias update, sigmoid gating, gamma = 1e-2
            (DeepSeek-V3 used 1e-3 over many thousands of steps; a 300-step run needs a faster one)

benchmarks/moe_balance.py runs all three for a few hundred steps and ships the result
(llminfra_lab/assets/moe_balance.json); `load_balance_result` reads it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from llminfra_lab import data
from llminfra_lab.checks import positive_int
from llminfra_lab.model import GPT, tiny_config
from llminfra_lab.moe.layer import MoEConfig, MoELayer
from llminfra_lab.moe.routing import max_violation
from llminfra_lab.shipped import load_json

__all__ = ["METHODS", "moe_gpt", "train_balance", "load_balance_result"]

METHODS = {
    "none": dict(gating="softmax", balancing="none"),
    "aux": dict(gating="softmax", balancing="aux", aux_alpha=0.01),
    "bias": dict(gating="sigmoid", balancing="bias", bias_gamma=1e-2),
}


def moe_gpt(moe: MoEConfig, tiny: str = "small", seed: int = 0) -> GPT:
    """The tiny GPT `tiny` with every block's MLP replaced by an MoELayer of config `moe`."""
    cfg = tiny_config(tiny)
    if moe.d_model != cfg.d_model:
        raise ValueError(f"moe.d_model ({moe.d_model}) must equal the GPT's d_model ({cfg.d_model})")
    model = GPT(cfg, seed=seed)
    for i, block in enumerate(model.blocks):
        block.mlp = MoELayer(moe, seed=seed + 1000 + i)
    return model


def train_balance(method: str, steps: int = 300, seed: int = 0, n_experts: int = 8, k: int = 2,
                  batch_size: int = 16, seq_len: int = 32, lr: float = 3e-3) -> dict:
    """Train the MoE GPT with one balancing method; return per-step history (plain lists).

    Keys: method, steps, loss (per step), maxvio (per step, mean over layers),
    load (per step, per layer, fraction of assignments per expert), aux_loss.
    """
    if method not in METHODS:
        raise KeyError(f"unknown balancing method {method!r}; valid: {sorted(METHODS)}")
    for name, value in (("steps", steps), ("n_experts", n_experts), ("k", k), ("batch_size", batch_size),
                        ("seq_len", seq_len)):
        positive_int(name, value)
    torch.manual_seed(seed)
    d_model = tiny_config("small").d_model
    moe = MoEConfig(d_model=d_model, d_expert=d_model // 2, n_experts=n_experts, k=k, **METHODS[method])
    model = moe_gpt(moe, seed=seed)
    ids = torch.tensor(list(data.corpus("stories", 200_000, seed=seed).encode("ascii")), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    layers = [b.mlp for b in model.blocks]
    history = {"method": method, "steps": steps, "loss": [], "maxvio": [], "load": [], "aux_loss": []}
    for _ in range(steps):
        x, y = data.batches(ids, batch_size, seq_len, gen)
        lm_loss = model.loss(x, y)
        aux = sum(layer.aux_loss for layer in layers)
        opt.zero_grad(set_to_none=True)
        (lm_loss + aux).backward()
        opt.step()
        if method == "bias":
            for layer in layers:
                layer.update_bias()
        loads = [layer.last_load / layer.last_load.sum() for layer in layers]
        history["loss"].append(round(lm_loss.item(), 5))
        history["aux_loss"].append(round(float(aux.detach()) if torch.is_tensor(aux) else float(aux), 6))
        history["maxvio"].append(round(sum(max_violation(ld) for ld in loads) / len(loads), 5))
        history["load"].append([[round(float(v), 5) for v in ld] for ld in loads])
    return history


def load_balance_result(path: str | Path | None = None) -> dict:
    """The shipped result of benchmarks/moe_balance.py (or the JSON file at `path`)."""
    result = load_json("moe_balance.json", path, made_by="benchmarks/moe_balance.py")
    if not isinstance(result, dict) or set(result.get("runs", {})) != set(METHODS):
        raise ValueError(f"not a moe_balance result: expected runs for {sorted(METHODS)}")
    return result
