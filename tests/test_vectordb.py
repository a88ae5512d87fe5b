"""Chapter 18: ANN indexes against brute force and against hnswlib, FAISS and LanceDB."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llminfra_lab import vectordb as vdb


def _data(n=600, dim=16, n_q=40, seed=0, clusters=8):
    x = vdb.clustered_vectors(n + n_q, dim, n_clusters=clusters, seed=seed)
    return x[:n], x[n:]


def _plain_knn(base, q, k, allowed=None):
    """Brute force written plainly: every distance in Python floats, sorted by (distance, id)."""
    rows = []
    for qi in q:
        scored = [(sum((float(a) - float(b)) ** 2 for a, b in zip(qi, xi)), i) for i, xi in enumerate(base)
                  if allowed is None or allowed[i]]
        rows.append([i for _, i in sorted(scored)[:k]])
    return rows


# ----------------------------------------------------------------------------- ground truth

def test_exact_search_equals_plain_brute_force():
    base, q = _data(200, 8, 10)
    assert vdb.exact_search(base, q, 5).tolist() == _plain_knn(base, q, 5)
    allowed = np.arange(200) % 3 == 0
    assert vdb.exact_search(base, q, 5, allowed=allowed).tolist() == _plain_knn(base, q, 5, allowed)


def test_exact_search_pads_when_too_few_allowed():
    base, q = _data(50, 4, 3)
    allowed = np.zeros(50, dtype=bool)
    allowed[[3, 7]] = True
    out = vdb.exact_search(base, q, 4, allowed=allowed)
    assert (out[:, 2:] == -1).all() and set(out[:, :2].ravel()) <= {3, 7}


def test_recall_at_k_by_hand():
    assert vdb.recall_at_k(np.array([[1, 2, 3], [4, 5, 6]]), np.array([[3, 2, 9], [7, 8, 4]])) == pytest.approx(3 / 6)
    assert vdb.recall_at_k(np.array([[1, -1]]), np.array([[1, -1]])) == 1.0


def test_clustered_vectors_are_integers_and_seeded():
    a, b = vdb.clustered_vectors(100, 8, seed=3), vdb.clustered_vectors(100, 8, seed=3)
    assert a.dtype == np.float32 and (a == np.rint(a)).all() and (a == b).all()


def test_story_texts_and_animals():
    texts = vdb.story_texts(50)
    assert len(set(texts)) == 50 and all(vdb.story_animal(t) in
                                         {"cat", "dog", "bird", "fox", "rabbit", "bear", "frog", "duck"} for t in texts)


def test_shipped_embeddings_are_unit_length_and_match_the_texts():
    emb = vdb.load_embeddings()
    assert emb.shape == (2000, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_recomputed_embeddings_equal_the_shipped_ones():
    """Recomputing a few rows with the offline all-MiniLM-L6-v2 gives the shipped vectors (float16 storage)."""
    texts = vdb.story_texts(2000)
    rows = [0, 1, 999, 1999]
    fresh = vdb.embed_texts([texts[i] for i in rows])
    np.testing.assert_allclose(fresh, vdb.load_embeddings()[rows], atol=2e-3)


# ----------------------------------------------------------------------------- HNSW

def test_hnsw_levels_follow_ml_one_over_ln_m():
    """P(layer >= l) = M^-l with mL = 1/ln M (Malkov and Yashunin 2016, section 4)."""
    index = vdb.HNSW(4, M=16, seed=0)
    levels = np.array([index.random_level() for _ in range(40000)])
    assert index.level_mult == pytest.approx(1 / math.log(16))
    assert (levels >= 1).mean() == pytest.approx(1 / 16, abs=0.005)
    assert (levels >= 2).mean() == pytest.approx(1 / 256, abs=0.0015)


def test_hnsw_degree_bounds_and_layers():
    base, _ = _data(500, 8)
    index = vdb.HNSW(8, M=6, ef_construction=32, seed=0).add(base)
    for node in index.links:
        assert len(node[0]) <= 12 and all(len(layer) <= 6 for layer in node[1:])
        for layer, links in enumerate(node):
            assert all(len(index.links[j]) > layer for j in links)   # neighbours live on that layer
    sizes = index.layer_sizes()
    assert sizes[0] == 500 and all(a >= b for a, b in zip(sizes, sizes[1:]))


def _plain_heuristic(x, cands, m):
    order = sorted(range(len(cands)), key=lambda i: (float(((cands[i] - x) ** 2).sum()), i))
    if len(order) <= m:
        return order
    kept = []
    for i in order:
        d = float(((cands[i] - x) ** 2).sum())
        if all(float(((cands[i] - cands[r]) ** 2).sum()) >= d for r in kept):
            kept.append(i)
        if len(kept) == m:
            break
    return kept


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(1, 6))
def test_neighbour_heuristic_equals_plain_version(seed, m):
    g = np.random.default_rng(seed)
    cands = np.rint(g.normal(0, 5, size=(15, 3))).astype(np.float32)
    x = np.zeros(3, dtype=np.float32)
    index = vdb.HNSW(3, M=2)
    index.data = cands
    got = index.select_neighbours(x, [(float(((c - x) ** 2).sum()), i) for i, c in enumerate(cands)], m)
    assert [i for _, i in got] == _plain_heuristic(x, cands, m)


def test_hnsw_with_wide_beam_is_exact():
    base, q = _data(300, 8, 20)
    index = vdb.HNSW(8, M=8, ef_construction=64, seed=1).add(base)
    assert vdb.recall_at_k(index.search(q, 10, ef=300), vdb.exact_search(base, q, 10)) == 1.0


def test_hnsw_recall_matches_hnswlib_small():
    """Small version of the chapter's check (hnswlib, same M, efConstruction and data)."""
    base, q = _data(800, 16, 60, clusters=16)
    truth = vdb.exact_search(base, q, 10)
    ours = vdb.HNSW(16, M=8, ef_construction=48, seed=0).add(base)
    lib = vdb.hnswlib_index(base, M=8, ef_construction=48, seed=0)
    for ef in (10, 20, 40):
        assert abs(vdb.recall_at_k(ours.search(q, 10, ef), truth)
                   - vdb.recall_at_k(vdb.hnswlib_search(lib, q, 10, ef), truth)) <= 0.03


