"""Figures for chapter 4 and its lab: the ring step by step (a schematic), the alpha-beta
model on real fabrics, a fitted measurement, hierarchical all-reduce, fat-tree sizes.

matplotlib is imported inside each function (it is optional for the rest of the package).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llminfra_lab.checks import positive_int
from llminfra_lab.collectives.cost import all_reduce_time, fabric, hierarchical_all_reduce_time
from llminfra_lab.collectives.measure import AlphaBeta, Measurement, ring_step_counts
from llminfra_lab.collectives.ring import ring_contributions, ring_schedule
from llminfra_lab.collectives.topology import fat_tree

__all__ = ["plot_ring_schematic", "plot_all_reduce_model", "plot_fat_tree_scaling", "plot_fit",
           "plot_hierarchical"]


def plot_ring_schematic(world_size: int = 4):
    """A ring all-reduce step by step: one panel per moment, ranks as rows, chunks as boxes.

    Top row: the start and the p - 1 reduce-scatter steps; bottom row: the p - 1
    all-gather steps. A box is coloured by how many ranks' inputs it sums and labelled
    with those ranks; arrows show this step's sends (rank r to rank r + 1, the last rank
    back to rank 0), and the boxes that just received are outlined in red. The states
    come from `ring_contributions`, the arrows from `ring_schedule`: the same schedule
    the real collectives run.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    positive_int("world_size", world_size)
    if not 2 <= world_size <= 6:
        raise ValueError(f"world_size must be between 2 and 6 for a readable figure, got {world_size!r}")
    p = world_size
    snapshots = ring_contributions(p)
    schedules = [ring_schedule(r, p) for r in range(p)]
    cmap = plt.get_cmap("YlGnBu")
    fig, axes = plt.subplots(2, p, figsize=(2.6 * p, 5.6))
    row_gap = 1.5
    for i, ax in enumerate(axes.flat):
        ax.set_xlim(-0.9, p + 0.1)
        ax.set_ylim(-(p - 1) * row_gap - 0.7, 1.5)
        ax.set_aspect("equal")
        ax.axis("off")
        if i == 2 * p - 1:
            _ring_legend(ax, Rectangle, p, cmap)
            continue
        state = snapshots[i]
        phase = None if i == 0 else ("reduce_scatter" if i <= p - 1 else "all_gather")
        step = 0 if i == 0 else (i - 1) % (p - 1)
        ax.set_title("start: each rank's own input" if phase is None else
                     f"{phase.replace('_', '-')} step {step + 1}", fontsize=9)
        received = set()
        if phase is not None:
            for r in range(p):
                send, _ = schedules[r][phase][step]
                right = (r + 1) % p
                received.add((right, send))
                _ring_arrow(ax, FancyArrowPatch, send, r, right, row_gap, p)
        for r in range(p):
            y = -r * row_gap
            ax.text(-0.15, y + 0.45, f"rank {r}", ha="right", va="center", fontsize=8)
            for c in range(p):
                held = state[r][c]
                fresh = (r, c) in received
                ax.add_patch(Rectangle((c + 0.05, y), 0.9, 0.9, facecolor=cmap(len(held) / p),
                                       edgecolor="red" if fresh else "0.3", linewidth=2.2 if fresh else 0.6))
                label = "all" if len(held) == p else "".join(str(k) for k in sorted(held))
                ax.text(c + 0.5, y + 0.45, label, ha="center", va="center", fontsize=8,
                        color="white" if len(held) > p / 2 else "black")
    fig.suptitle(f"Ring all-reduce on {p} ranks: chunk c of every rank, labelled with the ranks it sums", fontsize=10)
    fig.tight_layout()
    return fig


def _ring_arrow(ax, arrow_cls, chunk: int, src: int, dst: int, row_gap: float, p: int) -> None:
    """An arrow from chunk `chunk` of rank `src` to the same chunk of rank `dst`; the
    wrap-around (last rank back to rank 0) leaves the bottom and enters the top."""
    x = chunk + 0.5
    ends = [((x, -src * row_gap), (x, -dst * row_gap + 0.9))] if dst == src + 1 else [
        ((x, -src * row_gap), (x, -src * row_gap - 0.55)), ((x, 1.45), (x, 0.9))]
    for start, end in ends:
        ax.add_patch(arrow_cls(start, end, arrowstyle="-|>", mutation_scale=9, color="red", linewidth=1.0))


