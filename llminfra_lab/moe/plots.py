"""Figures of chapter 8: the MoE layer and expert-parallel dispatch (schematics), expert
load over time under each balancing method, and the real MoE models of the catalog."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from llminfra_lab import catalog, figures

__all__ = ["draw_moe_layer", "draw_expert_parallel", "plot_load_over_time", "plot_catalog_moe"]

_COLORS = plt.get_cmap("tab10").colors


def _box(ax, x, y, w, h, text, color, fontsize=8):
    figures.box(ax, x, y, w, h, text, color, fontsize=fontsize, edge="black", lw=0.8, alpha=0.85)


def _arrow(ax, start, end, color="black", width=1.0):
    figures.arrow(ax, start, end, color=color, lw=width, head=8)


def draw_moe_layer(n_experts: int = 8, k: int = 2, n_shared: int = 1, ax: Axes | None = None) -> Axes:
    """Schematic: a token, the router's top-k choice, the shared expert(s), the weighted sum."""
    if not (isinstance(n_experts, int) and isinstance(k, int) and isinstance(n_shared, int)) \
            or not 1 <= k <= n_experts or n_shared < 0 or n_experts > 16:
        raise ValueError("need ints with 1 <= k <= n_experts <= 16 and n_shared >= 0")
    ax = ax or plt.subplots(figsize=(8, 3.6))[1]
    chosen = set(range(1, n_experts, max(1, n_experts // k)))
    chosen = set(sorted(chosen)[:k])
    _box(ax, 0.2, 1.6, 1.2, 0.6, "token x", "#dddddd")
    _box(ax, 2.0, 1.6, 1.4, 0.6, f"router\ntop-{k} of {n_experts}", "#ffd27f")
    _arrow(ax, (1.4, 1.9), (2.0, 1.9))
    width = 7.6 / (n_experts + n_shared)
    for e in range(n_experts):
        x = 3.9 + e * width
        on = e in chosen
        _box(ax, x, 3.0, width * 0.85, 0.7, f"E{e}", _COLORS[0] if on else "#eeeeee", 7)
        if on:
            _arrow(ax, (3.4, 2.1), (x + width * 0.4, 3.0), _COLORS[0])
            _arrow(ax, (x + width * 0.4, 3.0 - 0.02), (x + width * 0.4, 0.95), _COLORS[0], 0.6)
    for s in range(n_shared):
        x = 3.9 + (n_experts + s) * width
        _box(ax, x, 3.0, width * 0.85, 0.7, f"S{s}", _COLORS[2], 7)
        _arrow(ax, (x + width * 0.4, 3.0), (x + width * 0.4, 0.95), _COLORS[2], 0.6)
    _box(ax, 3.9, 0.3, 7.6 * n_experts / (n_experts + n_shared) + width * n_shared - 0.1, 0.6,
         "y = shared outputs + sum over chosen e of gate_e * E_e(x)", "#cfe8cf", 7)
    ax.text(0.2, 3.3, f"routed: {k} of {n_experts} run\nshared: {n_shared} always run", fontsize=8)
    ax.set_xlim(0, 11.8)
    ax.set_ylim(0, 4.0)
    ax.axis("off")
    ax.set_title("One MoE layer: only the chosen experts compute for this token")
    return ax


def draw_expert_parallel(world: int = 4, ax: Axes | None = None) -> Axes:
    """Schematic: each rank's tokens go to the experts' ranks (dispatch) and come back (combine)."""
    if not isinstance(world, int) or not 2 <= world <= 8:
        raise ValueError(f"world must be an int in [2, 8], got {world!r}")
    ax = ax or plt.subplots(figsize=(8, 3.6))[1]
    for r in range(world):
        y = (world - 1 - r) * 1.0
        _box(ax, 0.0, y, 1.8, 0.7, f"rank {r}: tokens", "#dddddd")
        _box(ax, 4.0, y, 1.8, 0.7, f"rank {r}: experts\n{2 * r}, {2 * r + 1}", _COLORS[r % 10])
        _box(ax, 8.0, y, 1.8, 0.7, f"rank {r}: outputs", "#cfe8cf")
        for j in range(world):
            yj = (world - 1 - j) * 1.0
            _arrow(ax, (1.8, y + 0.35), (4.0, yj + 0.35), _COLORS[j % 10], 0.5)
            _arrow(ax, (5.8, y + 0.35), (8.0, yj + 0.35), _COLORS[r % 10], 0.5)
    ax.text(2.9, world * 1.0, "dispatch\n(all-to-all)", ha="center", fontsize=8)
    ax.text(6.9, world * 1.0, "combine\n(all-to-all)", ha="center", fontsize=8)
    ax.set_xlim(-0.2, 10.0)
    ax.set_ylim(-0.2, world + 0.6)
    ax.axis("off")
    ax.set_title(f"Expert parallelism on {world} ranks: two all-to-alls per MoE layer")
    return ax


def plot_load_over_time(result: dict, layer: int = 0, ax=None):
    """For each method of `result` (train_balance histories under result['runs']): the share of
    each expert over the steps (top row) and MaxVio (bottom)."""
    runs = result.get("runs") if isinstance(result, dict) else None
    if not runs:
        raise ValueError("result must be a dict with 'runs': {method: history}")
    if ax is None:
        fig, ax = plt.subplots(2, len(runs), figsize=(4 * len(runs), 5), sharex=True, squeeze=False)
    for j, (method, hist) in enumerate(runs.items()):
        shares = [step[layer] for step in hist["load"]]
        n_experts = len(shares[0])
        for e in range(n_experts):
            ax[0][j].plot([s[e] for s in shares], color=_COLORS[e % 10], linewidth=0.9)
        ax[0][j].axhline(1 / n_experts, color="black", linestyle=":", linewidth=0.8)
        ax[0][j].set_title(f"{method}: layer {layer} expert shares")
        ax[0][j].set_ylim(0, max(0.5, max(max(s) for s in shares) * 1.05))
        ax[1][j].plot(hist["maxvio"], color="black", linewidth=0.9)
        ax[1][j].set_yscale("log")
        ax[1][j].set_xlabel("step")
        ax[1][j].set_title("MaxVio (mean over layers)")
    return ax


def plot_catalog_moe(names=("mixtral-8x7b", "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3"), ax: Axes | None = None) -> Axes:
    """Total against active parameters of the catalog's MoE models (billions), computed from their configs."""
    specs = [catalog.model_spec(n) for n in names]
    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    y = range(len(specs))
    ax.barh(list(y), [s.total_params() / 1e9 for s in specs], color="#cccccc", label="total")
    ax.barh(list(y), [s.active_params() / 1e9 for s in specs], color=_COLORS[0], label="active per token")
    for i, s in enumerate(specs):
        ax.text(s.total_params() / 1e9, i, f" {s.total_params() / 1e9:.1f}B / {s.active_params() / 1e9:.1f}B",
                va="center", fontsize=8)
    ax.set_yticks(list(y), [s.name for s in specs])
    ax.set_xscale("log")
    ax.set_xlabel("parameters (billions, log scale)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("MoE models: all weights are stored, few are used per token")
    return ax
