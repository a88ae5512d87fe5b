"""Figures of chapter 7 and its lab: the partitioning schematic, memory per GPU, and a real run's bytes."""
from __future__ import annotations

import math

from llminfra_lab.checks import positive_int, positive_number
from llminfra_lab.memory import model_state_bytes

from .compare import formula_for_run
from .engine import STAGES

__all__ = ["plot_zero_partition_schematic", "plot_memory_vs_gpus", "plot_stage_breakdown", "plot_measured_vs_formula"]

_STAGE_NAMES = {0: "DDP", 1: "ZeRO-1 (P_os)", 2: "ZeRO-2 (P_os+g)", 3: "ZeRO-3 (P_os+g+p)"}
_PARTS = (("params", "C0", "parameters (2 Psi)"), ("grads", "C1", "gradients (2 Psi)"),
          ("optimizer", "C2", "optimizer states (K Psi)"))


def plot_zero_partition_schematic(n_gpus: int = 4, k: float = 12, ax=None):
    """What each of `n_gpus` ranks holds at each stage (the idea of the ZeRO paper's Figure 1).

    One row per (stage, GPU): a bar of 2 + 2 + K units of width, parameters, gradients and
    optimizer states side by side; the coloured part is what that GPU keeps, the outlined
    part what another GPU keeps for it. Right of each group: the bytes per GPU in Psi.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    positive_int("n_gpus", n_gpus)
    positive_number("k", k)
    if n_gpus > 16:
        raise ValueError(f"n_gpus must be <= 16 for a readable schematic, got {n_gpus}")
    widths = {"params": 2.0, "grads": 2.0, "optimizer": float(k)}
    total = sum(widths.values())
    ax = ax or plt.subplots(figsize=(8, 1.1 + 0.33 * len(STAGES) * (n_gpus + 1)))[1]
    y = 0.0
    for stage in STAGES:
        sharded = {"params": stage >= 3, "grads": stage >= 2, "optimizer": stage >= 1}
        top = y
        for gpu in range(n_gpus):
            x = 0.0
            for part, color, _ in _PARTS:
                w = widths[part]
                ax.add_patch(Rectangle((x, y), w, 0.8, fill=False, ec=color, lw=0.8))
                lo, hi = (gpu / n_gpus, (gpu + 1) / n_gpus) if sharded[part] else (0.0, 1.0)
                ax.add_patch(Rectangle((x + lo * w, y), (hi - lo) * w, 0.8, color=color, alpha=0.85, lw=0))
                x += w
            ax.text(-0.3, y + 0.4, f"GPU {gpu}", ha="right", va="center", fontsize=7)
            y += 1
        per_gpu = model_state_bytes(1.0, stage, n_gpus, k=k)["total"]
        ax.text(total + 0.4, (top + y) / 2, f"{_STAGE_NAMES[stage]}\n{per_gpu:.3g} Psi bytes per GPU",
                ha="left", va="center", fontsize=8)
        y += 0.9
    for _, color, label in _PARTS:
        ax.add_patch(Rectangle((0, 0), 0, 0, color=color, label=label))
    ax.set_xlim(-2.2, total + 6.5)
    ax.set_ylim(y, -0.4)
    ax.axis("off")
    ax.legend(loc="upper center", bbox_to_anchor=(0.45, 0.0), ncol=3, fontsize=8, frameon=False)
    ax.set_title(f"What each of {n_gpus} GPUs holds (K = {k:g}): coloured = kept by that GPU", fontsize=9)
    return ax


def plot_memory_vs_gpus(psi: float = 7.5e9, k: float = 12, max_gpus: int = 1024, ax=None):
    """Model-state GB per GPU against data-parallel degree, one line per stage (log-log)."""
    import matplotlib.pyplot as plt

    if isinstance(max_gpus, bool) or not isinstance(max_gpus, int) or max_gpus < 2:
        raise ValueError(f"max_gpus must be an int >= 2, got {max_gpus!r}")
    ax = ax or plt.subplots(figsize=(6.4, 4))[1]
    gpus = [2 ** i for i in range(int(math.log2(max_gpus)) + 1)]
    for stage in STAGES:
        ax.plot(gpus, [model_state_bytes(psi, stage, n, k=k)["total"] / 1e9 for n in gpus], marker="o",
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
    parts = [model_state_bytes(psi, s, n_gpus, k=k) for s in STAGES]
    bottom = [0.0] * len(STAGES)
    names = [_STAGE_NAMES[s] for s in STAGES]
    for key, color, _ in _PARTS:
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
