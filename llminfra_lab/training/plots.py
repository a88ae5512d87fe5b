"""The figures of chapter 5: schematics of number formats and BPE merges, and data plots.

    plot_float_formats    the bit layouts of FP32, BF16, FP16, FP8 E4M3 and E5M2 (a schematic)
    plot_bpe_merges       a worked BPE merge table on a toy corpus (a schematic)
    plot_lr_schedule      the learning rate of every step of a TrainConfig
    plot_loss_curves      training and held-out loss against tokens
    plot_scaling_fit      a sweep's held-out losses with a fitted law's curves
    plot_compute_frontier N_opt(C) of several laws, with real training runs marked
    plot_lsh_curve        the LSH banding S-curve
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from llminfra_lab.checks import positive_int
from llminfra_lab.tokenizer import bpe_merge_table, pretokenize
from llminfra_lab.training.accounting import FLOAT_FORMATS, float_format
from llminfra_lab.training.dedup import lsh_candidate_probability
from llminfra_lab.training.loop import TrainConfig
from llminfra_lab.training.optim import lr_at
from llminfra_lab.training.scaling import (
    BESIROGLU_REFIT,
    HOFFMANN_APPROACH3,
    HOFFMANN_APPROACH3_UNROUNDED,
    ChinchillaLaw,
    compute_optimal,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["TOY_BPE_TEXT", "plot_float_formats", "plot_bpe_merges", "plot_lr_schedule", "plot_loss_curves", "plot_scaling_fit",
           "plot_compute_frontier", "plot_lsh_curve"]


def plot_float_formats(formats: Sequence[str] = tuple(FLOAT_FORMATS), ax: Axes | None = None) -> Axes:
    """The bit layout of each format, one row of boxes: sign, exponent, mantissa.

    Each row is labelled with its largest value and its smallest normal value, computed
    from the bits by `float_format`. A schematic: the boxes are bits, not data.
    """
    import matplotlib.pyplot as plt  # optional: only the figures need it
    from matplotlib.patches import Rectangle

    formats = list(formats)
    if not formats or any(f not in FLOAT_FORMATS for f in formats):
        raise ValueError(f"formats must be a non-empty list of {sorted(FLOAT_FORMATS)}, got {formats!r}")
    ax = ax or plt.subplots(figsize=(9, 0.65 * len(formats) + 0.8))[1]
    colors = {"sign": "#d62728", "exponent": "#1f77b4", "mantissa": "#2ca02c"}
    width = 32 / 34                                    # one bit; FP32's 32 bits fill the row
    for row, name in enumerate(formats):
        f = float_format(name)
        y = len(formats) - 1 - row
        x = 0.0
        for part in ("sign", "exponent", "mantissa"):
            for _ in range(f[part]):
                ax.add_patch(Rectangle((x, y + 0.15), width, 0.7, facecolor=colors[part], edgecolor="white", alpha=0.85))
                x += width
            if f[part]:
                ax.text(x - f[part] * width / 2, y + 0.5, f"{f[part]}" if f[part] > 1 else "s", ha="center",
                        va="center", color="white", fontsize=8, fontweight="bold")
        ax.text(-0.5, y + 0.5, f"{name.upper().replace('_', ' ')} ({f['bits']} bits)", ha="right", va="center", fontsize=9)
        ax.text(x + 0.6, y + 0.5, f"max {f['max']:.4g}, min normal {f['min_normal']:.3g}", ha="left", va="center",
                fontsize=8)
    for part, color in colors.items():
        ax.plot([], [], "s", color=color, label=part)
    ax.set_xlim(-10, 46)
    ax.set_ylim(-0.6, len(formats) + 0.1)
    ax.axis("off")
    ax.legend(loc="lower center", fontsize=8, ncol=3, frameon=False)
    ax.set_title("Bit layouts: the exponent buys range, the mantissa buys precision")
    return ax


TOY_BPE_TEXT = " low" * 5 + " lower" * 2 + " newest" * 6 + " widest" * 3   # Sennrich et al. (2016)'s words


def plot_bpe_merges(text: str = TOY_BPE_TEXT, n_merges: int = 6, ax: Axes | None = None) -> Axes:
    """A worked BPE merge table: the distinct words of a toy text, spelled in tokens, after
    each of the first n_merges merges, with the pair merged and its count (a schematic)."""
    import matplotlib.pyplot as plt  # optional: only the figures need it
    from matplotlib.patches import Rectangle

    rows = bpe_merge_table(text, n_merges)
    counts = Counter(piece.replace(" ", "Ġ") for piece in pretokenize(text))
    start = [" ".join(word) for word in counts]
    ax = ax or plt.subplots(figsize=(9, 0.42 * (len(rows) + 2) + 0.6))[1]
    cols = ["merge", "pair (count)"] + [f"{word} x{n}" for word, n in counts.items()]
    table = [["start", ""] + start]
    for r in rows:
        table.append([str(r["rank"] + 1), f"{r['left']} + {r['right']} ({r['count']})"] + r["words"])
    widths = [1.1, 2.6] + [2.4] * len(start)
    lefts = [sum(widths[:j]) for j in range(len(widths))]
    for i, row in enumerate([cols] + table):
        y = len(table) - i
        for j, value in enumerate(row):
            color = "#dddddd" if i == 0 else "#fff2cc" if j == 1 and i > 1 else "white"
            ax.add_patch(Rectangle((lefts[j], y), widths[j], 1, facecolor=color, edgecolor="grey", lw=0.6))
            ax.text(lefts[j] + widths[j] / 2, y + 0.5, value, ha="center", va="center", fontsize=8,
                    family="monospace" if i > 0 and j >= 1 else None)
    ax.set_xlim(0, sum(widths))
    ax.set_ylim(0, len(table) + 1)
    ax.axis("off")
    ax.set_title("BPE on a toy corpus: count pairs, merge the most frequent, repeat (Ġ is a space)")
    return ax


def plot_lr_schedule(cfg: TrainConfig | None = None, ax: Axes | None = None) -> Axes:
    """The learning rate of every step of a TrainConfig: warm-up, then cosine decay."""
    import matplotlib.pyplot as plt  # optional: only the figures need it

    cfg = cfg or TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    steps = list(range(cfg.steps))
    ax.plot(steps, [lr_at(s, max_lr=cfg.max_lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps,
                          min_lr=cfg.min_lr) for s in steps])
    ax.axvline(cfg.warmup_steps, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="optimizer step", ylabel="learning rate", title="Linear warm-up, then cosine decay")
    return ax


def plot_loss_curves(histories: dict, ax: Axes | None = None, smooth: int = 10) -> Axes:
    """Training loss (a moving average over `smooth` steps) against tokens, one line per run."""
    import matplotlib.pyplot as plt  # optional: only the figures need it

    if not isinstance(histories, dict) or not histories:
        raise ValueError("histories must be a non-empty dict {label: history from train()}")
    positive_int("smooth", smooth)
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for label, hist in histories.items():
        loss = torch.tensor(hist["loss"], dtype=torch.float64)
        k = min(smooth, len(loss))
        avg = torch.nn.functional.avg_pool1d(loss[None, None], k, stride=1)[0, 0]
        ax.plot(hist["tokens"][k - 1:], avg.tolist(), label=f"{label} (train)")
        if hist.get("val_loss"):
            toks = hist.get("eval_tokens") or [hist["tokens"][s] for s in hist["eval_step"]]
            ax.plot(toks, hist["val_loss"], "o--", ms=3, label=f"{label} (held out)")
    ax.set(xlabel="training tokens", ylabel="loss (nats/token)", title="Loss curves")
    ax.legend(fontsize=8)
    return ax


def plot_scaling_fit(sweep: dict, law: ChinchillaLaw, ax: Axes | None = None) -> Axes:
    """Held-out loss of each sweep run against its parameters, with the fitted law's curves."""
    import matplotlib.pyplot as plt  # optional: only the figures need it

    if not isinstance(law, ChinchillaLaw):
        raise ValueError(f"law must be a ChinchillaLaw, got {type(law).__name__}")
    runs = sweep["runs"] if isinstance(sweep, dict) else None
    if not runs:
        raise ValueError("sweep must be a dict with a non-empty 'runs' list (see load_scaling_sweep)")
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    budgets = sorted({r["n_tokens"] for r in runs})
    colors = plt.cm.viridis([i / max(1, len(budgets) - 1) for i in range(len(budgets))])
    n_lo, n_hi = min(r["n_params"] for r in runs), max(r["n_params"] for r in runs)
    grid = torch.logspace(math.log10(n_lo / 1.5), math.log10(n_hi * 1.5), 100, dtype=torch.float64)
    for d, c in zip(budgets, colors):
        pts = sorted((r["n_params"], r["val_loss"]) for r in runs if r["n_tokens"] == d)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", color=c, label=f"D = {d:.2g} tokens")
        ax.plot(grid.tolist(), law.loss(grid, float(d)).tolist(), "-", color=c, lw=1)
    ax.set_xscale("log")
    ax.set(xlabel="parameters N", ylabel="held-out loss (nats/token)",
           title=f"Fit: E={law.E:.2f}, A={law.A:.3g}, B={law.B:.3g}, alpha={law.alpha:.2f}, beta={law.beta:.2f}")
    ax.legend(fontsize=8)
    return ax


