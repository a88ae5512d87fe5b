"""Figures of chapter 13: the engine's architecture and the load generator's results."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

from llminfra_lab import figures

__all__ = ["plot_engine_schematic", "plot_latency_percentiles", "plot_throughput_goodput"]


def _box(ax, x, y, w, h, text, color):
    figures.box(ax, x, y, w, h, text, color, rounded=True, fontsize=8.5, lw=1.2)


def _arrow(ax, a, b, text="", dy=0.0):
    figures.arrow(ax, a, b, text=text, text_dy=0.12 + dy)


def plot_engine_schematic(ax=None):
    """The serving path: HTTP clients, the API server's event loop, the engine thread's step loop."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4.2))
    ax.set_xlim(0, 10.4)
    ax.set_ylim(0, 4.6)
    ax.axis("off")
    _box(ax, 0.1, 1.6, 1.4, 1.2, "clients\n(openai SDK,\nload generator)", "#e8eef7")
    ax.add_patch(FancyBboxPatch((2.0, 0.3), 2.6, 4.0, boxstyle="round,pad=0.02", fc="none", ec="#4c72b0",
                                lw=1.2, ls="--"))
    ax.text(3.3, 4.1, "API server (asyncio)", ha="center", fontsize=9, color="#4c72b0")
    _box(ax, 2.2, 2.9, 2.2, 0.9, "validate -> 4xx JSON\ntokenize, chat template", "#dde8d5")
    _box(ax, 2.2, 1.7, 2.2, 0.9, "per-request queue\nstop strings, detokenize", "#dde8d5")
    _box(ax, 2.2, 0.5, 2.2, 0.9, "SSE stream / JSON\n/metrics  /health", "#dde8d5")
    ax.add_patch(FancyBboxPatch((5.2, 0.3), 5.0, 4.0, boxstyle="round,pad=0.02", fc="none", ec="#c44e52",
                                lw=1.2, ls="--"))
    ax.text(7.7, 4.1, "engine thread: step() in a loop", ha="center", fontsize=9, color="#c44e52")
    _box(ax, 5.4, 2.9, 2.1, 0.9, "scheduler\n(who runs which tokens,\npreempt, admit)", "#f3dfd5")
    _box(ax, 7.9, 2.9, 2.1, 0.9, "paged KV pool\nblock tables,\nallocator", "#f3dfd5")
    _box(ax, 5.4, 1.2, 2.1, 0.9, "paged_forward\n(one batch: prefill\nchunks + decodes)", "#f3dfd5")
    _box(ax, 7.9, 1.2, 2.1, 0.9, "sampler: per-request\ntemperature, top-k/p,\nseeded generator", "#f3dfd5")
    _arrow(ax, (1.5, 2.4), (2.2, 3.3), "HTTP")
    _arrow(ax, (4.4, 3.35), (5.4, 3.35), "add", dy=-0.05)
    _arrow(ax, (6.45, 2.9), (6.45, 2.1))
    _arrow(ax, (7.5, 3.35), (7.9, 3.35))
    _arrow(ax, (7.5, 1.65), (7.9, 1.65))
    _arrow(ax, (8.95, 1.2), (4.4, 2.0), "RequestOutput (new tokens)", dy=-0.55)
    _arrow(ax, (3.3, 1.7), (3.3, 1.4))
    _arrow(ax, (2.2, 0.95), (1.5, 1.9), "tokens")
    ax.text(3.3, 0.05, "a client that disconnects -> abort -> its blocks go back to the pool", ha="center",
            fontsize=7.5, style="italic")
    ax.set_title("Inside the chapter's engine: one process, two threads, one KV pool")
    return ax


def plot_latency_percentiles(results: dict[str, dict], ax=None):
    """TTFT and TPOT p50/p90/p99 (ms) of each scheduler setting, from `loadgen.summarize` dicts."""
    if not isinstance(results, dict) or not results:
        raise ValueError("results must be a non-empty dict {setting name: summarize() dict}")
    if ax is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    else:
        axes = ax
    names = list(results)
    width = 0.8 / len(names)
    for j, metric in enumerate(("ttft", "tpot")):
        a = axes[j]
        for i, name in enumerate(names):
            vals = [1000 * (results[name].get(f"{metric}_p{q}_s") or 0.0) for q in (50, 90, 99)]
            a.bar([k + i * width for k in range(3)], vals, width, label=name)
        a.set_xticks([k + width * (len(names) - 1) / 2 for k in range(3)], ["p50", "p90", "p99"])
        a.set_ylabel("milliseconds")
        a.set_title("time to first token" if metric == "ttft" else "time per output token")
        a.legend(fontsize=8)
    return axes


def plot_throughput_goodput(results: dict[str, dict], ax=None):
    """Output tokens/s and goodput (requests/s within the SLO) of each scheduler setting."""
    if not isinstance(results, dict) or not results:
        raise ValueError("results must be a non-empty dict {setting name: summarize() dict}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.4))
    names = list(results)
    tok = [results[n]["throughput_tok_s"] for n in names]
    ax.bar(names, tok, color="#4c72b0")
    ax.set_ylabel("output tokens / s")
    ax2 = ax.twinx()
    ax2.plot(names, [results[n]["goodput_req_s"] for n in names], "o-", color="#c44e52", label="goodput")
    ax2.plot(names, [results[n]["throughput_req_s"] for n in names], "s--", color="0.4", label="requests / s")
    ax2.set_ylabel("requests / s")
    ax2.set_ylim(bottom=0)
    ax2.legend(fontsize=8, loc="upper left")
    ax.set_title("throughput and goodput by scheduler setting")
    return ax
