"""Lab 17 (retrieval-augmented generation): implement-it tasks and exercises."""
from __future__ import annotations

import math
import random

import numpy as np

from llminfra_lab.labkit import exercise, task
from llminfra_lab.rag import BM25, context_precision, rrf

# ----------------------------------------------------------------------------- implement-it tasks


def _rrf_zero_based(rankings, k):
    fused = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking):                     # ranks from 0: the first doc gets 1/k
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def _rrf_cases(rng: random.Random) -> list[tuple]:
    cases = [([[7, 3, 5], [3, 9]], 60)]
    for _ in range(12):
        docs = list(range(rng.randint(3, 15)))
        rankings = []
        for _ in range(rng.randint(1, 4)):
            rng.shuffle(docs)
            rankings.append(docs[:rng.randint(1, len(docs))])
        cases.append((rankings, rng.choice([1, 10, 60])))
    return cases


task(
    "rag.rrf",
    "Reciprocal rank fusion: rankings is a list of rankings, each a list of doc ids best first. A doc's fused "
    "score is the sum, over the rankings that contain it, of 1 / (k + rank) with rank counted from 1. Return "
    "[(doc, score), ...] sorted by score, highest first, ties broken by the smaller doc id.",
    reference=lambda rankings, k: rrf(rankings, k),
    cases=_rrf_cases,
    mistake=_rrf_zero_based,
)


def _bm25_reference(corpus, query, k1, b, epsilon):
    return BM25(corpus, k1, b, epsilon).scores(query)


def _bm25_no_floor(corpus, query, k1, b, epsilon):
    n, avgdl = len(corpus), sum(map(len, corpus)) / len(corpus)
    out = np.zeros(n)
    for t in query:
        df = sum(t in doc for doc in corpus)
        if not df:
            continue
        idf = math.log(n - df + 0.5) - math.log(df + 0.5)             # negative idf kept
        for i, doc in enumerate(corpus):
            f = doc.count(t)
            out[i] += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(doc) / avgdl))
    return out


def _bm25_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(10):
        vocab = [f"w{i}" for i in range(rng.randint(3, 10))]
        corpus = [[rng.choice(vocab[:2]) if rng.random() < 0.5 else rng.choice(vocab) for _ in range(rng.randint(1, 12))]
                  for _ in range(rng.randint(3, 12))]
        query = [rng.choice(vocab + ["unseen"]) for _ in range(rng.randint(1, 4))] + ["w0"]
        cases.append((corpus, query, rng.choice([1.2, 1.5, 2.0]), rng.choice([0.5, 0.75, 1.0]), 0.25))
    return cases


task(
    "rag.bm25_scores",
    "Okapi BM25 as rank_bm25 computes it. corpus: list of token lists; query: list of tokens. With N docs, "
    "avgdl = total tokens / N, n(t) = docs containing t: idf(t) = ln(N - n + 0.5) - ln(n + 0.5); a negative idf is "
    "replaced by epsilon x (mean idf over all corpus terms). score(d) = sum over query tokens (repeats count) of "
    "idf(t) f (k1 + 1) / (f + k1 (1 - b + b |d| / avgdl)), f = count of t in d; unseen terms add 0. Return a "
    "float array of N scores.",
    reference=_bm25_reference,
    cases=_bm25_cases,
    mistake=_bm25_no_floor,
)


def _cp_over_k(relevance):
    hits, total = 0, 0.0
    for k, v in enumerate(relevance, start=1):
        if v:
            hits += 1
            total += hits / k
    return total / len(relevance)                                  # divides by K, not by the relevant count


def _cp_cases(rng: random.Random) -> list[tuple]:
    cases = [([0, 0, 1, 1, 0],), ([0, 0, 0],), ([1, 1, 1],)]
    for _ in range(12):
        cases.append(([int(rng.random() < 0.4) for _ in range(rng.randint(1, 10))],))
    return cases