def plot_compute_frontier(laws: dict | None = None, flops_range: tuple[float, float] = (1e18, 1e26),
                          ax: Axes | None = None, models: bool = True) -> Axes:
    """Compute-optimal parameters N_opt(C) of each law, with real training runs marked.

    The marked runs (N, C = 6 N D) are Gopher and Chinchilla (Hoffmann et al. 2022), Llama 3
    405B (Grattafiori et al. 2024) and DeepSeek-V3 with its 37B active parameters (DeepSeek-AI 2024).
    """
    import matplotlib.pyplot as plt  # optional: only the figures need it

    laws = laws if laws is not None else {
        "Hoffmann approach 3 (rounded)": HOFFMANN_APPROACH3,
        "Hoffmann approach 3 (unrounded)": HOFFMANN_APPROACH3_UNROUNDED,
        "Besiroglu et al. refit": BESIROGLU_REFIT,
    }
    if not isinstance(laws, dict) or not laws or not all(isinstance(v, ChinchillaLaw) for v in laws.values()):
        raise ValueError("laws must be a non-empty dict {label: ChinchillaLaw}")
    lo, hi = flops_range
    if not (0 < lo < hi):
        raise ValueError(f"flops_range must be (low, high) with 0 < low < high, got {flops_range!r}")
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    cs = torch.logspace(math.log10(lo), math.log10(hi), 60, dtype=torch.float64).tolist()
    for label, law in laws.items():
        ax.plot(cs, [compute_optimal(law, c)[0] for c in cs], label=f"{label}: N ~ C^{law.a:.2f}")
    if models:
        for name, n, d in (("Gopher", 280e9, 300e9), ("Chinchilla", 70e9, 1.4e12),
                           ("Llama 3 405B", 405e9, 15.6e12), ("DeepSeek-V3 (active)", 37e9, 14.8e12)):
            ax.plot(6 * n * d, n, "k*", ms=8)
            ax.annotate(name, (6 * n * d, n), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="training compute C (FLOPs)", ylabel="compute-optimal parameters N_opt",
           title="Compute-optimal model size under C = 6ND")
    ax.legend(fontsize=7, loc="upper left")
    return ax



def plot_lsh_curve(bands_rows: Sequence[tuple[int, int]] = ((16, 8), (32, 4), (8, 16)), ax: Axes | None = None) -> Axes:
    """Probability that two documents become dedup candidates, against their Jaccard similarity."""
    import matplotlib.pyplot as plt  # optional: only the figures need it

    if not bands_rows or not all(isinstance(br, (tuple, list)) and len(br) == 2 for br in bands_rows):
        raise ValueError("bands_rows must be a non-empty list of (bands, rows) pairs")
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    s = [i / 200 for i in range(201)]
    for b, r in bands_rows:
        ax.plot(s, [lsh_candidate_probability(x, b, r) for x in s], label=f"{b} bands x {r} rows ({b * r} hashes)")
    ax.set(xlabel="Jaccard similarity of the two documents' shingles", ylabel="P(candidate pair)",
           title="MinHash LSH: the banding S-curve")
    ax.legend(fontsize=8)
    return ax
