"""HNSW, hierarchical navigable small-world graphs (Malkov and Yashunin, 2016), from scratch.

Each vector gets a random top layer l = floor(-ln(U) * mL) with mL = 1 / ln(M), so a layer
holds about 1/M of the layer below it. On every layer up to its own, a new vector is linked
to at most M neighbours chosen by the *neighbour-selection heuristic*; existing vectors
accept it back and, when they overflow (M links on upper layers, 2M on layer 0, as in
hnswlib), re-select their own links by the same heuristic.

A search descends greedily through the sparse upper layers (one best vertex per layer) and
then runs a best-first beam search of width ef on layer 0. The class counts every distance
it computes in `distance_count`, a cost measure that does not depend on the CPU.
"""
from __future__ import annotations

import heapq
import math

import numpy as np

from llminfra_lab import checks

__all__ = ["HNSW", "hnsw_bytes_per_vector"]


class HNSW:
    """An HNSW index over squared-L2 distance. links[node][layer] lists a vertex's neighbours."""

    def __init__(self, dim: int, M: int = 16, ef_construction: int = 200, seed: int = 0):
        checks.positive_int("dim", dim)
        checks.positive_int("ef_construction", ef_construction)
        if isinstance(M, bool) or not isinstance(M, int) or M < 2:
            raise ValueError(f"M must be an int >= 2, got {M!r}")
        self.dim, self.M, self.ef_construction = dim, M, ef_construction
        self.level_mult = 1.0 / math.log(M)           # mL: P(layer >= l) = M^-l
        self.max_links = (2 * M, M)                   # layer 0, layers above
        self.rng = np.random.default_rng(seed)
        self.data = np.zeros((0, dim), dtype=np.float32)
        self.links: list[list[list[int]]] = []
        self.entry, self.max_level = -1, -1
        self.distance_count = 0

    def __len__(self) -> int:
        return len(self.links)

    # ------------------------------------------------------------------ building
    def add(self, vectors: np.ndarray) -> HNSW:
        """Insert (n, dim) vectors one by one; they get ids len(self) ... len(self) + n - 1."""
        vectors = _check_vectors(vectors, self.dim)
        start = len(self)
        self.data = np.concatenate([self.data, vectors])
        for node in range(start, len(self.data)):
            self._insert(node)
        return self

    def random_level(self) -> int:
        """floor(-ln(U) * mL), U uniform in (0, 1]: layer l is reached with probability M^-l."""
        return int(-math.log(1.0 - self.rng.random()) * self.level_mult)

    def _insert(self, node: int) -> None:
        x, level = self.data[node], self.random_level()
        self.links.append([[] for _ in range(level + 1)])
        if self.entry < 0:
            self.entry, self.max_level = node, level
            return
        ep = (float(self._distances(x, [self.entry])[0]), self.entry)
        for layer in range(self.max_level, level, -1):            # zoom in: one best vertex per layer
            ep = self._greedy(x, ep, layer)
        for layer in range(min(level, self.max_level), -1, -1):
            found = self._search_layer(x, [ep], self.ef_construction, layer)
            chosen = self.select_neighbours(x, found, self.M)
            self.links[node][layer] = [i for _, i in chosen]
            for dist, other in chosen:                            # links go both ways
                self._link_back(other, node, dist, layer)
            ep = found[0]
        if level > self.max_level:
            self.entry, self.max_level = node, level

    def select_neighbours(self, x: np.ndarray, candidates: list[tuple[float, int]], m: int) -> list[tuple[float, int]]:
        """The heuristic (Algorithm 4 of the paper, as in hnswlib): walk the candidates
        (distance to x, id) nearest first and keep one only if it is closer to x than to
        every neighbour kept so far. Links then point in different directions instead of
        all into the nearest cluster, which keeps the graph navigable."""
        candidates = sorted(candidates)
        if len(candidates) <= m:
            return candidates
        kept: list[tuple[float, int]] = []
        for dist, cand in candidates:
            if kept and (self._distances(self.data[cand], [i for _, i in kept]) < dist).any():
                continue                                          # a kept neighbour already covers it
            kept.append((dist, cand))
            if len(kept) == m:
                break
        return kept

    def _link_back(self, other: int, node: int, dist: float, layer: int) -> None:
        links, cap = self.links[other][layer], self.max_links[min(layer, 1)]
        if len(links) < cap:
            links.append(node)
            return
        cands = [(float(d), i) for d, i in zip(self._distances(self.data[other], links), links)]
        cands.append((dist, node))
        self.links[other][layer] = [i for _, i in self.select_neighbours(self.data[other], cands, cap)]

    # ------------------------------------------------------------------ searching
    def search(self, queries: np.ndarray, k: int, ef: int | None = None,
               allowed: np.ndarray | None = None) -> np.ndarray:
        """Ids (n_queries, k), nearest first (-1 pads). The beam on layer 0 has width
        max(ef, k). With `allowed` ((n,) bool) the walk still crosses vertices that are
        filtered out but only allowed ones enter the results (hnswlib's filter)."""
        queries = _check_vectors(queries, self.dim)
        checks.positive_int("k", k)
        ef = max(k if ef is None else ef, k)
        checks.positive_int("ef", ef)
        if allowed is not None and (np.asarray(allowed).dtype != bool or np.shape(allowed) != (len(self),)):
            raise ValueError(f"allowed must be a bool array of shape ({len(self)},), got {np.shape(allowed)}")
        out = np.full((len(queries), k), -1, dtype=np.int64)
        if self.entry < 0:
            return out
        for row, q in enumerate(queries):
            ep = (float(self._distances(q, [self.entry])[0]), self.entry)
            for layer in range(self.max_level, 0, -1):
                ep = self._greedy(q, ep, layer)
            found = self._search_layer(q, [ep], ef, 0, allowed)[:k]
            out[row, :len(found)] = [i for _, i in found]
        return out

    def _greedy(self, q: np.ndarray, ep: tuple[float, int], layer: int) -> tuple[float, int]:
        """Move to the nearest neighbour while that gets closer to q (upper layers)."""
        best, improved = ep, True
        while improved:
            improved = False
            nbrs = self.links[best[1]][layer]
            if nbrs:
                dists = self._distances(q, nbrs)
                i = int(np.argmin(dists))
                if dists[i] < best[0]:
                    best, improved = (float(dists[i]), nbrs[i]), True
        return best

    def _search_layer(self, q: np.ndarray, entries: list[tuple[float, int]], ef: int, layer: int,
                      allowed: np.ndarray | None = None) -> list[tuple[float, int]]:
        """Best-first beam search: expand the nearest unexpanded candidate, stop when it is
        farther than the worst of the ef best found. Returns (distance, id) nearest first."""
        visited = {i for _, i in entries}
        candidates = list(entries)                                # min-heap on distance
        heapq.heapify(candidates)
        results = [(-d, i) for d, i in entries if allowed is None or allowed[i]]   # max-heap
        heapq.heapify(results)
        while candidates:
            dist, node = heapq.heappop(candidates)
            if len(results) >= ef and dist > -results[0][0]:
                break
            nbrs = [n for n in self.links[node][layer] if n not in visited]
            if not nbrs:
                continue
            visited.update(nbrs)
            for d, n in zip(self._distances(q, nbrs).tolist(), nbrs):
                if len(results) < ef or d < -results[0][0]:
                    heapq.heappush(candidates, (d, n))
                    if allowed is None or allowed[n]:
                        heapq.heappush(results, (-d, n))
                        if len(results) > ef:
                            heapq.heappop(results)
        return sorted((-d, i) for d, i in results)

    def _distances(self, q: np.ndarray, ids: list[int]) -> np.ndarray:
        self.distance_count += len(ids)
        return ((self.data[ids] - q) ** 2).sum(-1)

    def bytes_per_vector(self) -> float:
        """Memory per vector of this index laid out as hnswlib lays it out."""
        return hnsw_bytes_per_vector(self.dim, self.M)

    def layer_sizes(self) -> list[int]:
        """How many vertices reach each layer (layer 0 first)."""
        return [sum(len(node) > layer for node in self.links) for layer in range(self.max_level + 1)]


def hnsw_bytes_per_vector(dim: int, M: int, bytes_per_dim: int = 4) -> float:
    """Expected bytes per vector in hnswlib's layout: the vector, an 8-byte label, layer 0's
    block of 2M 4-byte links plus a 4-byte count, an 8-byte pointer to the upper layers, and
    on average 1/(M - 1) upper layers of (M + 1) x 4 bytes each."""
    checks.positive_int("dim", dim)
    checks.positive_int("M", M)
    return dim * bytes_per_dim + 8 + (2 * M + 1) * 4 + 8 + (M + 1) * 4 / max(M - 1, 1)


def _check_vectors(vectors, dim: int) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"vectors must be (n, {dim}), got shape {vectors.shape}")
    return np.ascontiguousarray(vectors)