@pytest.mark.slow
def test_hnsw_recall_within_002_of_hnswlib():
    """HNSW recall@10 at each ef within 0.02 of hnswlib's with the same M, efConstruction and data
    (chapters.yml check; Malkov and Yashunin 2016; hnswlib 0.8, github.com/nmslib/hnswlib)."""
    base, q = _data(3000, 32, 300, clusters=32)
    truth = vdb.exact_search(base, q, 10)
    ours = vdb.HNSW(32, M=8, ef_construction=64, seed=0).add(base)
    lib = vdb.hnswlib_index(base, M=8, ef_construction=64, seed=0)
    for ef in (10, 16, 32, 64, 128):
        r_ours = vdb.recall_at_k(ours.search(q, 10, ef), truth)
        r_lib = vdb.recall_at_k(vdb.hnswlib_search(lib, q, 10, ef), truth)
        assert abs(r_ours - r_lib) <= 0.02, (ef, r_ours, r_lib)


def test_hnsw_bytes_per_vector_formula():
    assert vdb.hnsw_bytes_per_vector(384, 16) == pytest.approx(1536 + 8 + 33 * 4 + 8 + 17 * 4 / 15)


# ----------------------------------------------------------------------------- filters and fusion

def test_filter_strategies():
    base, q = _data(600, 8, 30)
    index = vdb.HNSW(8, M=8, ef_construction=48, seed=0).add(base)
    allowed = np.arange(600) % 10 == 0
    truth = vdb.exact_search(base, q, 10, allowed=allowed)
    pre = vdb.filtered_search(index, q, 10, allowed, "pre")
    assert (pre == truth).all()
    in_graph = vdb.filtered_search(index, q, 10, allowed, "in_graph", ef=64)
    post = vdb.filtered_search(index, q, 10, allowed, "post", ef=64)
    for out in (in_graph, post):
        assert allowed[out[out >= 0]].all()
    assert vdb.recall_at_k(in_graph, truth) > vdb.recall_at_k(post, truth)
    lib = vdb.hnswlib_index(base, M=8, ef_construction=48)
    assert abs(vdb.recall_at_k(vdb.hnswlib_search(lib, q, 10, 64, allowed), truth)
               - vdb.recall_at_k(in_graph, truth)) <= 0.1


