"""The chapter's figures: the atomic-save schematic and the data plots."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import FancyBboxPatch

from llminfra_lab.resilience.failures import LLAMA3_INTERRUPTIONS, interruption_table
from llminfra_lab.resilience.goodput import daly_interval, expected_goodput, young_interval

__all__ = ["plot_atomic_save_schematic", "plot_goodput_curve", "plot_llama3_interruptions", "plot_step_times"]


def plot_atomic_save_schematic(ax: Axes | None = None) -> Axes:
    """The four moves of an atomic save, with what a kill at each moment leaves on disk."""
    ax = ax or plt.subplots(figsize=(10, 3.6))[1]
    moves = [("write state.pt\ninto .tmp-step_N/", "#9ecae1"), ("fsync the file", "#6baed6"),
             ("write + fsync\nMANIFEST.json\n(size, SHA-256)", "#4292c6"),
             ("rename .tmp-step_N\n-> step_N,\nfsync the directory", "#2171b5")]
    for i, (label, colour) in enumerate(moves):
        ax.add_patch(FancyBboxPatch((i * 2.5, 1.6), 2.2, 1.2, boxstyle="round,pad=0.05", fc=colour, ec="black"))
        ax.text(i * 2.5 + 1.1, 2.2, label, ha="center", va="center", fontsize=8.5,
                color="white" if i >= 2 else "black")
        if i < 3:
            ax.annotate("", xy=(i * 2.5 + 2.45, 2.2), xytext=(i * 2.5 + 2.25, 2.2),
                        arrowprops={"arrowstyle": "->", "lw": 1.5})
    outcomes = ["kill here: only a .tmp dir\n(ignored, deleted later)", "kill here: .tmp dir,\nno manifest: ignored",
                "kill here: complete .tmp dir,\nnot yet renamed: ignored", "after the rename: step_N\nis complete and verified"]
    for i, text in enumerate(outcomes):
        ax.annotate(text, xy=(i * 2.5 + 1.1, 1.55), xytext=(i * 2.5 + 1.1, 0.5), ha="center", fontsize=8,
                    arrowprops={"arrowstyle": "-", "ls": ":", "color": "crimson"}, color="crimson")
    ax.text(5.0, 3.25, "The loader verifies each step_* against its manifest, newest first, and falls back on a mismatch",
            ha="center", fontsize=9)
    ax.set_xlim(-0.2, 10.0)
    ax.set_ylim(0.0, 3.5)
    ax.axis("off")
    return ax


def plot_goodput_curve(checkpoint_s: float, mtbf_s: float, restart_s: float = 0.0,
                       simulated: dict[float, float] | None = None, ax: Axes | None = None) -> Axes:
    """Expected goodput against the checkpoint interval, with Young's and Daly's optima marked
    and, if given, simulated points {interval_s: goodput}."""
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    young = young_interval(checkpoint_s, mtbf_s)
    taus = np.geomspace(young / 20, young * 20, 300)
    ax.plot(taus / 60, [expected_goodput(t, checkpoint_s, mtbf_s, restart_s) for t in taus], label="expected (exact)")
    for tau, name, style in ((young, "Young sqrt(2CM)", "--"), (daly_interval(checkpoint_s, mtbf_s), "Daly", ":")):
        ax.axvline(tau / 60, ls=style, color="grey", label=f"{name}: {tau / 60:.1f} min")
    if simulated:
        xs = sorted(simulated)
        ax.plot([x / 60 for x in xs], [simulated[x] for x in xs], "o", color="crimson", label="simulated")
    ax.set_xscale("log")
    ax.set_xlabel("checkpoint interval (minutes of compute)")
    ax.set_ylabel("goodput (useful / wall time)")
    ax.set_title(f"C = {checkpoint_s:g} s, MTBF = {mtbf_s / 3600:.2f} h, restart = {restart_s:g} s")
    ax.legend(fontsize=8)
    return ax


def plot_llama3_interruptions(ax: Axes | None = None) -> Axes:
    """Llama 3's root causes: count per component, with the printed and recomputed percentages."""
    ax = ax or plt.subplots(figsize=(8, 5))[1]
    rows = interruption_table()
    names = [r["component"] for r in rows][::-1]
    counts = [r["count"] for r in rows][::-1]
    hw = [row.hardware for row in LLAMA3_INTERRUPTIONS][::-1]
    ax.barh(names, counts, color=["#2171b5" if h else "#bdbdbd" for h in hw])
    for i, r in enumerate(rows[::-1]):
        label = f"{r['count']}  ({r['printed_percent']}% printed"
        label += f", {r['recomputed_percent']}% of 419)" if abs(r["difference"]) >= 0.1 else ")"
        ax.text(r["count"] + 2, i, label, va="center", fontsize=7.5)
    ax.set_xlim(0, 230)
    ax.set_xlabel("unexpected interruptions in 54 days (blue: hardware)")
    ax.tick_params(axis="y", labelsize=8)
    return ax


def plot_step_times(step_times: np.ndarray, flagged: list[int] | None = None, ax: Axes | None = None) -> Axes:
    """Per-rank median compute time per step, with flagged stragglers in red."""
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    med = np.median(step_times, axis=0)
    flagged = set(flagged or [])
    ax.bar(range(len(med)), med, color=["crimson" if r in flagged else "#6baed6" for r in range(len(med))])
    ax.axhline(float(np.median(med)), color="grey", ls="--", label="median over ranks")
    ax.set_xlabel("rank")
    ax.set_ylabel("median compute time per step (s)")
    ax.set_ylim(0.9 * med.min(), 1.05 * med.max())
    ax.legend(fontsize=8)
    return ax
