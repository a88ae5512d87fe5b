"""Sparse retrieval: Okapi BM25 over an inverted index.

For a query q and a document d of |d| words, with term frequency f(t, d), average document
length avgdl and N documents of which n(t) contain t:

    score(q, d) = sum over query terms t of  idf(t) * f(t, d) (k1 + 1) / (f(t, d) + k1 (1 - b + b |d| / avgdl))
    idf(t)      = ln(N - n(t) + 0.5) - ln(n(t) + 0.5)

This is `rank_bm25.BM25Okapi`'s variant exactly, including its floor: a term in more than
half the documents would get a negative idf, and is given epsilon x (mean idf over the
vocabulary) instead. The difference is the data structure. rank_bm25 loops, for every query
term, over every document's term-frequency dictionary in Python; here each term's postings
(the documents that contain it and the precomputed weight of the term in each) are arrays,
so a query costs one scatter-add per term over only the documents that contain it.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from llminfra_lab.checks import positive_int

__all__ = ["tokenize", "BM25", "top_k"]


def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric runs: "FP8 E4M3's range" -> ["fp8", "e4m3", "s", "range"]."""
    return re.findall(r"[a-z0-9]+", text.lower())


class BM25:
    """Okapi BM25 with rank_bm25's parameters and idf floor; `scores(query_tokens)` -> (N,) float64."""

    def __init__(self, corpus: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25):
        if not corpus:
            raise ValueError("corpus must hold at least one tokenized document")
        if k1 < 0 or not 0 <= b <= 1 or epsilon < 0:
            raise ValueError(f"need k1 >= 0, 0 <= b <= 1, epsilon >= 0; got k1={k1}, b={b}, epsilon={epsilon}")
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.n_docs = len(corpus)
        self.doc_len = np.array([len(doc) for doc in corpus], dtype=np.float64)
        self.avgdl = sum(len(doc) for doc in corpus) / self.n_docs
        postings: dict[str, tuple[list[int], list[int]]] = {}
        for i, doc in enumerate(corpus):
            for term, freq in Counter(doc).items():
                docs, freqs = postings.setdefault(term, ([], []))
                docs.append(i)
                freqs.append(freq)
        self.idf = self._idf({t: len(d) for t, (d, _) in postings.items()})
        norm = self.k1 * (1 - self.b + self.b * self.doc_len / self.avgdl)
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term, (docs, freqs) in postings.items():
            d, f = np.array(docs), np.array(freqs, dtype=np.float64)
            self.postings[term] = (d, self.idf[term] * (f * (self.k1 + 1) / (f + norm[d])))

    def _idf(self, doc_freq: dict[str, int]) -> dict[str, float]:
        idf = {t: math.log(self.n_docs - n + 0.5) - math.log(n + 0.5) for t, n in doc_freq.items()}
        self.average_idf = sum(idf.values()) / len(idf)
        floor = self.epsilon * self.average_idf
        return {t: (floor if v < 0 else v) for t, v in idf.items()}

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for a tokenized query (repeated terms count again)."""
        if isinstance(query, str):
            raise ValueError("query must be a list of tokens (use tokenize(text)), not a str")
        out = np.zeros(self.n_docs)
        for term in query:
            if term in self.postings:
                docs, weight = self.postings[term]
                out[docs] += weight
        return out


def top_k(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k highest scores, best first (ties broken by the lower index)."""
    positive_int("k", k)
    scores = np.asarray(scores)
    return np.lexsort((np.arange(len(scores)), -scores))[:k].tolist()