def test_reciprocal_rank_fusion_by_hand():
    # doc 2: 1/61 + 1/62; doc 1: 1/61 + 1/63; doc 3: 1/62; doc 4: 1/63
    assert vdb.reciprocal_rank_fusion([[1, 2, 4], [2, 3, 1]]) == [2, 1, 3, 4]
    assert vdb.reciprocal_rank_fusion([[5], [6]], top=1) == [5]


# ----------------------------------------------------------------------------- IVF and PQ

@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000), nlist=st.integers(1, 12))
def test_ivf_flat_with_all_lists_is_exact(seed, nlist):
    base, q = _data(200, 6, 10, seed=seed)
    index = vdb.IVFFlat(6, nlist, seed=seed).train(base, iters=5).add(base)
    assert (index.search(q, 7, nprobe=nlist) == vdb.exact_search(base, q, 7)).all()


def test_kmeans_finds_separated_blobs():
    g = np.random.default_rng(0)
    centres = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], dtype=np.float32)
    x = np.concatenate([c + g.normal(0, 1, size=(50, 2)) for c in centres]).astype(np.float32)
    found = vdb.kmeans(x, 4, seed=2)
    means = np.stack([x[i * 50:(i + 1) * 50].mean(0) for i in range(4)])
    assert np.allclose(found[np.lexsort(found.T[::-1])], means[np.lexsort(means.T[::-1])], atol=1e-3)


def test_pq_m8_8bits_stores_8_bytes_per_vector():
    """IVF-PQ with m=8, 8 bits stores 8 bytes per vector (Jegou, Douze and Schmid 2011; FAISS code_size)."""
    import faiss

    base, _ = _data(2000, 32, 1)
    index = vdb.IVFPQ(32, nlist=8, m=8, nbits=8).train(base, iters=5).add(base)
    codes = np.concatenate(index.codes)
    assert codes.dtype == np.uint8 and codes.shape == (2000, 8) and codes.nbytes == 8 * 2000
    assert index.pq.code_bytes() == 8 and index.bytes_per_vector() == 16     # with the 8-byte id
    assert faiss.IndexIVFPQ(faiss.IndexFlatL2(32), 32, 8, 8, 8).code_size == 8


def test_adc_equals_distance_to_the_reconstruction():
    base, q = _data(1500, 16, 5)
    pq = vdb.ProductQuantizer(16, m=4, nbits=6).train(base, iters=5)
    codes = pq.encode(base)
    recon = pq.decode(codes)
    for qi in q:
        np.testing.assert_allclose(vdb.adc_distances(pq.distance_table(qi), codes),
                                   ((recon - qi) ** 2).sum(1), rtol=1e-4, atol=1e-2)


def test_ivf_pq_recall_close_to_faiss():
    import faiss

    faiss.omp_set_num_threads(1)
    base, q = _data(3000, 32, 100, clusters=32)
    truth = vdb.exact_search(base, q, 10)
    ours = vdb.IVFPQ(32, nlist=16, m=8).train(base, iters=10).add(base)
    theirs = vdb.faiss_index("ivf_pq", base, nlist=16, m=8)
    for nprobe in (1, 4, 16):
        assert abs(vdb.recall_at_k(ours.search(q, 10, nprobe), truth)
                   - vdb.recall_at_k(vdb.faiss_search(theirs, q, 10, nprobe), truth)) <= 0.06


