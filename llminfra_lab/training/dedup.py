"""Deduplication of a pre-training corpus: exact (a hash of normalised text) and near (MinHash + LSH).

A pre-training corpus is cleaned before it is tokenized; removing repeated documents is
the step with the clearest payoff (Lee et al. 2022). Exact duplicates fall to a hash of
the normalised text; near duplicates (the same page with a different footer) to MinHash
(Broder 1997): the chance that two documents share the minimum of a random hash over
their shingles equals the Jaccard similarity of the shingle sets, and LSH banding turns
k such minima into a cheap candidate test.
"""
from __future__ import annotations

import hashlib
import math
import numbers
import random

from llminfra_lab.checks import positive_int

__all__ = ["exact_dedup", "shingles", "minhash_signature", "lsh_candidate_probability", "minhash_dedup",
           "lsh_banding_for"]

_MERSENNE = (1 << 61) - 1


def exact_dedup(docs: list[str]) -> list[int]:
    """Indices of the documents kept when exact duplicates (after normalising whitespace
    and case) are dropped; the first copy is kept."""
    if isinstance(docs, str) or not isinstance(docs, (list, tuple)) or not all(isinstance(d, str) for d in docs):
        raise ValueError("docs must be a list of strings")
    seen, keep = set(), []
    for i, doc in enumerate(docs):
        key = hashlib.sha256(" ".join(doc.lower().split()).encode("utf-8")).digest()
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


def shingles(text: str, n: int = 5) -> set[str]:
    """The set of word n-grams of text (lower-cased); a text shorter than n words is one shingle."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    positive_int("n", n)
    words = text.lower().split()
    if len(words) <= n:
        return {" ".join(words)}
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def minhash_signature(text: str, num_perm: int = 128, n: int = 5, seed: int = 0) -> list[int]:
    """MinHash signature: for each of num_perm hash functions h_i(x) = (a_i x + b_i) mod (2^61 - 1),
    the minimum of h_i over the 64-bit hashes x of the text's word n-gram shingles."""
    positive_int("num_perm", num_perm)
    rng = random.Random(seed)
    coeffs = [(rng.randrange(1, _MERSENNE), rng.randrange(0, _MERSENNE)) for _ in range(num_perm)]
    xs = [int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")
          for s in shingles(text, n)]
    return [min((a * x + b) % _MERSENNE for x in xs) for a, b in coeffs]


def lsh_candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """P(two documents of Jaccard similarity s become candidates) with `bands` bands of `rows`
    rows each: 1 - (1 - s^rows)^bands. The S-curve's midpoint is near (1/bands)^(1/rows)."""
    if not (isinstance(similarity, (int, float)) and 0 <= similarity <= 1):
        raise ValueError(f"similarity must be in [0, 1], got {similarity!r}")
    for name, value in (("bands", bands), ("rows", rows)):
        positive_int(f"{name}", value)
    return 1.0 - (1.0 - similarity ** rows) ** bands


def minhash_dedup(docs: list[str], threshold: float = 0.8, bands: int = 16, rows: int = 8,
                  n: int = 5, seed: int = 0) -> list[int]:
    """Indices kept after near-duplicate removal: documents whose signatures collide in any
    LSH band are compared by estimated Jaccard, and a document is dropped when it is at
    least `threshold` similar to an earlier kept one."""
    if isinstance(docs, str) or not isinstance(docs, (list, tuple)) or not all(isinstance(d, str) for d in docs):
        raise ValueError("docs must be a list of strings")
    if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    lsh_candidate_probability(threshold, bands, rows)            # validates bands and rows
    sigs = [minhash_signature(d, bands * rows, n, seed) for d in docs]
    buckets: dict[tuple, list[int]] = {}
    keep = []
    for i, sig in enumerate(sigs):
        keys = [(band, tuple(sig[band * rows:(band + 1) * rows])) for band in range(bands)]
        candidates = {j for key in keys for j in buckets.get(key, [])}
        if any(sum(a == b for a, b in zip(sig, sigs[j])) / len(sig) >= threshold for j in candidates):
            continue
        keep.append(i)
        for key in keys:
            buckets.setdefault(key, []).append(i)
    return keep


def lsh_banding_for(s_high: float, p_high: float, s_low: float, p_low: float,
                    max_rows: int = 64) -> tuple[int, int]:
    """The (bands, rows) with the fewest hashes bands x rows such that pairs of similarity
    s_high become candidates with probability >= p_high and pairs of s_low with <= p_low.

    For each rows r the fewest bands that reach p_high at s_high is
    b = ceil(log(1 - p_high) / log(1 - s_high^r)); more bands only raise P(s_low), so that b
    is the only one to try. Ties in b x r go to fewer rows. Raises ValueError when no
    r <= max_rows works.
    """
    for name, value in (("s_high", s_high), ("p_high", p_high), ("s_low", s_low), ("p_low", p_low)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
            raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    if not s_low < s_high or not p_low < p_high:
        raise ValueError(f"need s_low < s_high and p_low < p_high, got {s_low}, {s_high}, {p_low}, {p_high}")
    positive_int("max_rows", max_rows)
    best: tuple[int, int] | None = None
    for r in range(1, max_rows + 1):
        b = max(1, math.ceil(math.log(1 - p_high) / math.log(1 - s_high ** r)))
        while b > 1 and lsh_candidate_probability(s_high, b - 1, r) >= p_high:   # guard rounding of the log
            b -= 1
        while lsh_candidate_probability(s_high, b, r) < p_high:
            b += 1
        if lsh_candidate_probability(s_low, b, r) <= p_low and (best is None or b * r < best[0] * best[1]):
            best = (b, r)
    if best is None:
        raise ValueError(f"no banding with at most {max_rows} rows meets both targets")
    return best
