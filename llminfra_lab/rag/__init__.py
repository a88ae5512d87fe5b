"""Retrieval-augmented generation (chapter 17): a retrieval pipeline over this book.

Read the files in this order:

    corpus.py     the book's shipped Markdown snapshot, parsed (Markdown or HTML) into sections
    chunking.py   fixed windows with overlap, recursive by structure, semantic by embedding distance
    sparse.py     Okapi BM25 over an inverted index, equal to rank_bm25.BM25Okapi
    dense.py      the offline all-MiniLM-L6-v2 encoder, shipped chunk embeddings, late interaction
    fusion.py     reciprocal rank fusion, weighted fusion, maximal marginal relevance
    graph.py      an entity graph from the glossary's terms, and query expansion over it
    evaluate.py   recall@k, MRR, nDCG@k; RAGAS faithfulness and context precision
    pipeline.py   every retriever over one index, and the evaluation of them all
    plots.py      the chapter's figures

ANN indexes (HNSW, IVF-PQ, Vamana) are chapter 18's: dense retrieval here is exact.
"""
from __future__ import annotations

from llminfra_lab.rag.chunking import (
                                       SEPARATORS,
                                       Chunk,
                                       chunk_stats,
                                       fixed_chunks,
                                       recursive_chunks,
                                       semantic_chunks,
                                       split_sentences,
)
from llminfra_lab.rag.corpus import Section, book_manifest, book_pages, clean_markdown, load_book, parse_html, parse_markdown, slugify
from llminfra_lab.rag.dense import MODEL_NAME, cosine_scores, embed, load_encoder, load_index, maxsim, model_path, token_vectors
from llminfra_lab.rag.evaluate import (
                                       context_precision,
                                       faithfulness,
                                       load_questions,
                                       ndcg_at_k,
                                       ranked_sections,
                                       recall_at_k,
                                       reciprocal_rank,
                                       score_run,
                                       supported,
)
from llminfra_lab.rag.fusion import minmax, mmr, rrf, weighted_fusion
from llminfra_lab.rag.graph import Term, entity_graph, expand_query, find_entities, parse_glossary
from llminfra_lab.rag.pipeline import RETRIEVERS, BookIndex, evaluate_retrievers
from llminfra_lab.rag.plots import load_results, plot_chunk_size, plot_entity_graph, plot_pipeline, plot_retrievers
from llminfra_lab.rag.sparse import BM25, tokenize, top_k

__all__ = [
    "Section", "slugify", "clean_markdown", "parse_markdown", "parse_html", "book_pages", "book_manifest", "load_book",
    "Chunk", "SEPARATORS", "fixed_chunks", "recursive_chunks", "split_sentences", "semantic_chunks", "chunk_stats",
    "tokenize", "BM25", "top_k", "MODEL_NAME", "model_path", "load_encoder", "embed", "token_vectors", "maxsim",
    "cosine_scores", "load_index", "rrf", "minmax", "weighted_fusion", "mmr", "Term", "parse_glossary",
    "entity_graph", "find_entities", "expand_query", "load_questions", "ranked_sections", "recall_at_k",
    "reciprocal_rank", "ndcg_at_k", "score_run", "faithfulness", "context_precision", "supported", "BookIndex",
    "RETRIEVERS", "evaluate_retrievers", "load_results", "plot_pipeline", "plot_chunk_size", "plot_retrievers",
    "plot_entity_graph",
]