def test_faiss_peers_agree_with_exact_when_exhaustive():
    base, q = _data(400, 8, 20)
    truth = vdb.exact_search(base, q, 5)
    flat = vdb.faiss_index("ivf_flat", base, nlist=4)
    assert vdb.recall_at_k(vdb.faiss_search(flat, q, 5, 4), truth) == 1.0
    hnsw = vdb.faiss_index("hnsw_flat", base, M=8, ef_construction=40)
    assert vdb.recall_at_k(vdb.faiss_search(hnsw, q, 5, 400), truth) == 1.0


# ----------------------------------------------------------------------------- Vamana

def _plain_prune(p, cands, alpha, R):
    pool = sorted(range(len(cands)), key=lambda i: (math.dist(p, cands[i]), i))
    out = []
    while pool and len(out) < R:
        star = pool.pop(0)
        out.append(star)
        pool = [i for i in pool if alpha * math.dist(cands[star], cands[i]) > math.dist(p, cands[i])]
    return out


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.sampled_from([1.0, 1.2, 1.5, 2.0]), R=st.integers(1, 8))
def test_robust_prune_equals_plain_version(seed, alpha, R):
    g = np.random.default_rng(seed)
    cands = np.rint(g.normal(0, 10, size=(20, 3))).astype(np.float32)
    p = np.zeros(3, dtype=np.float32)
    d = ((cands - p) ** 2).sum(1)
    got = vdb.robust_prune(p, {i: float(v) for i, v in enumerate(d)}, cands, alpha, R)
    assert got == _plain_prune(p.tolist(), cands.tolist(), alpha, R)


def test_vamana_degree_and_recall():
    base, q = _data(500, 8, 30)
    index = vdb.Vamana(8, R=12, L=32, alpha=1.2, seed=0).build(base)
    assert max(len(links) for links in index.links) <= 12
    assert vdb.recall_at_k(index.search(q, 10, L=40), vdb.exact_search(base, q, 10)) >= 0.95
    allowed = np.arange(500) % 4 == 0
    out = index.search(q, 5, L=60, allowed=allowed)
    assert allowed[out[out >= 0]].all()


# ----------------------------------------------------------------------------- LanceDB

_REOPEN = """
import json, sys
import numpy as np
from llminfra_lab import vectordb as vdb
path, q = sys.argv[1], np.array(json.loads(sys.argv[2]), dtype=np.float32)
table = vdb.lancedb_open(path)
print(json.dumps(vdb.lancedb_search(table, q, 5, where="animal = 'fox'", nprobes=4).tolist()))
"""


