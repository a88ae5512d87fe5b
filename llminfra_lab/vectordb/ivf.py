"""Inverted files and product quantization: IVF-Flat, PQ and IVF-PQ (Jegou, Douze and
Schmid, 2011), from scratch.

- k-means splits the space into `nlist` cells (the coarse quantizer). IVF-Flat keeps each
  vector, uncompressed, in the list of its nearest centroid; a query scans only the
  `nprobe` lists whose centroids are nearest.
- Product quantization cuts a vector into m sub-vectors and replaces each by the id of
  its nearest of 2^nbits sub-centroids: with m = 8 and 8 bits a vector becomes 8 bytes.
- Asymmetric distance computation (ADC): the query stays exact. One table of (m, 2^nbits)
  squared distances from the query's sub-vectors to every sub-centroid makes the distance
  to any code a sum of m table look-ups.
- IVF-PQ encodes the residual x - centroid, as FAISS does, so the codebooks spend their
  bits on the small differences inside a cell.
"""
from __future__ import annotations

import numpy as np

from llminfra_lab import checks
from llminfra_lab.vectordb.hnsw import _check_vectors

__all__ = ["kmeans", "IVFFlat", "ProductQuantizer", "IVFPQ", "adc_distances"]


def kmeans(x: np.ndarray, k: int, iters: int = 20, seed: int = 0) -> np.ndarray:
    """(k, dim) centroids by Lloyd's algorithm, started by k-means++ (each new seed drawn
    with probability proportional to its squared distance to the nearest seed so far);
    an emptied cell is re-seeded with the point farthest from its centroid."""
    x = np.asarray(x, dtype=np.float32)
    checks.positive_int("k", k)
    checks.positive_int("iters", iters)
    if x.ndim != 2 or len(x) < k:
        raise ValueError(f"kmeans needs an (n, dim) array with n >= k = {k}, got shape {x.shape}")
    rng = np.random.default_rng(seed)
    centroids = np.empty((k, x.shape[1]))
    centroids[0] = x[rng.integers(len(x))]
    nearest = ((x - centroids[0]) ** 2).sum(1).astype(np.float64)
    for c in range(1, k):
        total = nearest.sum()
        pick = rng.choice(len(x), p=nearest / total) if total > 0 else rng.integers(len(x))
        centroids[c] = x[pick]
        nearest = np.minimum(nearest, ((x - centroids[c]) ** 2).sum(1))
    for _ in range(iters):
        assign, dist = _nearest(x, centroids)
        counts = np.bincount(assign, minlength=k)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
        for c in np.flatnonzero(~filled):                 # an empty cell takes the worst-served point
            far = int(np.argmax(dist))
            centroids[c], dist[far] = x[far], 0.0
    return centroids.astype(np.float32)


