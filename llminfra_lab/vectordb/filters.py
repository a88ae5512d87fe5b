"""Filtered search and hybrid fusion.

A filter ("only documents the user may read", "only Chinese-language chunks") cuts the set
of allowed vectors. Three ways to combine it with an ANN index:

- pre-filter: exact search over the allowed vectors only. Always right; costs a scan of
  the allowed set, cheap only when that set is small.
- post-filter: ask the index for k' > k neighbours and drop the disallowed ones. Cheap,
  but when few vectors pass (low selectivity), fewer than k survive and recall collapses.
- in-graph: walk the graph as usual but admit only allowed vertices to the results
  (hnswlib's filter function, Qdrant's filterable HNSW). Holds recall until the allowed
  vertices are so sparse that the walk must cross many disallowed ones.

Hybrid (dense plus sparse) retrieval merges two ranked lists; reciprocal-rank fusion
(Cormack et al., 2009) scores a document by the sum of 1 / (k + rank) over the lists.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llminfra_lab import checks
from llminfra_lab.vectordb.exact import exact_search
from llminfra_lab.vectordb.hnsw import HNSW

__all__ = ["filtered_search", "reciprocal_rank_fusion", "FILTER_STRATEGIES"]

FILTER_STRATEGIES = ("pre", "post", "in_graph")


def filtered_search(index: HNSW, queries: np.ndarray, k: int, allowed: np.ndarray, strategy: str,
                    ef: int = 64, post_factor: int = 4) -> np.ndarray:
    """Ids (n_queries, k) of the nearest allowed vectors (-1 pads) by `strategy`:
    "pre" (exact over the allowed set), "post" (HNSW top post_factor * k, then filter), or
    "in_graph" (HNSW search that admits only allowed vertices to its results)."""
    if strategy not in FILTER_STRATEGIES:
        raise KeyError(f"unknown filter strategy {strategy!r}; valid: {list(FILTER_STRATEGIES)}")
    checks.positive_int("k", k)
    checks.positive_int("post_factor", post_factor)
    allowed = np.asarray(allowed)
    if allowed.dtype != bool or allowed.shape != (len(index),):
        raise ValueError(f"allowed must be a bool array of shape ({len(index)},), got {allowed.dtype} {allowed.shape}")
    if strategy == "pre":
        index.distance_count += int(allowed.sum()) * len(queries)
        return exact_search(index.data, queries, k, allowed=allowed)
    if strategy == "in_graph":
        return index.search(queries, k, ef, allowed=allowed)
    wide = index.search(queries, post_factor * k, max(ef, post_factor * k))
    out = np.full((len(wide), k), -1, dtype=np.int64)
    for row, ids in enumerate(wide):
        keep = ids[(ids >= 0) & allowed[np.maximum(ids, 0)]][:k]
        out[row, :len(keep)] = keep
    return out


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = 60, top: int | None = None) -> list[int]:
    """Merge ranked id lists (best first): score(d) = sum over lists of 1 / (k + rank), rank
    from 1. Returns ids by falling score (ties: smaller id first), at most `top`."""
    checks.positive_int("k", k)
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, 1):
            scores[int(doc)] = scores.get(int(doc), 0.0) + 1.0 / (k + rank)
    order = sorted(scores, key=lambda d: (-scores[d], d))
    return order if top is None else order[:top]
