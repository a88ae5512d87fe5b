"""Lab 18 (vector databases): implement-it tasks and exercises."""
from __future__ import annotations

import random

import numpy as np

from llminfra_lab.labkit import exercise, task
from llminfra_lab.vectordb import HNSW, adc_distances, hnsw_bytes_per_vector, robust_prune

# ----------------------------------------------------------------------------- implement-it tasks


def _select_reference(x, candidates, m):
    index = HNSW(candidates.shape[1], M=2)
    index.data = candidates
    dist = ((candidates - x) ** 2).sum(1)
    return [i for _, i in index.select_neighbours(x, [(float(d), i) for i, d in enumerate(dist)], m)]


def _select_nearest(x, candidates, m):
    dist = ((candidates - x) ** 2).sum(1)
    return [int(i) for i in np.lexsort((np.arange(len(dist)), dist))[:m]]   # the simple rule, no heuristic


def _select_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(12):
        g = np.random.default_rng(rng.randrange(2**31))
        n, dim = rng.choice([5, 12, 30]), rng.choice([2, 3, 8])
        cands = np.rint(g.normal(0, 10, size=(n, dim))).astype(np.float32)
        x = np.rint(g.normal(0, 10, size=dim)).astype(np.float32)
        cases.append((x, cands, rng.choice([2, 3, 4, 6])))
    return cases


task(
    "vectordb.select_neighbours",
    "HNSW's neighbour-selection heuristic. x (dim,), candidates (c, dim), m: walk the candidates by "
    "increasing squared distance to x (ties: smaller index first) and keep candidate e only if, for every "
    "kept r, |e - r|^2 >= |e - x|^2 (e is closer to x than to anything kept). Stop at m kept. If c <= m, "
    "keep them all. Return the kept indices, nearest first.",
    reference=_select_reference,
    cases=_select_cases,
    mistake=_select_nearest,
)


def _adc_reference(table, codes):
    return adc_distances(table, codes)


def _adc_one_table(table, codes):
    return table[0, codes.astype(np.int64)].sum(1)          # looks every code up in sub-quantizer 0's row


def _adc_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(10):
        g = np.random.default_rng(rng.randrange(2**31))
        m, ksub, n = rng.choice([2, 4, 8]), rng.choice([4, 16, 256]), rng.choice([1, 5, 40])
        cases.append((g.random((m, ksub)), g.integers(0, ksub, size=(n, m)).astype(np.uint8)))
    return cases


task(
    "vectordb.adc_distances",
    "Asymmetric distance computation. table (m, ksub): table[j, c] is the squared distance from the query's "
    "j-th sub-vector to centroid c of sub-quantizer j. codes (n, m) uint8. Return (n,) distances: for each "
    "code, the sum over j of table[j, code[j]].",
    reference=_adc_reference,
    cases=_adc_cases,
    mistake=_adc_one_table,
)


def _prune_reference(p, candidates, alpha, R):
    dist = ((candidates - p) ** 2).sum(1)
    return robust_prune(p, {i: float(d) for i, d in enumerate(dist)}, candidates, alpha, R)


def _prune_no_alpha(p, candidates, alpha, R):
    return _prune_reference(p, candidates, 1.0, R)           # forgets alpha: prunes as hard as alpha = 1


def _prune_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(12):
        g = np.random.default_rng(rng.randrange(2**31))
        n, dim = rng.choice([6, 15, 30]), rng.choice([2, 4])
        cands = np.rint(g.normal(0, 10, size=(n, dim))).astype(np.float32)
        cases.append((np.zeros(dim, dtype=np.float32), cands, rng.choice([1.2, 1.5, 2.0]), rng.choice([3, 5, 8])))
    return cases


task(
    "vectordb.robust_prune",
    "Vamana's RobustPrune. p (dim,), candidates (c, dim), alpha >= 1, R. With d = Euclidean distance: "
    "repeatedly take the remaining candidate nearest to p (ties: smaller index), append its index to the "
    "output, and remove every remaining candidate c with alpha * d(p*, c) <= d(p, c); stop when none "
    "remain or R are chosen. Return the chosen indices in order.",
    reference=_prune_reference,
    cases=_prune_cases,
    mistake=_prune_no_alpha,
)

# ----------------------------------------------------------------------------- exercises


def _pq_params(seed: int) -> dict:
    if seed == 0:
        return {"n": 1_000_000_000, "dim": 128, "m": 8, "nbits": 8}
    rng = random.Random(seed)
    dim = rng.choice([96, 128, 384, 768, 1024])
    return {"n": rng.choice([10**8, 10**9, 5 * 10**9]), "dim": dim, "m": rng.choice([8, 16, 32, 48]) if dim % 16 == 0
            else 8, "nbits": rng.choice([4, 8])}


exercise(
    "vectordb.pq_gigabytes",
    text=lambda n, dim, m, nbits: (
        f"{n:,} vectors of {dim} float32 dimensions are compressed by product quantization with m = {m} "
        f"sub-quantizers of {nbits} bits each. How many GB (10^9 bytes) do the codes take (codes only, no ids)?"),
    params=_pq_params,
    solve=lambda n, dim, m, nbits: n * m * nbits / 8 / 1e9,
    mistake=lambda n, dim, m, nbits: n * m * nbits / 1e9,                       # bits taken for bytes
    hint="Each vector becomes m codes of nbits bits: m x nbits / 8 bytes.",
)


def _layer_params(seed: int) -> dict:
    if seed == 0:
        return {"n": 1_000_000, "M": 16, "layer": 2}
    rng = random.Random(seed)
    return {"n": rng.choice([10**5, 10**6, 10**7]), "M": rng.choice([8, 16, 32, 48]), "layer": rng.choice([1, 2, 3])}


exercise(
    "vectordb.hnsw_layer_count",
    text=lambda n, M, layer: (
        f"An HNSW over {n:,} vectors with M = {M} draws each vector's top layer as floor(-ln U / ln M). "
        f"How many vectors do you expect on layer {layer} or above?"),
    params=_layer_params,
    solve=lambda n, M, layer: n * float(M) ** -layer,
    mistake=lambda n, M, layer: n * 2.718281828459045 ** -layer,                # mL = 1 instead of 1 / ln M
    hint="P(floor(-ln U / ln M) >= l) = P(U <= M^-l) = M^-l.",
)


def _mem_params(seed: int) -> dict:
    if seed == 0:
        return {"dim": 384, "M": 16}
    rng = random.Random(seed)
    return {"dim": rng.choice([128, 384, 768, 1024]), "M": rng.choice([8, 16, 32, 64])}


exercise(
    "vectordb.hnsw_bytes",
    text=lambda dim, M: (
        f"In hnswlib's layout, how many bytes does one vector of {dim} float32 dimensions take in an HNSW with "
        f"M = {M}? Count the vector, an 8-byte label, layer 0's 2M 4-byte links plus a 4-byte count, an 8-byte "
        f"pointer, and the expected upper layers: 1/(M - 1) of them, each (M + 1) x 4 bytes."),
    params=_mem_params,
    solve=lambda dim, M: hnsw_bytes_per_vector(dim, M),
    mistake=lambda dim, M: dim * 4 + 8 + (M + 1) * 4 + 8 + (M + 1) * 4 / (M - 1),   # M links on layer 0, not 2M
    rtol=0.005,
    hint="Layer 0 holds up to 2M links: (2M + 1) x 4 bytes.",
)
