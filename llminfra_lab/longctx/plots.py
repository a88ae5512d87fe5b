"""The figures of chapter 16: RoPE scaling per pair, perplexity against length, a ring schedule."""
from __future__ import annotations

import matplotlib.pyplot as plt

from llminfra_lab.checks import positive_int
from llminfra_lab.longctx.rope import inverse_frequencies
from llminfra_lab.longctx.sequence_parallel import causal_work, shard_positions
from llminfra_lab.shipped import load_json

__all__ = ["load_results", "plot_rope_scaling", "plot_perplexity_vs_length", "plot_ring_schedule"]


def load_results() -> dict:
    """The shipped results of benchmarks/longctx_extend.py (llminfra_lab/assets/longctx_results.json)."""
    return load_json("longctx_results.json")


def plot_rope_scaling(head_dim: int = 128, factor: float = 8.0, original_len: int = 8192,
                      theta: float = 500000.0, ax=None):
    """Ratio new/old inverse frequency per rotary pair for each method (1 = unchanged, 1/s = interpolated)."""
    positive_int("head_dim", head_dim)
    ax = ax or plt.subplots(figsize=(6.5, 3.6))[1]
    base, _ = inverse_frequencies("none", head_dim, theta=theta)
    for method in ("pi", "ntk", "yarn", "llama3"):
        inv, _ = inverse_frequencies(method, head_dim, theta=theta, factor=factor, original_len=original_len)
        ax.plot(range(head_dim // 2), (inv / base).tolist(), label=method, lw=2)
    ax.set_yscale("log")
    ax.set_xlabel("rotary pair i (fast -> slow)")
    ax.set_ylabel("new / original frequency")
    ax.set_title(f"RoPE scaling by pair: s = {factor:g}, L = {original_len}, theta = {theta:g}")
    ax.legend()
    return ax


def plot_perplexity_vs_length(results: dict | None = None, ax=None):
    """Held-out perplexity against context length per method (zero-shot solid, fine-tuned dashed)."""
    results = results or load_results()
    ax = ax or plt.subplots(figsize=(6.5, 3.8))[1]
    lengths = results["lengths"]
    for method, ppl in results["zero_shot"].items():
        ax.plot(lengths, ppl, marker="o", label=method)
    for method, ppl in results["fine_tuned"].items():
        ax.plot(lengths, ppl, marker="s", ls="--", label=f"{method} + fine-tune")
    ax.axvline(results["original_len"], color="grey", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("held-out perplexity")
    ax.set_title("Tiny GPT (trained on 128 tokens) past its training length")
    ax.legend(fontsize=8)
    return ax


def plot_ring_schedule(seq_len: int = 16, world_size: int = 4, ax=None):
    """Schematic: which (query, key) blocks of the causal mask each rank computes, contiguous vs zigzag."""
    positive_int("seq_len", seq_len)
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(8, 4))
    colors = plt.get_cmap("tab10")
    for panel, balance in zip(ax, (False, True)):
        for rank in range(world_size):
            for qp in shard_positions(seq_len, world_size, rank, balance).tolist():
                for kp in range(qp + 1):
                    panel.add_patch(plt.Rectangle((kp, qp), 1, 1, color=colors(rank), alpha=0.8))
        work = causal_work(seq_len, world_size, balance).sum(1).tolist()
        panel.set_xlim(0, seq_len)
        panel.set_ylim(seq_len, 0)
        panel.set_aspect("equal")
        panel.set_xlabel("key position")
        panel.set_ylabel("query position")
        panel.set_title(("zigzag" if balance else "contiguous") + f": pairs per rank {work}", fontsize=9)
    return ax
