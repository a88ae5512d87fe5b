"""The retrieval pipeline over the book: one index, every retriever, one evaluation.

`BookIndex` holds the chunks, a BM25 index of their text and their embeddings. Each
retriever returns chunk indices, best first:

    bm25        sparse: BM25 over the tokenized chunks
    dense       cosine similarity of MiniLM embeddings (exact, a matrix product)
    bm25+graph  BM25 of the query expanded with glossary neighbours (graph.py)
    rrf         reciprocal rank fusion (k = 60) of the bm25 and dense rankings
    weighted    alpha * minmax(dense) + (1 - alpha) * minmax(bm25)
    rrf+mmr     the fused top candidates re-ordered by MMR for diversity
    rrf+maxsim  the fused top candidates re-ranked by late interaction over token vectors

`evaluate_retrievers` runs them all on the question set and scores each with
`evaluate.score_run`; `benchmarks/rag_eval.py` ships the result, the late-interaction row
included (it needs the encoder's token vectors for every candidate, too slow for a lab).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from llminfra_lab.checks import positive_int
from llminfra_lab.rag import dense
from llminfra_lab.rag.chunking import Chunk
from llminfra_lab.rag.evaluate import ranked_sections, score_run
from llminfra_lab.rag.fusion import mmr, rrf, weighted_fusion
from llminfra_lab.rag.graph import entity_graph, expand_query, parse_glossary
from llminfra_lab.rag.sparse import BM25, tokenize, top_k

__all__ = ["BookIndex", "RETRIEVERS", "evaluate_retrievers"]

RETRIEVERS = ("bm25", "dense", "bm25+graph", "rrf", "weighted", "rrf+mmr")


@dataclass
class BookIndex:
    """Chunks, their BM25 index and their unit embeddings (n_chunks, d)."""
    chunks: list[Chunk]
    vectors: np.ndarray
    bm25: BM25 = field(init=False)

    def __post_init__(self):
        if len(self.chunks) != len(self.vectors) or not self.chunks:
            raise ValueError(f"need one vector per chunk, got {len(self.chunks)} chunks, {len(self.vectors)} vectors")
        self.bm25 = BM25([tokenize(c.indexed) for c in self.chunks])
        self._terms = parse_glossary()
        self._graph = entity_graph(self._terms)

    @classmethod
    def shipped(cls) -> BookIndex:
        """The index of the shipped chunks and embeddings (no model needed)."""
        chunks, vecs = dense.load_index()
        return cls(chunks, vecs)

    # ------------------------------------------------------------------ retrievers
    def bm25_scores(self, query: str) -> np.ndarray:
        return self.bm25.scores(tokenize(query))

    def dense_scores(self, query_vec: np.ndarray) -> np.ndarray:
        return dense.cosine_scores(query_vec, self.vectors)[0]

    def retrieve(self, method: str, query: str, query_vec: np.ndarray, k: int = 10, pool: int = 50,
                 alpha: float = 0.5, lam: float = 0.7) -> list[int]:
        """Top-k chunk indices for `query` (text) with embedding `query_vec` (d,) by `method`."""
        positive_int("k", k)
        if method not in RETRIEVERS:
            raise KeyError(f"unknown retriever {method!r}; valid: {RETRIEVERS}")
        if method == "bm25":
            return top_k(self.bm25_scores(query), k)
        if method == "dense":
            return top_k(self.dense_scores(query_vec), k)
        if method == "bm25+graph":
            return top_k(self.bm25_scores(expand_query(query, self._graph, self._terms)), k)
        if method == "weighted":
            return top_k(weighted_fusion([self.dense_scores(query_vec), self.bm25_scores(query)], [alpha, 1 - alpha]), k)
        fused = [d for d, _ in rrf([top_k(self.bm25_scores(query), pool), top_k(self.dense_scores(query_vec), pool)])]
        if method == "rrf":
            return fused[:k]
        return mmr(query_vec, self.vectors, fused[:pool], k, lam)          # rrf+mmr

    def rerank_maxsim(self, query: str, candidates: Sequence[int], k: int = 10,
                      token_fn: Callable[[list[str]], list[np.ndarray]] = dense.token_vectors) -> list[int]:
        """Candidates re-ordered by late interaction (ColBERT MaxSim) over the encoder's token vectors."""
        positive_int("k", k)
        cand = list(candidates)
        toks = token_fn([query] + [self.chunks[i].indexed for i in cand])
        scores = [dense.maxsim(toks[0], t) for t in toks[1:]]
        order = sorted(range(len(cand)), key=lambda j: (-scores[j], j))
        return [cand[j] for j in order[:k]]


def evaluate_retrievers(index: BookIndex, questions: Sequence[dict], query_vecs: np.ndarray,
                        methods: Sequence[str] = RETRIEVERS, k: int = 10) -> dict[str, dict]:
    """{method: score_run(...)} over the question set; query_vecs (n_questions, d) are the questions' embeddings."""
    if len(query_vecs) != len(questions):
        raise ValueError(f"need one query vector per question, got {len(query_vecs)} for {len(questions)}")
    out = {}
    for method in methods:
        rankings = [ranked_sections(index.retrieve(method, q["question"], v, k=3 * k), index.chunks)[:k]
                    for q, v in zip(questions, query_vecs)]
        out[method] = score_run(rankings, questions)
    return out
