"""BM25 of chapter 17 against rank_bm25.BM25Okapi: same scores, and how much faster.

    python benchmarks/bench_bm25.py          # writes llminfra_lab/assets/rag/bm25_bench.json

Both index the shipped chunks of the book (tokenized the same way) with k1 = 1.5, b = 0.75,
epsilon = 0.25 and score every question of the question set against every chunk. Reports
the largest score difference, build and query times (best of 5) and their ratios.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi

from llminfra_lab.rag import BM25, load_index, load_questions, tokenize

OUT = Path(__file__).resolve().parents[1] / "llminfra_lab" / "assets" / "rag" / "bm25_bench.json"


def best(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    chunks, _ = load_index()
    corpus = [tokenize(c.indexed) for c in chunks]
    queries = [tokenize(q["question"]) for q in load_questions()]
    build_ref, ref = best(lambda: BM25Okapi(corpus))
    build_ours, ours = best(lambda: BM25(corpus))
    query_ref, s_ref = best(lambda: np.stack([ref.get_scores(q) for q in queries]))
    query_ours, s_ours = best(lambda: np.stack([ours.scores(q) for q in queries]))
    res = {"n_docs": len(corpus), "n_queries": len(queries), "max_abs_diff": float(np.abs(s_ref - s_ours).max()),
           "build_s": {"rank_bm25": build_ref, "ours": build_ours},
           "query_s_all": {"rank_bm25": query_ref, "ours": query_ours},
           "query_speedup": query_ref / query_ours, "build_speedup": build_ref / build_ours,
           "machine": f"{platform.machine()}, {platform.python_version()}"}
    print(json.dumps(res, indent=1))
    OUT.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
