"""Drawings of chapter 6: pipeline timelines and Megatron's tensor-parallel MLP.

matplotlib is imported inside the functions (it is optional for the package).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from llminfra_lab.checks import positive_int

from .pipeline import SCHEDULES, PipelineSchedule, pipeline_schedule

if TYPE_CHECKING:                      # matplotlib is optional: only for the type hints
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_schedule", "plot_schedules", "plot_tp_mlp_schematic"]


def plot_schedule(schedule: PipelineSchedule, ax: Axes | None = None) -> Axes:
    """Draw one schedule as a timeline: a row per rank, a box per op labelled with its micro-batch.

    Forward boxes are blue, backward (B) orange, weight-gradient (W) green; a darker
    shade marks later model chunks when interleaved, and DualPipe's second direction
    (micro-batches entering at the last rank, numbered from 1 again). A black border
    encloses each overlapped F&B unit of DualPipe. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib import colors as mcolors
    from matplotlib.patches import Rectangle

    if not isinstance(schedule, PipelineSchedule):
        raise ValueError(f"schedule must be a PipelineSchedule, got {type(schedule).__name__}")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.45 * schedule.p + 1))
    base = {"F": "#4C72B0", "B": "#DD8452", "W": "#55A868"}
    dual = schedule.name == "dualpipe"
    for o in schedule.ops:
        if dual:
            shade, label = (0.65 if o.microbatch >= schedule.m // 2 else 1.0), o.microbatch % (schedule.m // 2) + 1
        else:
            chunk = o.stage // schedule.p
            shade = 1.0 - 0.35 * chunk / max(schedule.v - 1, 1) if schedule.v > 1 else 1.0
            label = o.microbatch + 1
        rgb = [c * shade for c in mcolors.to_rgb(base[o.kind])]
        ax.barh(o.rank, o.end - o.start, left=o.start, height=0.8, color=rgb, edgecolor="white", linewidth=0.5)
        if (o.end - o.start) >= 0.45 * max(schedule.costs["t_f"] / schedule.v, 0.3):
            ax.text((o.start + o.end) / 2, o.rank, str(label), ha="center", va="center", fontsize=6, color="white")
    for o in schedule.ops:
        if o.overlapped and o.kind == "F":           # the unit is this F and the B, W recorded right after it
            w = next(x for x in schedule.ops if x.overlapped and x.kind == "W" and x.rank == o.rank
                     and x.start >= o.start and x.microbatch // (schedule.m // 2) != o.microbatch // (schedule.m // 2))
            ax.add_patch(Rectangle((o.start, o.rank - 0.4), w.end - o.start, 0.8, fill=False,
                                   edgecolor="black", linewidth=0.8))
    ax.set_yticks(range(schedule.p))
    ax.set_yticklabels([f"rank {r}" for r in range(schedule.p)])
    ax.invert_yaxis()
    ax.set_xlim(0, schedule.makespan)
    ax.set_xlabel("time (units of the op costs)")
    label = {"gpipe": "GPipe", "1f1b": "1F1B", "interleaved": f"interleaved 1F1B (v={schedule.v})",
             "zb-h1": "zero-bubble ZB-H1", "dualpipe": "DualPipe (m/2 from each end)"}[schedule.name]
    ax.set_title(f"{label}: p={schedule.p}, m={schedule.m}, bubble {schedule.bubble_fraction:.1%}, "
                 f"peak in-flight {max(schedule.peak_inflight):g} micro-batches", fontsize=9)
    return ax


def plot_schedules(p: int = 4, m: int = 8, v: int = 2, names: Sequence[str] = SCHEDULES[:4], **costs: float) -> Figure:
    """Schedules `names` (default: all but DualPipe) one above the other on a shared time
    axis; returns the Figure. v is used by "interleaved", t_fb (in costs) by "dualpipe"."""
    import matplotlib.pyplot as plt

    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty sequence of schedule names, got {names!r}")
    t_fb = costs.pop("t_fb", None)
    keys = [n.lower() if isinstance(n, str) else n for n in names]
    scheds = [pipeline_schedule(k, p, m, v if k == "interleaved" else 1, **costs,
                                **({"t_fb": t_fb} if k == "dualpipe" else {})) for k in keys]
    fig, axes = plt.subplots(len(scheds), 1, figsize=(10, len(scheds) * (0.45 * p + 0.9)), sharex=True,
                             squeeze=False)
    axes = axes[:, 0]
    for s, ax in zip(scheds, axes):
        plot_schedule(s, ax)
        ax.set_xlim(0, max(x.makespan for x in scheds))
    for ax in axes[:-1]:
        ax.set_xlabel("")
    fig.tight_layout()
    return fig


def plot_tp_mlp_schematic(world_size: int = 2, ax: Axes | None = None) -> Axes:
    """Megatron's MLP split over `world_size` ranks, drawn: one lane per rank.

    Each lane shows the full weights with this rank's slice coloured: A (d_model x d_ff)
    split by columns, B (d_ff x d_model) split by rows. The replicated input X enters
    through f (identity forward, all-reduce backward); each rank computes its partial
    Z_i = act(X A_i) B_i; g (all-reduce forward, identity backward) sums the partials
    into the replicated output Z. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyBboxPatch, Rectangle

    positive_int("world_size", world_size)
    if world_size > 8:
        raise ValueError(f"world_size must be at most 8 to stay legible, got {world_size}")
    n = world_size
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 1.35 * n + 1.4))
    colours = plt.get_cmap("tab10").colors
    lane_h, top = 1.3, 1.3 * n

    def arrow(x0, y0, x1, y1):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->", color="0.3", lw=1))

    def matrix(x, y, w, h, split, i, label):
        """A w x h matrix cut into n strips (columns or rows) with strip i coloured."""
        for k in range(n):
            if split == "column":
                box = (x + k * w / n, y, w / n, h)
            else:
                box = (x, y + h - (k + 1) * h / n, w, h / n)
            ax.add_patch(Rectangle(box[:2], *box[2:], facecolor=colours[i] if k == i else "0.93",
                                   edgecolor="0.4", linewidth=0.6))
        ax.text(x + w / 2, y - 0.12, label, ha="center", va="top", fontsize=8)

    for i in range(n):
        y = top - (i + 1) * lane_h
        ax.add_patch(FancyBboxPatch((1.9, y + 0.08), 6.7, lane_h - 0.16, boxstyle="round,pad=0.02",
                                    facecolor=colours[i], alpha=0.07, edgecolor=colours[i]))
        ax.text(1.98, y + lane_h - 0.2, f"rank {i}", fontsize=8, color=colours[i], va="top")
        mid = y + lane_h / 2
        matrix(2.7, mid - 0.3, 1.2, 0.6, "column", i, f"A{i + 1}: columns of A")
        ax.text(4.55, mid, "act", ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round", facecolor="white", edgecolor="0.5"))
        matrix(5.3, mid - 0.45, 0.6, 0.9, "row", i, f"B{i + 1}: rows of B")
        ax.text(7.4, mid, f"Z{i + 1} = act(X A{i + 1}) B{i + 1}", ha="center", va="center", fontsize=8)
        arrow(1.55, top / 2, 2.65, mid)
        for x0, x1 in ((3.95, 4.3), (4.8, 5.25), (5.95, 6.6)):
            arrow(x0, mid, x1, mid)
        arrow(8.2, mid, 8.85, top / 2)
    ax.text(0.45, top / 2, "X\n(replicated)", ha="center", va="center", fontsize=9,
            bbox=dict(boxstyle="round", facecolor="white", edgecolor="0.3"))
    for x, name, fwd, bwd in ((1.3, "f", "identity", "all-reduce"), (9.1, "g", "all-reduce", "identity")):
        ax.add_patch(Circle((x, top / 2), 0.25, facecolor="#FCE8C8", edgecolor="0.3"))
        ax.text(x, top / 2, name, ha="center", va="center", fontsize=11, style="italic")
        ax.text(x, -0.05, f"{name}: forward {fwd},\nbackward {bwd}", ha="center", va="top", fontsize=7)
    arrow(0.95, top / 2, 1.05, top / 2)
    ax.text(10.05, top / 2, "Z = " + " + ".join(f"Z{i + 1}" for i in range(n)) + "\n(replicated)",
            ha="center", va="center", fontsize=9, bbox=dict(boxstyle="round", facecolor="white", edgecolor="0.3"))
    arrow(9.35, top / 2, 9.55, top / 2)
    ax.set_xlim(-0.2, 10.9)
    ax.set_ylim(-0.75, top + 0.1)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"Megatron MLP on {n} ranks: A split by columns, B by rows; one all-reduce forward (g), "
                 "one backward (f)", fontsize=9)
    return ax