def _nearest(x: np.ndarray, centroids: np.ndarray, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Index and squared distance of the nearest centroid of each row of x."""
    c = centroids.astype(np.float64)
    c_sq = (c ** 2).sum(1)
    assign, dist = np.empty(len(x), dtype=np.int64), np.empty(len(x))
    for s in range(0, len(x), block):
        xb = x[s:s + block].astype(np.float64)
        d = (xb ** 2).sum(1, keepdims=True) - 2 * xb @ c.T + c_sq
        assign[s:s + block] = d.argmin(1)
        dist[s:s + block] = np.maximum(d[np.arange(len(xb)), assign[s:s + block]], 0.0)
    return assign, dist


class IVFFlat:
    """An inverted file of uncompressed vectors: nlist k-means cells, nprobe scanned per query."""

    def __init__(self, dim: int, nlist: int, seed: int = 0):
        checks.positive_int("dim", dim)
        checks.positive_int("nlist", nlist)
        self.dim, self.nlist, self.seed = dim, nlist, seed
        self.centroids: np.ndarray | None = None
        self.lists: list[np.ndarray] = []
        self.data = np.zeros((0, dim), dtype=np.float32)
        self.distance_count = 0

    def train(self, x: np.ndarray, iters: int = 20) -> IVFFlat:
        self.centroids = kmeans(_check_vectors(x, self.dim), self.nlist, iters, self.seed)
        return self

    def add(self, x: np.ndarray) -> IVFFlat:
        if self.centroids is None:
            raise ValueError("train the index before adding vectors")
        x = _check_vectors(x, self.dim)
        assign, _ = _nearest(x, self.centroids)
        ids = np.arange(len(self.data), len(self.data) + len(x))
        self.data = np.concatenate([self.data, x])
        old = self.lists or [np.zeros(0, dtype=np.int64)] * self.nlist
        self.lists = [np.concatenate([old[c], ids[assign == c]]) for c in range(self.nlist)]
        return self

    def probe(self, q: np.ndarray, nprobe: int) -> np.ndarray:
        """The nprobe cells whose centroids are nearest to q (counted as nlist distances)."""
        self.distance_count += self.nlist
        return np.argsort(((self.centroids - q) ** 2).sum(1), kind="stable")[:nprobe]

    def search(self, queries: np.ndarray, k: int, nprobe: int = 1) -> np.ndarray:
        """Ids (n_queries, k), nearest first (-1 pads), scanning nprobe lists per query."""
        queries = _check_vectors(queries, self.dim)
        checks.positive_int("k", k)
        checks.positive_int("nprobe", nprobe)
        out = np.full((len(queries), k), -1, dtype=np.int64)
        for row, q in enumerate(queries):
            ids = np.concatenate([self.lists[c] for c in self.probe(q, nprobe)])
            self.distance_count += len(ids)
            dist = ((self.data[ids] - q) ** 2).sum(1)
            top = ids[np.lexsort((ids, dist))[:k]]
            out[row, :len(top)] = top
        return out

    def bytes_per_vector(self) -> float:
        """The float32 vector plus its 8-byte id in the list (centroids not counted)."""
        return self.dim * 4 + 8


class ProductQuantizer:
    """m sub-quantizers of 2^nbits centroids each over dim/m-dimensional sub-vectors."""

    def __init__(self, dim: int, m: int, nbits: int = 8, seed: int = 0):
        checks.positive_int("dim", dim)
        checks.positive_int("m", m)
        if dim % m:
            raise ValueError(f"dim ({dim}) must be divisible by m ({m})")
        if isinstance(nbits, bool) or not isinstance(nbits, int) or not 1 <= nbits <= 8:
            raise ValueError(f"nbits must be an int in 1..8 (codes are stored as uint8), got {nbits!r}")
        self.dim, self.m, self.nbits, self.seed = dim, m, nbits, seed
        self.ksub, self.dsub = 2 ** nbits, dim // m
        self.codebooks: np.ndarray | None = None          # (m, ksub, dsub)

    def train(self, x: np.ndarray, iters: int = 20) -> ProductQuantizer:
        x = _check_vectors(x, self.dim)
        self.codebooks = np.stack([kmeans(self._sub(x, j), self.ksub, iters, self.seed + j) for j in range(self.m)])
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        """(n, m) uint8 codes: the nearest sub-centroid of each sub-vector."""
        x = _check_vectors(x, self.dim)
        return np.stack([_nearest(self._sub(x, j), self.codebooks[j])[0] for j in range(self.m)], 1).astype(np.uint8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(n, dim) reconstruction: the chosen sub-centroids side by side."""
        return np.concatenate([self.codebooks[j][codes[:, j]] for j in range(self.m)], 1)

    def distance_table(self, q: np.ndarray) -> np.ndarray:
        """(m, ksub) squared distances from each sub-vector of q to each sub-centroid."""
        q = np.asarray(q, dtype=np.float32).reshape(self.m, 1, self.dsub)
        return ((self.codebooks - q) ** 2).sum(-1)

    def code_bytes(self) -> int:
        """Bytes per encoded vector: m x nbits / 8, rounded up."""
        return -(-self.m * self.nbits // 8)

    def _sub(self, x: np.ndarray, j: int) -> np.ndarray:
        return x[:, j * self.dsub:(j + 1) * self.dsub]


def adc_distances(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Asymmetric distances (n,): for each code, the sum over sub-quantizers j of
    table[j, code[j]]. m look-ups and adds per vector instead of dim multiply-adds."""
    return table[np.arange(table.shape[0]), codes.astype(np.int64)].sum(1)


class IVFPQ:
    """IVF over PQ codes of residuals: each list holds ids and (m,) uint8 codes."""

    def __init__(self, dim: int, nlist: int, m: int, nbits: int = 8, seed: int = 0):
        self.coarse = IVFFlat(dim, nlist, seed)
        self.pq = ProductQuantizer(dim, m, nbits, seed)
        self.dim, self.nlist = dim, nlist
        self.codes: list[np.ndarray] = []
        self.distance_count = 0

    def train(self, x: np.ndarray, iters: int = 20) -> IVFPQ:
        x = _check_vectors(x, self.dim)
        self.coarse.train(x, iters)
        assign, _ = _nearest(x, self.coarse.centroids)
        self.pq.train(x - self.coarse.centroids[assign], iters)
        return self

    def add(self, x: np.ndarray) -> IVFPQ:
        if self.pq.codebooks is None:
            raise ValueError("train the index before adding vectors")
        x = _check_vectors(x, self.dim)
        assign, _ = _nearest(x, self.coarse.centroids)
        codes = self.pq.encode(x - self.coarse.centroids[assign])
        start = sum(len(ids) for ids in self.coarse.lists)
        ids = np.arange(start, start + len(x))
        old_ids = self.coarse.lists or [np.zeros(0, dtype=np.int64)] * self.nlist
        old_codes = self.codes or [np.zeros((0, self.pq.m), dtype=np.uint8)] * self.nlist
        self.coarse.lists = [np.concatenate([old_ids[c], ids[assign == c]]) for c in range(self.nlist)]
        self.codes = [np.concatenate([old_codes[c], codes[assign == c]]) for c in range(self.nlist)]
        return self

    def search(self, queries: np.ndarray, k: int, nprobe: int = 1) -> np.ndarray:
        """Ids (n_queries, k) by ADC distance, nearest first (-1 pads): one distance table
        per probed list (the query's residual to that centroid), then table look-ups."""
        queries = _check_vectors(queries, self.dim)
        checks.positive_int("k", k)
        checks.positive_int("nprobe", nprobe)
        out = np.full((len(queries), k), -1, dtype=np.int64)
        for row, q in enumerate(queries):
            ids, dists = [], []
            for c in self.coarse.probe(q, nprobe):
                table = self.pq.distance_table(q - self.coarse.centroids[c])
                ids.append(self.coarse.lists[c])
                dists.append(adc_distances(table, self.codes[c]))
            self.distance_count += self.nlist + sum(len(i) for i in ids)
            ids, dists = np.concatenate(ids), np.concatenate(dists)
            top = ids[np.lexsort((ids, dists))[:k]]
            out[row, :len(top)] = top
        return out

    def bytes_per_vector(self) -> float:
        """The PQ code (m x nbits / 8 bytes) plus its 8-byte id in the list."""
        return self.pq.code_bytes() + 8