def _ring_legend(ax, rect_cls, p: int, cmap) -> None:
    ax.set_title("colour: ranks summed", fontsize=9)
    for k in range(1, p + 1):
        y = -(k - 1) * 0.9
        ax.add_patch(rect_cls((0.3, y), 0.9, 0.7, facecolor=cmap(k / p), edgecolor="0.3", linewidth=0.6))
        ax.text(1.4, y + 0.35, f"{k} of {p}" + (" (complete)" if k == p else ""), va="center", fontsize=8)
    ax.text(0.3, -p * 0.9 - 0.2, "red box: received\nthis step; an arrow\nleaving the bottom\nenters rank 0 at the top",
            va="top", fontsize=8, color="red")


def plot_all_reduce_model(world_size: int = 8, fabrics: Sequence[str] = ("NVLink4", "NDR-IB", "RoCE-400G"),
                          sizes_bytes: Sequence[float] | None = None, ax=None):
    """Predicted all-reduce time against message size, ring (solid) and tree (dashed)."""
    import matplotlib.pyplot as plt

    positive_int("world_size", world_size)
    if world_size < 2:
        raise ValueError(f"world_size must be an int >= 2, got {world_size!r}")
    sizes = np.logspace(3, 10, 57) if sizes_bytes is None else np.asarray(sizes_bytes, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    for i, name in enumerate(fabrics):
        f = fabric(name)
        color = f"C{i}"
        ring = [all_reduce_time(float(s), world_size, f, "ring") for s in sizes]
        tree = [all_reduce_time(float(s), world_size, f, "tree") for s in sizes]
        ax.loglog(sizes, ring, color=color, label=f"{f.name} ring")
        ax.loglog(sizes, tree, color=color, linestyle="--", label=f"{f.name} tree")
    ax.set_xlabel("message size S (bytes)")
    ax.set_ylabel("predicted all-reduce time (s)")
    ax.set_title(f"Alpha-beta model, p = {world_size} ranks")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return ax.figure


def plot_fat_tree_scaling(radixes: Sequence[int] = tuple(range(8, 146, 2)),
                          marks: Sequence[int] = (48, 64, 144), ax=None):
    """Hosts of two- and three-level fat-trees against switch radix, log scale."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    ks = list(radixes)
    for levels, formula in ((2, "k^2/2"), (3, "k^3/4")):
        ax.semilogy(ks, [fat_tree(k, levels).hosts for k in ks], "-", label=f"{levels} levels: {formula}")
    for k in marks:
        for levels in (2, 3):
            h = fat_tree(k, levels).hosts
            ax.plot([k], [h], "ko", ms=4)
            ax.annotate(f"{h:,}", (k, h), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.margins(x=0.1)
    ax.set_xlabel("switch radix k (ports)")
    ax.set_ylabel("hosts (GPUs, one NIC port each)")
    ax.set_title("Non-blocking fat-tree size against switch radix")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return ax.figure


def plot_fit(measurement: Measurement, fit: AlphaBeta, ax=None):
    """Measured times (dots) and the fitted alpha-beta line."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    s = np.asarray(measurement.sizes_bytes, dtype=float)
    a, b = ring_step_counts(measurement.collective, measurement.world_size)
    grid = np.logspace(np.log10(s.min()), np.log10(s.max()), 50)
    ax.loglog(s, measurement.seconds, "o", label=f"measured ({measurement.impl})")
    ax.loglog(grid, a * fit.alpha_s + b * grid * fit.beta_s_per_byte, "-",
              label=f"fit: alpha={fit.alpha_s * 1e6:.0f} us, 1/beta={fit.bandwidth_Bps / 1e9:.2f} GB/s")
    ax.set_xlabel("message size S (bytes)")
    ax.set_ylabel("seconds")
    ax.set_title(f"{measurement.collective} on {measurement.world_size} local processes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax.figure


def plot_hierarchical(size_bytes: float = 1e9, gpus_per_node: int = 8,
                      nodes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
                      intra: str = "NVLink4", inter: str = "NDR-IB", ax=None):
    """All-reduce time against cluster size: flat ring over the network vs hierarchical."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    f_out = fabric(inter)
    gpus = [gpus_per_node * m for m in nodes]
    flat = [all_reduce_time(size_bytes, p, f_out, "ring") for p in gpus]
    tree = [all_reduce_time(size_bytes, p, f_out, "tree") for p in gpus]
    hier = [hierarchical_all_reduce_time(size_bytes, gpus_per_node, m, intra, inter) for m in nodes]
    ax.semilogx(gpus, flat, "o-", label=f"flat ring over {inter}")
    ax.semilogx(gpus, tree, "s--", label=f"flat tree over {inter}")
    ax.semilogx(gpus, hier, "^-", label=f"hierarchical: {intra} inside, {inter} across")
    ax.set_xlabel("GPUs")
    ax.set_ylabel("predicted all-reduce time (s)")
    ax.set_title(f"All-reduce of {size_bytes / 1e9:g} GB, {gpus_per_node} GPUs per node")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax.figure
