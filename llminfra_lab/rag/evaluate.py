"""Evaluating retrieval, and RAGAS-style checks of an answer.

Retrieval is scored against the shipped question set (`assets/rag/questions.json`): hand-
written questions about this book, each naming the section(s) that answer it and a short
passage of evidence that the tests find verbatim in that section. A retriever returns
chunks; `ranked_sections` turns them into the sections they come from (first occurrence
wins), so every chunking is judged on the same labels. With R the set of answering
sections and a ranked list of sections:

    recall@k  = |R in top k| / |R|
    MRR       = mean over questions of 1 / (rank of the first section in R)   (0 if none)
    nDCG@k    = sum_{i <= k, s_i in R} 1 / log2(i + 1)  divided by the same sum for an ideal ranking

RAGAS (Es et al., 2023) scores a generated answer instead. Its definitions, as the RAGAS
documentation gives them:

    faithfulness          = (claims of the answer that the retrieved context supports) / (claims of the answer)
    context precision@K   = sum_{k <= K} precision@k * v_k / (number of relevant chunks in the top K)

where v_k is 1 when the chunk at rank k is relevant. RAGAS asks an LLM to split the answer
into claims and to judge each claim and chunk; the functions here take those judgements
as input (and `supported` offers a lexical stand-in judge), so the arithmetic is exact.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from importlib import resources

import numpy as np

from llminfra_lab.checks import positive_int
from llminfra_lab.rag.chunking import Chunk

__all__ = ["load_questions", "ranked_sections", "recall_at_k", "reciprocal_rank", "ndcg_at_k", "score_run",
           "faithfulness", "context_precision", "supported"]


def load_questions() -> list[dict]:
    """The shipped question set: [{"id", "question", "answer", "sections", "evidence"}]."""
    return json.loads(resources.files("llminfra_lab").joinpath("assets", "rag", "questions.json")
                      .read_text(encoding="utf-8"))


def ranked_sections(ranking: Sequence[int], chunks: Sequence[Chunk]) -> list[str]:
    """Section ids of the ranked chunk indices, best first, each section once."""
    seen: dict[str, None] = {}
    for i in ranking:
        seen.setdefault(chunks[i].section, None)
    return list(seen)


def _check(ranked: Sequence[str], relevant: Sequence[str]) -> set:
    if not relevant:
        raise ValueError("relevant must name at least one item")
    if len(set(ranked)) != len(ranked):
        raise ValueError("ranked lists an item twice")
    return set(relevant)


def recall_at_k(ranked: Sequence[str], relevant: Sequence[str], k: int) -> float:
    """Fraction of the relevant items found in the top k."""
    positive_int("k", k)
    rel = _check(ranked, relevant)
    return len(rel.intersection(ranked[:k])) / len(rel)


def reciprocal_rank(ranked: Sequence[str], relevant: Sequence[str]) -> float:
    """1 / rank (from 1) of the first relevant item; 0 when none is ranked."""
    rel = _check(ranked, relevant)
    return next((1.0 / i for i, item in enumerate(ranked, start=1) if item in rel), 0.0)


def ndcg_at_k(ranked: Sequence[str], relevant: Sequence[str], k: int) -> float:
    """Binary-relevance nDCG@k: DCG of the ranking over DCG of one with every relevant item first."""
    positive_int("k", k)
    rel = _check(ranked, relevant)
    dcg = sum(1.0 / math.log2(i + 1) for i, item in enumerate(ranked[:k], start=1) if item in rel)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(rel), k) + 1))
    return dcg / ideal


def score_run(rankings: Sequence[Sequence[str]], questions: Sequence[dict], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Mean recall@k for each k, MRR and nDCG@10 of one retriever over a question set
    (rankings[i] is the ranked section list for questions[i])."""
    if len(rankings) != len(questions) or not questions:
        raise ValueError(f"need one ranking per question, got {len(rankings)} rankings, {len(questions)} questions")
    out = {f"recall@{k}": float(np.mean([recall_at_k(r, q["sections"], k) for r, q in zip(rankings, questions)]))
           for k in ks}
    out["MRR"] = float(np.mean([reciprocal_rank(r, q["sections"]) for r, q in zip(rankings, questions)]))
    out["nDCG@10"] = float(np.mean([ndcg_at_k(r, q["sections"], 10) for r, q in zip(rankings, questions)]))
    return out


def faithfulness(verdicts: Sequence[bool]) -> float:
    """RAGAS faithfulness: supported claims / claims, from one verdict per claim of the answer."""
    if not len(verdicts):
        raise ValueError("verdicts must hold one verdict per claim (an answer with no claims has no score)")
    return sum(bool(v) for v in verdicts) / len(verdicts)


def context_precision(relevance: Sequence[bool]) -> float:
    """RAGAS context precision@K over the K retrieved chunks, relevance[k-1] = v_k:
    sum_k precision@k * v_k / (relevant chunks in the top K); 0 when none is relevant."""
    if not len(relevance):
        raise ValueError("relevance must hold one judgement per retrieved chunk")
    hits, total = 0, 0.0
    for k, v in enumerate(relevance, start=1):
        if v:
            hits += 1
            total += hits / k
    return total / hits if hits else 0.0


def supported(claim: str, contexts: Sequence[str], threshold: float = 0.8) -> bool:
    """A lexical stand-in for RAGAS's LLM judge: is at least `threshold` of the claim's
    content words (4+ letters, or containing a digit) present in one context?"""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    words = {w for w in re.findall(r"[a-z0-9.,%]+", claim.lower()) if len(w) >= 4 or any(c.isdigit() for c in w)}
    words = {w.strip(".,") for w in words} - {""}
    if not words:
        return False
    return any(len(words & set(t.strip(".,") for t in re.findall(r"[a-z0-9.,%]+", c.lower()))) / len(words) >= threshold
               for c in contexts)
