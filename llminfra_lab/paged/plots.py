"""The chapter's figures: the block-table schematic, KV memory by use, batch size over time, prefix hits."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, Rectangle

__all__ = ["plot_block_table_schematic", "plot_memory_breakdown", "plot_batch_timeline", "plot_prefix_hit_rates"]

_COLORS = {"tokens": "#4c72b0", "reserved": "#dd8452", "internal": "#c44e52", "external": "#8c8c8c"}


def plot_block_table_schematic(block_size: int = 4):
    """Two sequences (B forked from A) whose logical blocks map through block tables into one pool."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 7.5)
    ax.axis("off")
    seqs = {"A": ([5, 1, 7], 10, "#4c72b0"), "B (fork of A)": ([5, 1, 3], 11, "#55a868")}
    pool_y, pool_x0, width = 0.8, 1.0, 1.1
    ax.text(pool_x0, pool_y + 1.25, "physical block pool (shared by all sequences)", fontsize=9)
    for b in range(9):
        ax.add_patch(Rectangle((pool_x0 + b * width, pool_y), width * 0.92, 0.9, fc="#f0f0f0", ec="black"))
        ax.text(pool_x0 + b * width + 0.45, pool_y - 0.3, f"#{b}", ha="center", fontsize=8)
    for row, (name, (table, length, color)) in enumerate(seqs.items()):
        y = 5.6 - row * 2.1
        ax.text(0.1, y + 0.35, f"seq {name}\n{length} tokens", fontsize=9, va="center")
        for i, phys in enumerate(table):
            filled = min(block_size, length - i * block_size)
            x = 2.6 + i * 1.5
            ax.add_patch(Rectangle((x, y), 1.3, 0.7, fc=color, alpha=0.25 + 0.6 * filled / block_size, ec="black"))
            ax.text(x + 0.65, y + 0.35, f"L{i}\u2192#{phys}\n{filled}/{block_size}", ha="center", va="center",
                    fontsize=8)
            px = pool_x0 + phys * width + 0.45
            ax.add_patch(Rectangle((pool_x0 + phys * width, pool_y), width * 0.92, 0.9, fc=color, alpha=0.45,
                                   ec="black"))
            ax.add_patch(FancyArrowPatch((x + 0.65, y), (px, pool_y + 0.9), arrowstyle="->", color=color,
                                         mutation_scale=10, lw=1))
    ax.text(7.6, 5.9, "blocks #5, #1: shared\n(reference count 2)\nB's write into its last block\n"
            "copied #7 to #3 (copy-on-write)", fontsize=8.5, va="top")
    ax.set_title("PagedAttention: block tables map logical blocks to physical blocks")
    return fig


def plot_memory_breakdown(fractions: dict[str, dict[str, float]]):
    """Stacked bars: share of held KV slots that hold tokens, are reserved, or are fragmented, per scheme."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    names = list(fractions)
    left = [0.0] * len(names)
    for part in ("tokens", "reserved", "internal", "external"):
        vals = [100 * fractions[n].get(part, 0.0) for n in names]
        ax.barh(names, vals, left=left, color=_COLORS[part], label=part if part != "tokens" else "token states")
        for i, v in enumerate(vals):
            if part == "tokens":
                ax.text(left[i] + 1, i, f"{v:.1f}%", va="center", color="white", fontsize=8)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the KV slots the scheme holds (%), time-averaged")
    ax.legend(loc="lower right", fontsize=8, ncol=2)
    ax.set_title("KV cache memory: token states vs reservation and fragmentation")
    fig.tight_layout()
    return fig


def plot_batch_timeline(batch_sizes: dict[str, list[int]]):
    """Running sequences per iteration for each policy on the same trace."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for name, sizes in batch_sizes.items():
        ax.plot(range(len(sizes)), sizes, label=f"{name} ({len(sizes)} iterations)", lw=1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("sequences in the batch")
    ax.legend(fontsize=8)
    ax.set_title("Static vs continuous batching on the same trace")
    fig.tight_layout()
    return fig


def plot_prefix_hit_rates(rates: dict[str, dict[str, float]]):
    """Grouped bars: prefix-cache hit rate (share of prompt tokens) per trace and cache."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    traces = list(rates)
    caches = list(next(iter(rates.values())))
    w = 0.8 / len(caches)
    for j, cache in enumerate(caches):
        xs = [i + j * w for i in range(len(traces))]
        vals = [100 * rates[t][cache] for t in traces]
        ax.bar(xs, vals, width=w, label=cache)
        for x, v in zip(xs, vals):
            ax.text(x, v + 1, f"{v:.0f}", ha="center", fontsize=8)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(traces))], traces)
    ax.set_ylabel("prompt tokens found (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("Prefix caching: hashed blocks vs radix tree")
    fig.tight_layout()
    return fig
