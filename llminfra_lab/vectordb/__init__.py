"""Vector databases and ANN indexes (chapter 18): finding the nearest of millions of vectors.

Read the files in this order:

    exact.py    ground truth (brute force), recall@k, the data: integer-valued clustered
                vectors and the shipped all-MiniLM-L6-v2 embeddings of the grammar stories
    hnsw.py     HNSW: random layers (mL = 1/ln M), M links (2M on layer 0), the neighbour-
                selection heuristic, greedy descent and the ef beam search, filtered search
    ivf.py      k-means, IVF-Flat, product quantization with ADC tables, IVF-PQ on residuals
    vamana.py   DiskANN's Vamana graph: robust pruning with alpha, greedy search from the medoid
    filters.py  pre-, post- and in-graph filtering, and reciprocal-rank fusion for hybrid search
    peers.py    hnswlib, FAISS (HNSWFlat, IVFFlat, IVFPQ) and LanceDB on the same vectors
    plots.py    the chapter's figures

Every index counts its distance computations (`distance_count`): a cost that does not depend
on the CPU, beside the queries per second that `benchmarks/vectordb_sweep.py` measures.
"""
from __future__ import annotations

from llminfra_lab.vectordb.exact import (
                                           EMBEDDING_FILE,
                                           clustered_vectors,
                                           embed_texts,
                                           exact_search,
                                           load_embeddings,
                                           recall_at_k,
                                           squared_l2,
                                           story_animal,
                                           story_texts,
)
from llminfra_lab.vectordb.filters import filtered_search, reciprocal_rank_fusion
from llminfra_lab.vectordb.hnsw import HNSW, hnsw_bytes_per_vector
from llminfra_lab.vectordb.ivf import IVFPQ, IVFFlat, ProductQuantizer, adc_distances, kmeans
from llminfra_lab.vectordb.peers import (
                                           FAISS_KINDS,
                                           faiss_index,
                                           faiss_search,
                                           hnswlib_index,
                                           hnswlib_search,
                                           lancedb_open,
                                           lancedb_search,
                                           lancedb_table,
                                           timed_sweep,
)
from llminfra_lab.vectordb.plots import SWEEP_FILE, load_sweep, plot_hnsw_layers, plot_pq_split, plot_recall_curves
from llminfra_lab.vectordb.vamana import Vamana, robust_prune

__all__ = [
    "squared_l2", "exact_search", "recall_at_k", "clustered_vectors", "story_texts", "story_animal",
    "embed_texts", "load_embeddings", "EMBEDDING_FILE", "HNSW", "hnsw_bytes_per_vector", "kmeans", "IVFFlat",
    "ProductQuantizer", "adc_distances", "IVFPQ", "Vamana", "robust_prune", "filtered_search",
    "reciprocal_rank_fusion", "FAISS_KINDS", "hnswlib_index", "hnswlib_search", "faiss_index", "faiss_search",
    "lancedb_table", "lancedb_open", "lancedb_search", "timed_sweep", "SWEEP_FILE", "load_sweep",
    "plot_hnsw_layers", "plot_pq_split", "plot_recall_curves",
]