def test_lancedb_filter_and_persistence_across_processes(tmp_path):
    base, q = _data(600, 16, 3)
    meta = [{"animal": ["fox", "cat", "dog"][i % 3]} for i in range(600)]
    table = vdb.lancedb_table(tmp_path, base, meta, "ivf_pq", num_partitions=4, num_sub_vectors=4)
    found = vdb.lancedb_search(table, q, 5, where="animal = 'fox'", nprobes=4)
    assert (found % 3 == 0).all()
    exact = vdb.lancedb_search(vdb.lancedb_table(tmp_path / "flat", base, meta, "none"), q, 5)
    assert (exact == vdb.exact_search(base, q, 5)).all()
    again = subprocess.run([sys.executable, "-c", _REOPEN, str(tmp_path), json.dumps(q.tolist())],
                           capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(again.stdout.strip().splitlines()[-1]) == found.tolist()


# ----------------------------------------------------------------------------- shipped sweep and plots

def test_shipped_sweep():
    sweep = vdb.load_sweep()
    for name, rows in sweep["hnsw_vs_hnswlib"].items():
        assert all(abs(r["difference"]) <= 0.02 for r in rows), name
    mem = sweep["memory"]["clustered"]
    assert mem["ours IVF-PQ m=8"] == 16


def test_plots(drawn):
    drawn(vdb.plot_hnsw_layers(n=40, M=3), min_artists=20, title="layer 0")
    drawn(vdb.plot_pq_split(), min_artists=8, title="Product quantization")
    drawn(vdb.plot_recall_curves(vdb.load_sweep(), "clustered"), min_artists=5, title="clustered")
    drawn(vdb.plot_recall_curves(vdb.load_sweep(), "stories", x="distances"), min_artists=3)


# ----------------------------------------------------------------------------- bad input

def test_input_checks(tmp_path):
    base, q = _data(50, 4, 2)
    with pytest.raises(ValueError, match="same dim"):
        vdb.exact_search(base, q[:, :3], 3)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        vdb.exact_search(base, q, 0)
    with pytest.raises(ValueError, match="allowed must be a bool array"):
        vdb.exact_search(base, q, 3, allowed=np.ones(49, dtype=bool))
    with pytest.raises(ValueError, match="same rows"):
        vdb.recall_at_k(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        vdb.clustered_vectors(0, 4)
    with pytest.raises(ValueError, match="spread must be a finite number"):
        vdb.clustered_vectors(5, 4, spread=-1.0)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        vdb.story_texts(0)
    with pytest.raises(ValueError, match="not a grammar story"):
        vdb.story_animal("hello")
    with pytest.raises(ValueError, match="non-empty list of strings"):
        vdb.embed_texts([])
    with pytest.raises(ValueError, match="M must be an int >= 2"):
        vdb.HNSW(4, M=1)
    with pytest.raises(ValueError, match="dim must be an int >= 1"):
        vdb.HNSW(0)
    index = vdb.HNSW(4, M=4).add(base)
    with pytest.raises(ValueError, match=r"vectors must be \(n, 4\)"):
        index.add(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="allowed must be a bool array"):
        index.search(q, 3, allowed=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="kmeans needs"):
        vdb.kmeans(base[:3], 4)
    with pytest.raises(ValueError, match="train the index"):
        vdb.IVFFlat(4, 2).add(base)
    with pytest.raises(ValueError, match="train the index"):
        vdb.IVFPQ(4, 2, 2).add(base)
    with pytest.raises(ValueError, match="nprobe must be an int >= 1"):
        vdb.IVFFlat(4, 2).train(base).add(base).search(q, 3, nprobe=0)
    with pytest.raises(ValueError, match="divisible by m"):
        vdb.ProductQuantizer(10, 3)
    with pytest.raises(ValueError, match="nbits must be an int in 1..8"):
        vdb.ProductQuantizer(8, 2, nbits=9)
    with pytest.raises(ValueError, match="alpha must be >= 1"):
        vdb.Vamana(4, alpha=0.9)
    with pytest.raises(ValueError, match="R must be an int >= 1"):
        vdb.Vamana(4, R=0)
    with pytest.raises(KeyError, match="unknown filter strategy"):
        vdb.filtered_search(index, q, 3, np.ones(50, dtype=bool), "mid")
    with pytest.raises(ValueError, match="allowed must be a bool array"):
        vdb.filtered_search(index, q, 3, np.ones(50), "pre")
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        vdb.reciprocal_rank_fusion([[1]], k=0)
    with pytest.raises(KeyError, match="unknown FAISS index kind"):
        vdb.faiss_index("lsh", base)
    with pytest.raises(ValueError, match="one dict per vector"):
        vdb.lancedb_table(tmp_path, base, [{}])
    with pytest.raises(KeyError, match="unknown LanceDB index"):
        vdb.lancedb_table(tmp_path, base, None, "diskann")
    with pytest.raises(ValueError, match="x must be 'qps' or 'distances'"):
        vdb.plot_recall_curves(vdb.load_sweep(), "clustered", x="time")
    with pytest.raises(KeyError, match="unknown dataset"):
        vdb.plot_recall_curves(vdb.load_sweep(), "nope")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not a vectordb sweep"):
        vdb.load_sweep(str(bad))
    with pytest.raises(FileNotFoundError, match="vectordb_sweep.py"):
        vdb.load_sweep(str(tmp_path / "missing.json"))
