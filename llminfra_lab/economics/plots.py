"""Figures of chapter 1: the five-layer stack (a schematic), the attention share of training
FLOPs, training cost, cost against MFU, serving cost against batch, and the price of a token.

Each function draws on `ax` (or a new figure) and returns the Axes; nothing is shown or saved.
matplotlib is imported where it is used, so the formulas work without it.
"""
from __future__ import annotations

import math
import numbers
import textwrap
from collections.abc import Sequence

from llminfra_lab.checks import positive_int, positive_number

from .compute import TrainingEstimate, _fraction, _spec, attention_share, gpu_hours, training_cost_usd
from .prices import TIERS, blended_price, fit_price_trend, price_history
from .serving import estimate_serving
from .stack import STACK

__all__ = [
    "plot_stack_schematic",
    "plot_attention_share",
    "plot_price_history",
    "plot_training_costs",
    "plot_cost_vs_mfu",
    "plot_serving_cost",
]

_LAYER_COLORS = ("#f4d6a0", "#f6b8a8", "#c9d7f2", "#c8e6c9", "#d9d2e9")   # top to bottom


def plot_stack_schematic(ax=None):
    """The five-layer stack as boxes, applications on top and hardware at the bottom, each
    with its responsibility, global and Chinese example systems and the book's chapters;
    arrows show a request going down the stack and tokens coming back up. Returns the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if ax is None:
        _, ax = plt.subplots(figsize=(11, 6.4))
    n = len(STACK)
    height, gap = 1.0, 0.18
    for i, (layer, color) in enumerate(zip(STACK, _LAYER_COLORS)):
        y = (n - 1 - i) * (height + gap)
        ax.add_patch(FancyBboxPatch((0.0, y), 10.0, height, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    facecolor=color, edgecolor="0.35", linewidth=1.0))
        ax.text(0.15, y + 0.68, layer.name, fontsize=10.5, fontweight="bold", va="center")
        ax.text(0.15, y + 0.32, f"chapters {layer.chapters}", fontsize=8, va="center", color="0.3")
        ax.text(2.35, y + height / 2, textwrap.fill(layer.role, 38, break_on_hyphens=False), fontsize=7.8, va="center")
        ax.text(5.55, y + height / 2, textwrap.fill(", ".join(layer.global_examples), 30, break_on_hyphens=False), fontsize=7.8,
                va="center")
        ax.text(7.95, y + height / 2, textwrap.fill(", ".join(layer.chinese_examples), 26, break_on_hyphens=False), fontsize=7.8,
                va="center")
    top = n * (height + gap) - gap
    for x, title in ((2.35, "responsible for"), (5.55, "global systems"), (7.95, "Chinese systems")):
        ax.text(x, top + 0.15, title, fontsize=8.5, fontstyle="italic", va="bottom")
    ax.add_patch(FancyArrowPatch((10.35, top - 0.1), (10.35, 0.1), arrowstyle="-|>", mutation_scale=14,
                                 color="tab:blue"))
    ax.text(10.5, top / 2, "a request goes down", rotation=-90, va="center", fontsize=8, color="tab:blue")
    ax.add_patch(FancyArrowPatch((10.95, 0.1), (10.95, top - 0.1), arrowstyle="-|>", mutation_scale=14,
                                 color="tab:red"))
    ax.text(11.1, top / 2, "tokens come back up", rotation=90, va="center", fontsize=8, color="tab:red")
    ax.set_xlim(-0.1, 11.5)
    ax.set_ylim(-0.1, top + 0.6)
    ax.axis("off")
    ax.set_title("The five layers of LLM infrastructure")
    return ax


def plot_attention_share(models: Sequence[str] = ("llama-3-8b", "llama-3-70b", "llama-3-405b"),
                         seq_lens: Sequence[int] = (2048, 4096, 8192, 16384, 32768, 65536, 131072), ax=None):
    """Share of training FLOPs per token spent on attention scores, 12LHQT / (6N + 12LHQT),
    against sequence length (log scale) for catalog `models`. Returns the Axes."""
    import matplotlib.pyplot as plt

    lengths = list(seq_lens)
    if not lengths:
        raise ValueError("seq_lens must be a non-empty sequence of ints >= 1")
    for t in lengths:
        positive_int("seq_lens entry", t)
    specs = [_spec(m) for m in models]
    if not specs:
        raise ValueError("models must name at least one catalog model")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    for spec in specs:
        ax.plot(lengths, [100 * attention_share(spec, t) for t in lengths], "o-", label=spec.name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [f"{t // 1024}K" for t in lengths])
    ax.set_ylim(0, 100)
    ax.set_xlabel("training sequence length T (tokens)")
    ax.set_ylabel("attention share of FLOPs/token (%)")
    ax.set_title("12LHQT / (6N + 12LHQT): full score matrix, forward + backward")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return ax


_TIER_STYLE = {"gpt-4-class": ("tab:blue", "o"), "gpt-3.5-class": ("tab:orange", "s"),
               "reasoning": ("tab:green", "^")}


def plot_price_history(ax=None, input_share: float = 0.75, annotate: bool = True):
    """Log-scale plot of blended list price (USD per million tokens) against date, by tier,
    with the fitted trend line of the GPT-4-class and GPT-3.5-class tiers. Returns the Axes."""
    import matplotlib.pyplot as plt

    if not 0.0 <= input_share <= 1.0:
        raise ValueError(f"input_share must be between 0 and 1, got {input_share}")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    for tier in TIERS:
        pts = price_history(tier)
        color, marker = _TIER_STYLE[tier]
        xs = [p.year for p in pts]
        ys = [blended_price(p, input_share) for p in pts]
        ax.scatter(xs, ys, color=color, marker=marker, s=45, label=tier, zorder=3)
        if annotate:
            for p, x, y in zip(pts, xs, ys):
                ax.annotate(p.model.split(" (")[0], (x, y), fontsize=7, xytext=(4, 3),
                            textcoords="offset points")
        if len(pts) >= 3:
            factor, _ = fit_price_trend(pts, input_share)
            x0, x1 = min(xs), max(xs)
            y_fit = 10 ** (sum(math.log10(y) for y in ys) / len(ys))
            x_mid = sum(xs) / len(xs)
            ax.plot([x0, x1], [y_fit * factor ** (x0 - x_mid), y_fit * factor ** (x1 - x_mid)],
                    color=color, linestyle="--", linewidth=1,
                    label=f"{tier} trend: x{factor:.2f} per year")
    ax.set_yscale("log")
    ax.set_xlabel("date the price took effect (year)")
    ax.set_ylabel(f"USD per million tokens ({input_share:.0%} input)")
    ax.set_title("API list price of a token, by model tier")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return ax


def plot_training_costs(estimates: Sequence[TrainingEstimate], ax=None):
    """Horizontal bars of estimated training cost (USD, log scale) for each estimate,
    labelled with GPU-hours. Returns the Axes."""
    import matplotlib.pyplot as plt

    ests = list(estimates)
    if not ests or not all(isinstance(e, TrainingEstimate) for e in ests):
        raise ValueError("estimates must be a non-empty sequence of TrainingEstimate")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.5 * len(ests) + 1.5))
    names = [e.model for e in ests]
    costs = [e.cost_usd for e in ests]
    ax.barh(names, costs, color="tab:blue")
    for i, e in enumerate(ests):
        ax.text(e.cost_usd * 1.1, i, f"{e.gpu_hours / 1e6:.2f}M GPU-h, ${e.cost_usd / 1e6:.1f}M",
                va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(min(costs) / 3, max(costs) * 10)
    ax.invert_yaxis()
    ax.set_xlabel("estimated pre-training cost (USD, log scale)")
    first = ests[0]
    ax.set_title(f"6ND on {first.accelerator} {first.precision} at MFU {first.mfu:.0%}, "
                 f"${first.usd_per_gpu_hour:.2f}/GPU-hour")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return ax


def plot_cost_vs_mfu(total_flops: float, peak_flops_per_s: float, usd_per_gpu_hour: float,
                     mfu_marker: float | None = None, ax=None):
    """Training cost (USD) as MFU goes from 10% to 70%, for a fixed FLOP budget. Returns the Axes."""
    import matplotlib.pyplot as plt

    positive_number("total_flops", total_flops)
    positive_number("peak_flops_per_s", peak_flops_per_s)
    positive_number("usd_per_gpu_hour", usd_per_gpu_hour)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    mfus = [0.10 + 0.01 * i for i in range(61)]
    costs = [training_cost_usd(gpu_hours(total_flops, peak_flops_per_s, m), usd_per_gpu_hour) / 1e6
             for m in mfus]
    ax.plot([100 * m for m in mfus], costs, color="tab:blue")
    if mfu_marker is not None:
        _fraction("mfu_marker", mfu_marker)
        c = training_cost_usd(gpu_hours(total_flops, peak_flops_per_s, mfu_marker), usd_per_gpu_hour) / 1e6
        ax.scatter([100 * mfu_marker], [c], color="tab:red", zorder=3)
        ax.annotate(f"${c:.1f}M at {mfu_marker:.0%}", (100 * mfu_marker, c), xytext=(6, 6),
                    textcoords="offset points", fontsize=8)
    ax.set_xlabel("model FLOPs utilization (%)")
    ax.set_ylabel("training cost (million USD)")
    ax.set_title(f"{total_flops:.2e} FLOPs at ${usd_per_gpu_hour:.2f}/GPU-hour")
    ax.grid(True, alpha=0.3)
    return ax


def plot_serving_cost(model: str = "llama-3-8b", accelerator: str = "H100-SXM",
                      batch_sizes: Sequence[int] = (1, 4, 16, 64, 256, 1024), *, n_gpus: int = 1,
                      usd_per_gpu_hour: float = 2.0, ax=None):
    """Best-case USD per million output (decode) tokens against decode batch size, with the
    prefill (input) cost as a horizontal line, from `estimate_serving`. Returns the Axes."""
    import matplotlib.pyplot as plt

    batches = list(batch_sizes)
    if not batches or any(isinstance(b, bool) or not isinstance(b, numbers.Integral) or b < 1 for b in batches):
        raise ValueError(f"batch_sizes must be a non-empty sequence of ints >= 1, got {batch_sizes!r}")
    rows = [estimate_serving(model, accelerator, n_gpus=n_gpus, batch_size=b, usd_per_gpu_hour=usd_per_gpu_hour)
            for b in batches]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.loglog(batches, [r.usd_per_million_output for r in rows], "o-", color="tab:blue",
              label="output tokens (decode)")
    ax.axhline(rows[0].usd_per_million_input, color="tab:orange", linestyle="--",
               label="input tokens (prefill, 50% MFU)")
    for b, r in zip(batches, rows):
        ax.annotate(r.decode_bound, (b, r.usd_per_million_output), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xlabel("decode batch size (sequences per step)")
    ax.set_ylabel("USD per million tokens (best case)")
    ax.set_title(f"{rows[0].model} on {n_gpus} x {rows[0].accelerator} at ${usd_per_gpu_hour:.2f}/GPU-hour")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax
