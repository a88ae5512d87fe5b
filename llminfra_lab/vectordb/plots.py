"""The chapter's figures: an HNSW drawn layer by layer (schematic), PQ's split of a vector,
and the recall-versus-throughput curves that benchmarks/vectordb_sweep.py ships."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from llminfra_lab import checks, shipped
from llminfra_lab.vectordb.hnsw import HNSW

__all__ = ["plot_hnsw_layers", "plot_pq_split", "plot_recall_curves", "load_sweep", "SWEEP_FILE"]

SWEEP_FILE = "vectordb/sweep.json"


def load_sweep(path: str | None = None) -> dict:
    """The shipped sweep (or the file at `path` that the reader regenerated)."""
    result = shipped.load_json(SWEEP_FILE, path, made_by="benchmarks/vectordb_sweep.py")
    if not {"datasets", "memory", "hnsw_vs_hnswlib"} <= set(result):
        raise ValueError("not a vectordb sweep: expected keys datasets, memory, hnsw_vs_hnswlib")
    return result


def plot_hnsw_layers(n: int = 80, M: int = 3, seed: int = 1):
    """A real HNSW over n random 2-D points, one panel per layer (top layer on the left),
    with one query's greedy descent marked. Schematic: small n, small M."""
    checks.positive_int("n", n)
    rng = np.random.default_rng(seed)
    points = rng.random((n, 2)).astype(np.float32)
    index = HNSW(2, M=M, ef_construction=16, seed=seed).add(points)
    layers = index.max_level + 1
    fig, axes = plt.subplots(1, layers, figsize=(3.2 * layers, 3.4))
    axes = np.atleast_1d(axes)
    query = np.array([0.8, 0.2], dtype=np.float32)
    ep = (float(((points[index.entry] - query) ** 2).sum()), index.entry)
    path = [ep[1]]
    for layer in range(index.max_level, 0, -1):
        ep = index._greedy(query, ep, layer)
        path.append(ep[1])
    for panel, layer in enumerate(range(index.max_level, -1, -1)):
        ax = axes[panel]
        members = [i for i, node in enumerate(index.links) if len(node) > layer]
        for i in members:
            for j in index.links[i][layer]:
                ax.plot(*points[[i, j]].T, color="0.75", lw=0.7, zorder=1)
        ax.scatter(*points.T, s=6, color="0.85", zorder=2)
        ax.scatter(*points[members].T, s=18, color="tab:blue", zorder=3)
        ax.scatter(*query, marker="*", s=150, color="tab:red", zorder=5, label="query")
        stop = path[min(panel + 1, len(path) - 1)]         # where the greedy walk on this layer ends
        ax.scatter(*points[stop], s=70, facecolors="none", edgecolors="tab:orange", lw=2, zorder=4,
                   label="entry of next layer" if layer else "start of the ef search")
        ax.set_title(f"layer {layer}: {len(members)} of {n} vectors")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[-1].legend(loc="upper left", fontsize=7)
    fig.suptitle(f"HNSW (M = {M}): sparse upper layers to zoom in, layer 0 (up to 2M = {2 * M} links) to search")
    fig.tight_layout()
    return fig


def plot_pq_split(dim: int = 32, m: int = 8, nbits: int = 8):
    """Schematic of product quantization: a dim-float vector cut into m sub-vectors, each
    replaced by a nbits-bit centroid id, and the ADC table a query builds."""
    checks.positive_int("dim", dim)
    checks.positive_int("m", m)
    fig, ax = plt.subplots(figsize=(9, 2.8))
    colours = plt.cm.tab10(np.arange(m) % 10)
    for j in range(m):
        ax.add_patch(plt.Rectangle((j * dim / m, 2), dim / m, 0.6, color=colours[j], alpha=0.6))
        ax.text((j + 0.5) * dim / m, 2.3, f"{dim // m} floats", ha="center", va="center", fontsize=7)
        ax.annotate("", xy=((j + 0.5) * dim / m, 1.05), xytext=((j + 0.5) * dim / m, 1.95),
                    arrowprops={"arrowstyle": "->", "color": colours[j]})
        ax.add_patch(plt.Rectangle((j * dim / m + dim / m * 0.2, 0.5), dim / m * 0.6, 0.5, color=colours[j]))
        ax.text((j + 0.5) * dim / m, 0.75, f"c{j}", ha="center", va="center", fontsize=8, color="white")
    ax.text(-0.5, 2.3, f"x: {dim} x 4 = {dim * 4} bytes", ha="right", va="center", fontsize=9)
    ax.text(-0.5, 0.75, f"code: {m} x {nbits} bits = {m * nbits // 8} bytes", ha="right", va="center", fontsize=9)
    ax.text(dim / 2, -0.1, f"query: table T[j, c] = |q_j - centroid_j,c|^2, shape ({m}, {2 ** nbits}); "
            f"distance to a code = T[0, c0] + ... + T[{m - 1}, c{m - 1}]", ha="center", fontsize=8)
    ax.set_xlim(-14, dim + 1)
    ax.set_ylim(-0.4, 2.9)
    ax.axis("off")
    ax.set_title(f"Product quantization, m = {m}, {nbits} bits: {dim * 4 // (m * nbits // 8)}x smaller")
    return fig


def plot_recall_curves(result: dict, dataset: str, x: str = "qps"):
    """Recall@10 against queries per second (x="qps", log scale) or against distance
    computations per query (x="distances", from-scratch indexes only) for one data set."""
    if x not in ("qps", "distances"):
        raise ValueError(f"x must be 'qps' or 'distances', got {x!r}")
    if dataset not in result["datasets"]:
        raise KeyError(f"unknown dataset {dataset!r}; valid: {sorted(result['datasets'])}")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, rows in result["datasets"][dataset]["curves"].items():
        rows = [r for r in rows if x in r]
        if not rows:
            continue
        style = "-o" if name.startswith("ours") else "--s"
        ax.plot([r[x] for r in rows], [r["recall"] for r in rows], style, ms=4, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("queries per second, one thread (log)" if x == "qps" else "distance computations per query (log)")
    ax.set_ylabel("recall@10")
    info = result["datasets"][dataset]
    ax.set_title(f"{dataset}: {info['n']:,} vectors of {info['dim']} dims, {info['n_queries']} queries")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig
