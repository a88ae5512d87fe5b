"""The figures of chapter 17: the pipeline (schematic), the entity graph, retrievers and chunk sizes."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt

from llminfra_lab.checks import positive_int
from llminfra_lab.rag.graph import entity_graph
from llminfra_lab.shipped import load_json

__all__ = ["load_results", "plot_pipeline", "plot_entity_graph", "plot_retrievers", "plot_chunk_size"]


def load_results(path=None) -> dict:
    """The shipped results of benchmarks/rag_eval.py (llminfra_lab/assets/rag/eval.json)."""
    return load_json("rag/eval.json", path, made_by="benchmarks/rag_eval.py")


def plot_pipeline(ax=None):
    """Schematic: offline indexing (parse, chunk, embed, index) and the online query path
    (rewrite, sparse + dense retrieval, fusion, rerank, generate with citations)."""
    ax = ax or plt.subplots(figsize=(10, 3.8))[1]
    offline = ["Markdown /\nHTML pages", "parse into\nsections", "chunk", "embed\n(MiniLM)", "BM25 index +\nvectors"]
    online = ["query", "rewrite /\nHyDE / graph", "BM25 | dense", "fuse\n(RRF k=60)", "rerank\n(MaxSim)", "LLM answer\n+ citations"]

    def row(labels, y, color):
        xs = [i * (10 / len(labels)) + 0.2 for i in range(len(labels))]
        w = 10 / len(labels) - 0.5
        for x, label in zip(xs, labels):
            ax.add_patch(plt.Rectangle((x, y), w, 1.0, facecolor=color, edgecolor="black"))
            ax.text(x + w / 2, y + 0.5, label, ha="center", va="center", fontsize=8)
        for x0, x1 in zip(xs[:-1], xs[1:]):
            ax.annotate("", xy=(x1, y + 0.5), xytext=(x0 + w, y + 0.5), arrowprops={"arrowstyle": "->"})
        return xs, w

    xs_off, w = row(offline, 2.2, "#cfe2f3")
    xs_on, w_on = row(online, 0.2, "#fce5cd")
    ax.annotate("", xy=(xs_on[2] + w_on / 2, 1.2), xytext=(xs_off[-1] + w / 2, 2.2),
                arrowprops={"arrowstyle": "->", "linestyle": "--"})
    ax.text(0.2, 3.45, "offline: once per corpus change", fontsize=9, style="italic")
    ax.text(0.2, 1.45, "online: per query", fontsize=9, style="italic")
    ax.set_xlim(0, 10.3)
    ax.set_ylim(0, 3.8)
    ax.axis("off")
    ax.set_title("A retrieval-augmented generation pipeline")
    return ax


def plot_entity_graph(center: str = "KV cache", hops: int = 2, ax=None):
    """The glossary entity graph around `center`, out to `hops` links, on concentric rings."""
    positive_int("hops", hops)
    graph = entity_graph()
    if center not in graph:
        raise KeyError(f"{center!r} is not a glossary term; e.g. {sorted(graph)[:5]}")
    rings, seen = [[center]], {center}
    for _ in range(hops):
        nxt = sorted({n for node in rings[-1] for n in graph[node]} - seen)
        seen |= set(nxt)
        rings.append(nxt)
    pos = {}
    for r, ring in enumerate(rings):
        for i, node in enumerate(ring):
            angle = 2 * math.pi * i / max(len(ring), 1) + 0.3 * r
            pos[node] = (r * math.cos(angle), r * math.sin(angle))
    ax = ax or plt.subplots(figsize=(7.5, 7.5))[1]
    for a in pos:
        for b in graph[a]:
            if b in pos and a < b:
                ax.plot([pos[a][0], pos[b][0]], [pos[a][1], pos[b][1]], color="grey", lw=0.6, zorder=1)
    for node, (x, y) in pos.items():
        ax.scatter([x], [y], s=60 if node != center else 160, color="#e69138" if node == center else "#6fa8dc", zorder=2)
        ax.text(x, y + 0.07, node, ha="center", fontsize=7)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"Glossary entity graph around '{center}' ({len(pos)} terms, {hops} hops)")
    return ax


def plot_retrievers(results: dict | None = None, metric: str = "recall@5", ax=None):
    """One bar per retriever (and fusion) for `metric` on the question set."""
    results = results or load_results()
    table = results["retrievers"]
    ax = ax or plt.subplots(figsize=(8, 3.6))[1]
    names = list(table)
    ax.bar(range(len(names)), [table[n][metric] for n in names], color="#6fa8dc")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} on {results['n_questions']} questions about this book")
    return ax


def plot_chunk_size(results: dict | None = None, metric: str = "recall@5", ax=None):
    """Retrieval quality against chunk size for fixed windows (BM25 and dense)."""
    results = results or load_results()
    sweep = results["chunk_sweep"]
    ax = ax or plt.subplots(figsize=(6.5, 3.6))[1]
    sizes = [row["size"] for row in sweep]
    for method, style in (("bm25", "o-"), ("dense", "s--")):
        ax.plot(sizes, [row[method][metric] for row in sweep], style, label=method)
    ax.axvline(results.get("truncation_words", 220), color="grey", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("chunk size (words, 25% overlap)")
    ax.set_ylabel(metric)
    ax.set_title("Chunk size against retrieval quality (fixed windows)")
    ax.legend()
    return ax
