"""Combining retrievers and diversifying results.

- `rrf`: reciprocal rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009): a document's
  fused score is the sum over rankings of 1 / (k + rank), ranks counted from 1, k = 60. It
  needs only ranks, so BM25 scores (unbounded) and cosines (in [-1, 1]) never meet.
- `weighted_fusion`: min-max normalise each retriever's scores to [0, 1] and take a weighted
  sum, the "convex combination" that needs its weight tuned per corpus.
- `mmr`: maximal marginal relevance (Carbonell and Goldstein, SIGIR 1998): pick greedily the
  candidate that maximises lambda * sim(query, d) - (1 - lambda) * max sim(d, already picked).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llminfra_lab.checks import positive_int

__all__ = ["rrf", "minmax", "weighted_fusion", "mmr"]


def rrf(rankings: Sequence[Sequence[int]], k: int = 60) -> list[tuple[int, float]]:
    """[(doc, fused score)], best first, of reciprocal rank fusion with constant k. Each
    ranking lists doc ids best first; a doc missing from a ranking gets nothing from it.
    Ties are broken by the lower doc id."""
    positive_int("k", k)
    if not rankings:
        raise ValueError("rankings must hold at least one ranking")
    fused: dict[int, float] = {}
    for ranking in rankings:
        if len(set(ranking)) != len(ranking):
            raise ValueError("a ranking lists a document twice")
        for rank, doc in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def minmax(scores: np.ndarray) -> np.ndarray:
    """Scores rescaled to [0, 1] (all zeros when they are all equal)."""
    s = np.asarray(scores, dtype=np.float64)
    span = s.max() - s.min()
    return (s - s.min()) / span if span > 0 else np.zeros_like(s)


def weighted_fusion(score_lists: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """sum_i w_i * minmax(scores_i): one fused score per document (all arrays over the same docs)."""
    if len(score_lists) != len(weights) or not score_lists:
        raise ValueError(f"need one weight per score array, got {len(score_lists)} arrays and {len(weights)} weights")
    if len({len(s) for s in score_lists}) != 1:
        raise ValueError("score arrays must cover the same documents (equal lengths)")
    if any(w < 0 for w in weights):
        raise ValueError(f"weights must be >= 0, got {list(weights)}")
    return sum(w * minmax(s) for w, s in zip(weights, score_lists))


def mmr(query_vec: np.ndarray, doc_vecs: np.ndarray, candidates: Sequence[int], k: int,
        lam: float = 0.7) -> list[int]:
    """k of the candidate docs chosen by maximal marginal relevance over unit vectors:
    each step takes argmax lam * cos(q, d) - (1 - lam) * max_{s picked} cos(d, s)."""
    positive_int("k", k)
    if not 0 <= lam <= 1:
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")
    cand = list(candidates)
    if not cand:
        return []
    vecs = np.asarray(doc_vecs)[cand]
    relevance = vecs @ np.asarray(query_vec)
    pairwise = vecs @ vecs.T
    picked: list[int] = []
    redundancy = np.full(len(cand), -np.inf)
    for _ in range(min(k, len(cand))):
        value = lam * relevance - (1 - lam) * np.where(np.isinf(redundancy), 0.0, redundancy)
        value[picked] = -np.inf
        best = int(np.argmax(value))
        picked.append(best)
        redundancy = np.maximum(redundancy, pairwise[best])
    return [cand[i] for i in picked]
