"""Vamana, the graph of DiskANN (Subramanya et al., 2019), from scratch.

One flat graph (no layers) with out-degree at most R, searched from a fixed entry point,
the medoid. It is built in two passes over the points in random order, starting from a
random R-regular graph: for each point p, a greedy search for p from the medoid (list size
L) visits a set V; `robust_prune` picks p's new out-links from V; p is linked back from
them, and a neighbour that overflows R is pruned again. The first pass prunes with
alpha = 1, the second with the chosen alpha > 1 (1.2 in the paper).

robust_prune keeps the nearest candidate p*, then drops every candidate p' with
alpha * d(p*, p') <= d(p, p'): those are reachable through p*. alpha > 1 drops fewer, so
links also reach far: searches then need fewer hops, which is what matters when each hop
is a read from SSD. d is the Euclidean distance (so the test is on alpha^2 for squared L2).
"""
from __future__ import annotations

import heapq

import numpy as np

from llminfra_lab import checks
from llminfra_lab.vectordb.hnsw import _check_vectors

__all__ = ["Vamana", "robust_prune"]


def robust_prune(p: np.ndarray, candidates: dict[int, float], data: np.ndarray, alpha: float, R: int) -> list[int]:
    """Out-links of p: from `candidates` {id: squared distance to p}, repeatedly take the
    nearest p* and drop every p' with alpha * d(p*, p') <= d(p, p'); at most R links."""
    ids = np.array(sorted(candidates, key=lambda i: (candidates[i], i)), dtype=np.int64)
    dist = np.array([candidates[i] for i in ids.tolist()])
    out: list[int] = []
    while len(ids) and len(out) < R:
        star, ids, dist = int(ids[0]), ids[1:], dist[1:]          # the nearest remaining candidate
        out.append(star)
        d_from_star = ((data[ids] - data[star]) ** 2).sum(1)
        keep = alpha * alpha * d_from_star > dist                 # not covered by p*
        ids, dist = ids[keep], dist[keep]
    return out


class Vamana:
    """A Vamana graph over squared-L2 distance; `links[i]` are vertex i's out-neighbours."""

    def __init__(self, dim: int, R: int = 16, L: int = 50, alpha: float = 1.2, seed: int = 0):
        checks.positive_int("dim", dim)
        checks.positive_int("R", R)
        checks.positive_int("L", L)
        checks.positive_number("alpha", alpha)
        if alpha < 1:
            raise ValueError(f"alpha must be >= 1, got {alpha!r}")
        self.dim, self.R, self.L, self.alpha, self.seed = dim, R, L, alpha, seed
        self.data = np.zeros((0, dim), dtype=np.float32)
        self.links: list[list[int]] = []
        self.medoid = -1
        self.distance_count = 0

    def build(self, x: np.ndarray) -> Vamana:
        """Build the graph over (n, dim) vectors: random R-regular start, then passes with
        alpha = 1 and with self.alpha."""
        self.data = _check_vectors(x, self.dim)
        n, rng = len(self.data), np.random.default_rng(self.seed)
        r0 = min(self.R, n - 1)
        self.links = [[int(j) for j in rng.choice(np.delete(np.arange(n), i), r0, replace=False)] for i in range(n)]
        mean = self.data.mean(0)
        self.medoid = int(np.argmin(((self.data - mean) ** 2).sum(1)))
        for alpha in (1.0, self.alpha):
            for p in rng.permutation(n).tolist():
                _, visited = self.greedy_search(self.data[p], self.L)
                visited.update(self._to(p, self.links[p]))
                visited.pop(p, None)
                self.links[p] = robust_prune(self.data[p], visited, self.data, alpha, self.R)
                for j in self.links[p]:                   # back-links, pruned on overflow
                    if p in self.links[j]:
                        continue
                    if len(self.links[j]) < self.R:
                        self.links[j].append(p)
                    else:
                        cands = self._to(j, self.links[j] + [p])
                        self.links[j] = robust_prune(self.data[j], cands, self.data, alpha, self.R)
        return self

    def _to(self, p: int, ids: list[int]) -> dict[int, float]:
        return dict(zip(ids, ((self.data[ids] - self.data[p]) ** 2).sum(1).tolist()))

    def greedy_search(self, q: np.ndarray, L: int, allowed: np.ndarray | None = None
                      ) -> tuple[list[tuple[float, int]], dict[int, float]]:
        """GreedySearch of the paper: keep the L nearest vertices seen; expand the nearest
        unexpanded one of them until all L are expanded. Returns that list ((distance, id)
        nearest first; only `allowed` ones, if given) and the expanded set {id: distance}."""
        d0 = float(((self.data[self.medoid] - q) ** 2).sum())
        self.distance_count += 1
        seen, expanded = {self.medoid}, {}
        frontier = [(d0, self.medoid)]                            # min-heap of unexpanded vertices
        best = [(-d0, self.medoid)]                               # max-heap: the L nearest seen
        while frontier:
            d, node = heapq.heappop(frontier)
            if len(best) >= L and d > -best[0][0]:
                break                                             # all of the L nearest are expanded
            expanded[node] = d
            nbrs = [j for j in self.links[node] if j not in seen]
            if not nbrs:
                continue
            seen.update(nbrs)
            self.distance_count += len(nbrs)
            for dj, j in zip(((self.data[nbrs] - q) ** 2).sum(1).tolist(), nbrs):
                if len(best) < L or dj < -best[0][0]:
                    heapq.heappush(frontier, (dj, j))
                    heapq.heappush(best, (-dj, j))
                    if len(best) > L:
                        heapq.heappop(best)
        found = sorted((-d, i) for d, i in best)
        if allowed is not None:
            found = [(d, i) for d, i in sorted(set(found) | {(d, i) for i, d in expanded.items()}) if allowed[i]]
        return found, expanded

    def search(self, queries: np.ndarray, k: int, L: int | None = None, allowed: np.ndarray | None = None) -> np.ndarray:
        """Ids (n_queries, k), nearest first (-1 pads), with search list size max(L, k)."""
        queries = _check_vectors(queries, self.dim)
        checks.positive_int("k", k)
        L = max(self.L if L is None else L, k)
        out = np.full((len(queries), k), -1, dtype=np.int64)
        for row, q in enumerate(queries):
            found = self.greedy_search(q, L, allowed)[0][:k]
            out[row, :len(found)] = [i for _, i in found]
        return out

    def bytes_per_vector(self) -> float:
        """In memory: the float32 vector and R 4-byte links (DiskANN's SSD layout is the same
        record, padded to sectors; its RAM then holds only PQ codes)."""
        return self.dim * 4 + self.R * 4