task(
    "rag.context_precision",
    "RAGAS context precision@K. relevance is a list of K 0/1 judgements, one per retrieved chunk, best first "
    "(v_k). Return sum over k of precision@k x v_k, divided by the number of relevant chunks in the K; "
    "precision@k = relevant chunks among the first k / k. Return 0.0 when none is relevant.",
    reference=context_precision,
    cases=_cp_cases,
    mistake=_cp_over_k,
)

# ----------------------------------------------------------------------------- exercises


def _rrf_params(seed: int) -> dict:
    if seed == 0:
        return {"r_sparse": 1, "r_dense": 3}
    rng = random.Random(seed)
    return {"r_sparse": rng.randint(1, 20), "r_dense": rng.randint(1, 20)}


exercise(
    "rag.rrf_score",
    text=lambda r_sparse, r_dense: (
        f"A chunk is ranked {r_sparse} by BM25 and {r_dense} by dense retrieval (ranks from 1). What is its "
        "reciprocal-rank-fusion score with k = 60? (Give it to 4 significant figures.)"),
    params=_rrf_params,
    solve=lambda r_sparse, r_dense: 1 / (60 + r_sparse) + 1 / (60 + r_dense),
    mistake=lambda r_sparse, r_dense: 1 / (60 + r_sparse - 1) + 1 / (60 + r_dense - 1),
    rtol=0.001,
    hint="Sum 1 / (k + rank) over the two rankings, with rank 1 for the best.",
)


def _idf_params(seed: int) -> dict:
    if seed == 0:
        return {"n_docs": 1000, "df": 10}
    rng = random.Random(seed)
    return {"n_docs": rng.choice([500, 1000, 20000]), "df": rng.choice([1, 5, 10, 50, 200])}


exercise(
    "rag.idf",
    text=lambda n_docs, df: (
        f"In a corpus of {n_docs:,} chunks a term occurs in {df}. What is its BM25 idf in rank_bm25's Okapi form, "
        "ln(N - n + 0.5) - ln(n + 0.5)?"),
    params=_idf_params,
    solve=lambda n_docs, df: math.log(n_docs - df + 0.5) - math.log(df + 0.5),
    mistake=lambda n_docs, df: math.log(n_docs / df),
    rtol=0.005,
    hint="Natural logarithms; the 0.5s smooth the counts.",
)


def _bytes_params(seed: int) -> dict:
    if seed == 0:
        return {"n_chunks": 10_000_000, "dim": 1024, "bytes_per": 4}
    rng = random.Random(seed)
    return {"n_chunks": rng.choice([1_000_000, 10_000_000, 100_000_000]), "dim": rng.choice([384, 768, 1024]),
            "bytes_per": rng.choice([4, 2])}


exercise(
    "rag.index_gib",
    text=lambda n_chunks, dim, bytes_per: (
        f"How many GiB (2^30 bytes) do the embeddings of {n_chunks:,} chunks take at {dim} dimensions and "
        f"{bytes_per} bytes per value, before any index structure?"),
    params=_bytes_params,
    solve=lambda n_chunks, dim, bytes_per: n_chunks * dim * bytes_per / 2**30,
    mistake=lambda n_chunks, dim, bytes_per: n_chunks * dim * bytes_per / 1e9,
    rtol=0.01,
    hint="chunks x dimensions x bytes, then divide by 2^30.",
)


def _cp_params(seed: int) -> dict:
    if seed == 0:
        return {"relevance": (0, 1, 1, 0, 1)}
    rng = random.Random(seed)
    rel = [int(rng.random() < 0.5) for _ in range(rng.randint(3, 8))]
    one, zero = rng.sample(range(len(rel)), 2)
    rel[one], rel[zero] = 1, 0                                      # at least one of each
    return {"relevance": tuple(rel)}


exercise(
    "rag.context_precision_value",
    text=lambda relevance: (
        f"A retriever returns {len(relevance)} chunks whose relevance, best first, is {list(relevance)} (1 = relevant). "
        "What is their RAGAS context precision?"),
    params=_cp_params,
    solve=lambda relevance: context_precision(list(relevance)),
    mistake=lambda relevance: _cp_over_k(list(relevance)),
    rtol=0.005,
    hint="Average precision@k over the ranks k that hold a relevant chunk.",
)
