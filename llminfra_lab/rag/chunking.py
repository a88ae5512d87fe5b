"""Chunking: cutting sections into the pieces a retriever indexes.

Three strategies, all returning `Chunk`s that remember the section they came from (which is
how the question set's answers are matched):

- `fixed_chunks`: windows of `size` words that step by `size - overlap` over a whole page,
  blind to its structure; a window's section is the one its middle word belongs to;
- `recursive_chunks`: split by structure first (subheadings, then paragraphs, then
  sentences, then words) and merge neighbouring pieces up to `max_words`, the scheme of
  LangChain's RecursiveCharacterTextSplitter counted in words;
- `semantic_chunks`: split a section's sentences where the embedding distance between
  neighbours jumps (above a quantile of all gaps), then cap the size.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from llminfra_lab.checks import nonnegative_int, positive_int
from llminfra_lab.rag.corpus import Section

__all__ = ["Chunk", "SEPARATORS", "fixed_chunks", "recursive_chunks", "split_sentences", "semantic_chunks",
           "chunk_stats"]

SEPARATORS = ("\n### ", "\n#### ", "\n\n", "\n", ". ", " ")   # coarsest structure first


@dataclass(frozen=True)
class Chunk:
    """A piece of text to index: its `section` id ("doc#slug"), the section's `title`, `text`."""
    section: str
    title: str
    text: str

    @property
    def doc(self) -> str:
        return self.section.split("#")[0]

    @property
    def indexed(self) -> str:
        """What the retrievers see: the section title, then the text (a contextual header)."""
        return f"{self.title}. {self.text}"


def fixed_chunks(sections: Sequence[Section], size: int, overlap: int = 0) -> list[Chunk]:
    """Windows of `size` words stepping by size - overlap over each page's words (sections
    concatenated in order); each window is labelled with the section of its middle word."""
    positive_int("size", size)
    nonnegative_int("overlap", overlap)
    if overlap >= size:
        raise ValueError(f"overlap must be smaller than size, got overlap={overlap}, size={size}")
    chunks: list[Chunk] = []
    pages: dict[str, list[Section]] = {}
    for s in sections:
        pages.setdefault(s.doc, []).append(s)
    for page in pages.values():
        words, owner = [], []
        for s in page:
            w = s.text.split()
            words += w
            owner += [s] * len(w)
        for start in range(0, max(len(words) - overlap, 1), size - overlap):
            window = words[start:start + size]
            if not window:
                break
            mid = owner[start + len(window) // 2]
            chunks.append(Chunk(mid.id, mid.title, " ".join(window)))
    return chunks


def _pieces(text: str, sep: str) -> list[str]:
    """text cut at sep, keeping it: before a structural separator ("\n...") and after a
    sentence or word one (". ", " "), so that the pieces concatenate back to text."""
    pattern = f"(?={re.escape(sep)})" if sep.startswith("\n") else f"(?<={re.escape(sep)})"
    return [p for p in re.split(pattern, text) if p]


def _join(a: str, b: str) -> str:
    return a + b if not a or not b or a[-1].isspace() or b[0].isspace() else f"{a} {b}"


def _split(text: str, max_words: int, separators: Sequence[str]) -> list[str]:
    """Pieces of at most max_words words: split at the first separator that occurs, merge
    neighbours greedily up to the limit, and recurse into pieces still too long."""
    if len(text.split()) <= max_words:
        return [text]
    sep = next((s for s in separators if s in text.strip()), None)
    if sep is None:
        words = text.split()
        return [" ".join(words[i:i + max_words]) for i in range(0, len(words), max_words)]
    rest = separators[separators.index(sep) + 1:]
    out, current = [], ""
    for piece in _pieces(text, sep):
        for part in _split(piece, max_words, rest):
            joined = _join(current, part)
            if len(joined.split()) <= max_words:
                current = joined
            else:
                if current.strip():
                    out.append(current)
                current = part
    if current.strip():
        out.append(current)
    return out


def recursive_chunks(sections: Sequence[Section], max_words: int,
                     separators: Sequence[str] = SEPARATORS) -> list[Chunk]:
    """Each section split by structure into chunks of at most max_words words (see `_split`)."""
    positive_int("max_words", max_words)
    if not separators:
        raise ValueError("separators must name at least one separator")
    return [Chunk(s.id, s.title, " ".join(piece.split()))
            for s in sections if s.text.strip() for piece in _split(s.text, max_words, tuple(separators))
            if piece.strip()]


def split_sentences(text: str) -> list[str]:
    """Sentences: split after . ! ? followed by whitespace and a capital, a digit or a quote,
    and at blank lines (paragraph and list boundaries)."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(*$])", " ".join(para.split())) if s.strip()]
    return out


def semantic_chunks(sections: Sequence[Section], embed: Callable[[list[str]], np.ndarray], quantile: float = 0.9,
                    max_words: int = 200) -> list[Chunk]:
    """Split each section's sentences where the cosine distance between neighbouring sentences
    exceeds the `quantile` of all such distances in the corpus, and also before a chunk would
    pass max_words (a longer sentence is cut into windows first). `embed` maps a list of
    sentences to unit vectors (n, d)."""
    if not 0 <= quantile <= 1:
        raise ValueError(f"quantile must be in [0, 1], got {quantile!r}")
    positive_int("max_words", max_words)
    def pieces(text):                     # sentences, with any sentence longer than max_words cut into windows
        out = []
        for sent in split_sentences(text):
            w = sent.split()
            out += [" ".join(w[i:i + max_words]) for i in range(0, len(w), max_words)]
        return out

    per_section = [(s, pieces(s.text)) for s in sections if s.text.strip()]
    flat = [sent for _, sents in per_section for sent in sents]
    vecs = np.asarray(embed(flat), dtype=np.float64) if flat else np.zeros((0, 1))
    gaps, offset = [], 0
    for _, sents in per_section:
        v = vecs[offset:offset + len(sents)]
        d = 1.0 - (v[:-1] * v[1:]).sum(1) if len(sents) > 1 else np.zeros(0)
        gaps.append(d)
        offset += len(sents)
    threshold = np.quantile(np.concatenate(gaps), quantile) if sum(len(g) for g in gaps) else np.inf
    chunks = []
    for (s, sents), d in zip(per_section, gaps):
        current = [sents[0]]
        for sent, gap in zip(sents[1:], d):
            if gap > threshold or len(" ".join(current + [sent]).split()) > max_words:
                chunks.append(Chunk(s.id, s.title, " ".join(current)))
                current = []
            current.append(sent)
        chunks.append(Chunk(s.id, s.title, " ".join(current)))
    return chunks


def chunk_stats(chunks: Sequence[Chunk]) -> dict[str, float]:
    """Number of chunks and their mean, minimum and maximum length in words."""
    if not chunks:
        raise ValueError("chunks must not be empty")
    n = [len(c.text.split()) for c in chunks]
    return {"chunks": len(n), "mean_words": float(np.mean(n)), "min_words": min(n), "max_words": max(n)}
