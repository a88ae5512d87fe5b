"""Recall@10 against queries per second for every index of chapter 18, peers included.

On two data sets, in one run: the shipped all-MiniLM-L6-v2 embeddings of the grammar
stories (benchmarks/vectordb_embed.py) and a larger seeded clustered set (5,000 vectors of 64 dimensions). For each index,
ours (HNSW, IVF-Flat, IVF-PQ, Vamana) and the peers' (hnswlib; FAISS IndexHNSWFlat,
IndexIVFFlat, IndexIVFPQ; LanceDB's IVF_PQ on an on-disk table), it sweeps the search
knob (ef, nprobe, L) and records recall@10 against exact search, queries per second on
one thread (best of 3) and, for ours, distance computations per query; plus build time
and memory per vector. Writes llminfra_lab/assets/vectordb/sweep.json. About 10-20
minutes on 2 busy CPU cores (the from-scratch indexes are pure Python); the two data
sets can run side by side and be merged:

    python benchmarks/vectordb_sweep.py [--n-clustered 5000]
    python benchmarks/vectordb_sweep.py --dataset stories --part /tmp/s.json   # and --dataset clustered
    python benchmarks/vectordb_sweep.py --merge /tmp/s.json /tmp/c.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from llminfra_lab.shipped import ASSETS
from llminfra_lab.vectordb import (
    HNSW,
    IVFPQ,
    SWEEP_FILE,
    IVFFlat,
    Vamana,
    clustered_vectors,
    exact_search,
    faiss_index,
    faiss_search,
    hnswlib_index,
    hnswlib_search,
    lancedb_search,
    lancedb_table,
    load_embeddings,
    story_animal,
    story_texts,
    timed_sweep,
)

K, M, EF_CONSTRUCTION = 10, 16, 100
EFS = [10, 16, 32, 64, 128]
NPROBES = [1, 2, 4, 8, 16]
LS = [10, 16, 32, 64, 128]


def _ours(index, search, queries, truth, params):
    rows = []
    for row, p in zip(timed_sweep(search, queries, truth, params, repeats=1), params):
        index.distance_count = 0
        search(queries, K, p)
        rows.append({**row, "distances": index.distance_count / len(queries)})
    return rows


def _timed_build(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _file_bytes(save, n):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index"
        save(str(path))
        return path.stat().st_size / n


def run_dataset(name, base, queries, metadata, nlist, m):
    import faiss

    n, dim = base.shape
    truth = exact_search(base, queries, K)
    curves, build, memory = {}, {}, {}

    ours_h, build["ours HNSW"] = _timed_build(lambda: HNSW(dim, M, EF_CONSTRUCTION, seed=0).add(base))
    curves["ours HNSW"] = _ours(ours_h, lambda q, k, p: ours_h.search(q, k, p), queries, truth, EFS)
    memory["ours HNSW"] = ours_h.bytes_per_vector()
    lib, build["hnswlib"] = _timed_build(lambda: hnswlib_index(base, M, EF_CONSTRUCTION, seed=0))
    curves["hnswlib"] = timed_sweep(lambda q, k, p: hnswlib_search(lib, q, k, p), queries, truth, EFS, repeats=3)
    memory["hnswlib"] = _file_bytes(lib.save_index, n)

    fh, build["FAISS HNSWFlat"] = _timed_build(lambda: faiss_index("hnsw_flat", base, M=M, ef_construction=EF_CONSTRUCTION))
    curves["FAISS HNSWFlat"] = timed_sweep(lambda q, k, p: faiss_search(fh, q, k, p), queries, truth, EFS, repeats=3)
    memory["FAISS HNSWFlat"] = _file_bytes(lambda p: faiss.write_index(fh, p), n)

    ivf, build["ours IVF-Flat"] = _timed_build(lambda: IVFFlat(dim, nlist, seed=0).train(base).add(base))
    curves["ours IVF-Flat"] = _ours(ivf, lambda q, k, p: ivf.search(q, k, p), queries, truth, NPROBES)
    memory["ours IVF-Flat"] = ivf.bytes_per_vector()
    fi, build["FAISS IVFFlat"] = _timed_build(lambda: faiss_index("ivf_flat", base, nlist=nlist))
    curves["FAISS IVFFlat"] = timed_sweep(lambda q, k, p: faiss_search(fi, q, k, p), queries, truth, NPROBES, repeats=3)
    memory["FAISS IVFFlat"] = _file_bytes(lambda p: faiss.write_index(fi, p), n)

    pq, build[f"ours IVF-PQ m={m}"] = _timed_build(lambda: IVFPQ(dim, nlist, m, 8, seed=0).train(base).add(base))
    curves[f"ours IVF-PQ m={m}"] = _ours(pq, lambda q, k, p: pq.search(q, k, p), queries, truth, NPROBES)
    memory[f"ours IVF-PQ m={m}"] = pq.bytes_per_vector()
    fp, build[f"FAISS IVFPQ m={m}"] = _timed_build(lambda: faiss_index("ivf_pq", base, nlist=nlist, m=m, nbits=8))
    curves[f"FAISS IVFPQ m={m}"] = timed_sweep(lambda q, k, p: faiss_search(fp, q, k, p), queries, truth, NPROBES,
                                               repeats=3)
    memory[f"FAISS IVFPQ m={m}"] = _file_bytes(lambda p: faiss.write_index(fp, p), n)

    vam, build["ours Vamana"] = _timed_build(lambda: Vamana(dim, R=32, L=64, alpha=1.2, seed=0).build(base))
    curves["ours Vamana"] = _ours(vam, lambda q, k, p: vam.search(q, k, p), queries, truth, LS)
    memory["ours Vamana"] = vam.bytes_per_vector()

    with tempfile.TemporaryDirectory() as tmp:
        table, build[f"LanceDB IVF_PQ m={m}"] = _timed_build(
            lambda: lancedb_table(tmp, base, metadata, "ivf_pq", num_partitions=nlist, num_sub_vectors=m))
        curves[f"LanceDB IVF_PQ m={m}"] = timed_sweep(lambda q, k, p: lancedb_search(table, q, k, nprobes=p),
                                                      queries, truth, NPROBES)
        curves[f"LanceDB IVF_PQ m={m} refine x4"] = timed_sweep(
            lambda q, k, p: lancedb_search(table, q, k, nprobes=p, refine_factor=4), queries, truth, NPROBES)
        indices = table.list_indices()
        size = getattr(indices[0], "size_bytes", None) if indices else None
        memory[f"LanceDB IVF_PQ m={m}"] = size / n if size else None
    ratio = [{"ef": ef, "ours": o["recall"], "hnswlib": h["recall"], "difference": o["recall"] - h["recall"],
              "qps_ratio": o["qps"] / h["qps"]}
             for ef, o, h in zip(EFS, curves["ours HNSW"], curves["hnswlib"])]
    return {"n": n, "dim": dim, "n_queries": len(queries), "nlist": nlist, "m": m, "curves": curves,
            "build_seconds": build, "memory_bytes_per_vector": memory}, ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-clustered", type=int, default=5000)
    parser.add_argument("--dataset", choices=["stories", "clustered", "both"], default="both",
                        help="run one data set into --part (two can run side by side), or both")
    parser.add_argument("--part", default=None, help="with --dataset: where to write that data set's part")
    parser.add_argument("--merge", nargs="*", default=None, help="merge parts written by --dataset runs")
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)
    os.environ["HF_HUB_OFFLINE"] = "1"
    parts = {}
    if args.merge:
        for path in args.merge:
            parts.update(json.loads(Path(path).read_text(encoding="utf-8")))
    else:
        n_q = 200
        if args.dataset in ("stories", "both"):
            emb = load_embeddings()
            animals = [{"animal": story_animal(t)} for t in story_texts(len(emb))]
            parts["stories"] = run_dataset("stories", emb[:-n_q], emb[-n_q:], animals[:-n_q], nlist=32, m=48)
        if args.dataset in ("clustered", "both"):
            syn = clustered_vectors(args.n_clustered + n_q, 64, n_clusters=64, seed=0)
            parts["clustered"] = run_dataset("clustered", syn[:-n_q], syn[-n_q:], None, nlist=64, m=8)
        if args.dataset != "both":
            Path(args.part or f"sweep_{args.dataset}.json").write_text(json.dumps(parts), encoding="utf-8")
            print(f"wrote part {args.part}")
            return
    datasets = {name: d for name, (d, _) in parts.items()}
    ratios = {name: r for name, (_, r) in parts.items()}
    result = {
        "k": K, "M": M, "ef_construction": EF_CONSTRUCTION, "datasets": datasets, "hnsw_vs_hnswlib": ratios,
        "memory": {name: d["memory_bytes_per_vector"] for name, d in datasets.items()},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, one search thread",
    }
    out = ASSETS / SWEEP_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    for name, rows in ratios.items():
        for r in rows:
            print(f"{name:<10} ef={r['ef']:>4} recall ours {r['ours']:.3f} hnswlib {r['hnswlib']:.3f} "
                  f"QPS ours/hnswlib {r['qps_ratio']:.4f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
