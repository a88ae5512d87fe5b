"""The peers, used as a reader would use them: hnswlib, FAISS and LanceDB on the same vectors.

Each wrapper builds an index from (n, dim) float32 vectors with ids 0..n-1 and returns
(n_queries, k) int64 ids, nearest first, so that `recall_at_k` compares them with the
from-scratch indexes and with `exact_search`. `timed_sweep` runs one index over a list of
search settings and reports recall@k and queries per second (one thread), the curve that
`benchmarks/vectordb_sweep.py` ships. Distances are squared L2 everywhere.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from llminfra_lab import checks
from llminfra_lab.vectordb.exact import recall_at_k

__all__ = ["hnswlib_index", "hnswlib_search", "faiss_index", "faiss_search", "FAISS_KINDS",
           "lancedb_table", "lancedb_search", "lancedb_open", "timed_sweep"]

FAISS_KINDS = ("hnsw_flat", "ivf_flat", "ivf_pq")


def hnswlib_index(x: np.ndarray, M: int = 16, ef_construction: int = 200, seed: int = 0):
    """An hnswlib.Index ("l2") holding x, inserted one thread at a time (so it is reproducible)."""
    import hnswlib

    x = np.ascontiguousarray(x, dtype=np.float32)
    index = hnswlib.Index(space="l2", dim=x.shape[1])
    index.init_index(max_elements=len(x), M=M, ef_construction=ef_construction, random_seed=seed)
    index.add_items(x, np.arange(len(x)), num_threads=1)
    return index


def hnswlib_search(index, queries: np.ndarray, k: int, ef: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """hnswlib's k nearest with beam width ef; `allowed` becomes its filter function."""
    checks.positive_int("k", k)
    index.set_ef(max(ef, k))
    if allowed is None:
        labels, _ = index.knn_query(np.ascontiguousarray(queries, dtype=np.float32), k=k, num_threads=1)
        return labels.astype(np.int64)
    out = np.full((len(queries), k), -1, dtype=np.int64)
    for row, q in enumerate(queries):
        try:
            labels, _ = index.knn_query(q[None, :], k=k, num_threads=1, filter=lambda i: bool(allowed[i]))
            out[row] = labels[0]
        except RuntimeError:                          # fewer than k allowed vectors were found
            pass
    return out


def faiss_index(kind: str, x: np.ndarray, M: int = 16, ef_construction: int = 200, nlist: int = 32,
                m: int = 8, nbits: int = 8):
    """A FAISS index of `kind`: IndexHNSWFlat(M, efConstruction), IndexIVFFlat(nlist) or
    IndexIVFPQ(nlist, m sub-quantizers of nbits bits), trained (IVF) and filled with x."""
    import faiss

    if kind not in FAISS_KINDS:
        raise KeyError(f"unknown FAISS index kind {kind!r}; valid kinds: {list(FAISS_KINDS)}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    dim = x.shape[1]
    if kind == "hnsw_flat":
        index = faiss.IndexHNSWFlat(dim, M)
        index.hnsw.efConstruction = ef_construction
    else:
        quantizer = faiss.IndexFlatL2(dim)
        index = (faiss.IndexIVFFlat(quantizer, dim, nlist) if kind == "ivf_flat"
                 else faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits))
        index.train(x)
    index.add(x)
    return index


def faiss_search(index, queries: np.ndarray, k: int, param: int) -> np.ndarray:
    """FAISS's k nearest: `param` is efSearch for HNSW, nprobe for IVF."""
    import faiss

    checks.positive_int("k", k)
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = max(param, k)
    else:
        index.nprobe = param
    _, labels = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return labels.astype(np.int64)


def lancedb_table(path: str | Path, x: np.ndarray, metadata: Sequence[dict] | None = None, index: str = "ivf_pq",
                  num_partitions: int = 16, num_sub_vectors: int = 8, name: str = "vectors"):
    """An on-disk LanceDB table at `path` with columns id, vector and the metadata fields,
    and its own ANN index ("ivf_pq", "hnsw_sq", or "none" for exact scans)."""
    import lancedb
    from lancedb.index import HnswSq, IvfPq

    x = np.asarray(x, dtype=np.float32)
    metadata = metadata or [{} for _ in range(len(x))]
    if len(metadata) != len(x):
        raise ValueError(f"metadata must have one dict per vector ({len(x)}), got {len(metadata)}")
    rows = [{"id": i, "vector": x[i].tolist(), **meta} for i, meta in enumerate(metadata)]
    table = lancedb.connect(str(path)).create_table(name, data=rows, mode="overwrite")
    if index == "ivf_pq":
        table.create_index("vector", config=IvfPq(distance_type="l2", num_partitions=num_partitions,
                                                   num_sub_vectors=num_sub_vectors))
    elif index == "hnsw_sq":
        table.create_index("vector", config=HnswSq(distance_type="l2", num_partitions=1))
    elif index != "none":
        raise KeyError(f"unknown LanceDB index {index!r}; valid: ['ivf_pq', 'hnsw_sq', 'none']")
    return table


def lancedb_open(path: str | Path, name: str = "vectors"):
    """Reopen a table that an earlier process wrote: the index and data come from disk."""
    import lancedb

    return lancedb.connect(str(path)).open_table(name)


def lancedb_search(table, queries: np.ndarray, k: int, where: str | None = None, nprobes: int = 8,
                   refine_factor: int | None = None) -> np.ndarray:
    """LanceDB's k nearest for each query; `where` is an SQL filter applied before the
    vector search (prefilter), `refine_factor` re-ranks that many times k with exact distances."""
    checks.positive_int("k", k)
    out = np.full((len(queries), k), -1, dtype=np.int64)
    for row, q in enumerate(np.asarray(queries, dtype=np.float32)):
        query = table.search(q.tolist()).distance_type("l2").limit(k).nprobes(nprobes)
        if where is not None:
            query = query.where(where, prefilter=True)
        if refine_factor is not None:
            query = query.refine_factor(refine_factor)
        ids = query.select(["id"]).to_arrow().column("id").to_pylist()
        out[row, :len(ids)] = ids
    return out


def timed_sweep(search: Callable[[np.ndarray, int, int], np.ndarray], queries: np.ndarray, truth: np.ndarray,
                params: Sequence[int], repeats: int = 1) -> list[dict]:
    """For each search setting p: recall@k of search(queries, k, p) against truth (n, k), and
    queries per second (best of `repeats` timed runs). Timings are this machine's only."""
    k = truth.shape[1]
    rows = []
    for p in params:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            found = search(queries, k, p)
            best = min(best, time.perf_counter() - start)
        rows.append({"param": int(p), "recall": recall_at_k(found, truth), "qps": len(queries) / best})
    return rows
