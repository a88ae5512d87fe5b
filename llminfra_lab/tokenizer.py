"""A byte-level BPE tokenizer: trainer, encoder and decoder, written to be read.

Byte-pair encoding (Sennrich et al. 2016) starts from the 256 byte values and repeatedly
adds the most frequent adjacent pair as a new token. Byte-level BPE (GPT-2, Radford et
al. 2019) works on UTF-8 bytes, so every string is encodable and decoding is exact.

This trainer learns the SAME merges, and assigns the same ids, as the Hugging Face
`tokenizers` library configured as

    Tokenizer(models.BPE()) with pre_tokenizers.ByteLevel(add_prefix_space=False) and
    trainers.BpeTrainer(vocab_size, special_tokens, min_frequency,
                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())

which takes reproducing four details of its trainer:

1. Pre-tokenization. Text is cut with GPT-2's pattern (contractions, letter runs, digit
   runs, punctuation runs, each optionally led by one space; whitespace) and merges never
   cross a cut. Words are counted once per distinct string.
2. Ids. Special tokens come first, then the 256 bytes ordered by the printable character
   GPT-2's byte-to-unicode table gives them (printable ASCII first, the space byte is 'Ġ'),
   then each new token in the order it is made. A merge whose result already exists (as
   "ab"+"c" and "a"+"bc" both make "abc") reuses the id.
3. Ties. Among pairs with the same count, the pair with the smallest (left id, right id)
   wins. Training stops at vocab_size, or when the best count is below min_frequency (or 0).
4. Bookkeeping. Counts are updated incrementally: merging a pair only touches the words
   that contain it, and a priority queue holds (count, pair, words) entries that are
   refreshed lazily when popped with a stale count. Each entry remembers only the words
   where its pair was created at that step, exactly as `tokenizers` does.

Encoding applies merges inside each pre-token, lowest rank first (leftmost on ties).

`bpe_merge_step` is one step of the same training written plainly (count every pair again,
pick, merge); `bpe_merge_table` repeats it on a toy text to show the first merges.
"""
from __future__ import annotations

import heapq
import re
import sys
import unicodedata
from collections import Counter
from functools import cache

__all__ = ["BPETokenizer", "pretokenize", "byte_order", "bpe_merge_step", "apply_merge", "bpe_merge_table"]


# ----------------------------------------------------------------------------- pre-tokenizer

@cache
def _gpt2_pattern() -> re.Pattern:
    r"""GPT-2's split pattern with \p{L}, \p{N} and \s spelled out as character classes.

    Python's `re` has no \p{...}; we build the classes from the Unicode database:
    letters = categories L*, numbers = N*, whitespace = \t..\r, U+0085 and Z[slp]
    (Oniguruma's \s, which `tokenizers` uses).
    """
    def span(start: int, end: int) -> str:
        return f"\\U{start:08x}" if start == end else f"\\U{start:08x}-\\U{end:08x}"

    classes = {"L": [], "N": [], "W": []}          # letters, numbers, whitespace: runs of code points
    run_kind, run_start = None, 0
    for cp in range(sys.maxunicode + 2):
        if cp > sys.maxunicode:
            kind = None
        elif 9 <= cp <= 13 or cp == 0x85 or unicodedata.category(chr(cp)) in ("Zs", "Zl", "Zp"):
            kind = "W"
        else:
            kind = unicodedata.category(chr(cp))[0]
        if kind != run_kind:
            if run_kind in classes:
                classes[run_kind].append(span(run_start, cp - 1))
            run_kind, run_start = kind, cp
    letters, numbers, spaces = ("".join(classes[k]) for k in "LNW")
    return re.compile(
        rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{letters}]+| ?[{numbers}]+| ?[^{spaces}{letters}{numbers}]+"
        rf"|[{spaces}]+(?![^{spaces}])|[{spaces}]+"
    )


def pretokenize(text: str) -> list[str]:
    """Cut text into the pieces BPE merges within ("Hello world!" -> ["Hello", " world", "!"])."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return _gpt2_pattern().findall(text)


@cache
def byte_order() -> tuple[int, ...]:
    """The 256 byte values in GPT-2's byte-to-unicode order (the order of their base ids).

    GPT-2 shows the printable bytes '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF as
    themselves and the other 68 bytes (space, control characters, ...) as U+0100 onwards,
    in byte order; sorting the base tokens by that character gives this order.
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    return tuple(printable + [b for b in range(256) if b not in set(printable)])


# ----------------------------------------------------------------------------- one merge step

def bpe_merge_step(words: dict[tuple[int, ...], int], new_id: int
                   ) -> tuple[tuple[int, int], int, dict[tuple[int, ...], int]]:
    """One step of BPE training, written plainly: count, pick, merge.

    words maps each distinct word (a tuple of token ids) to how often it occurs. Every
    adjacent pair is counted, weighted by its word's count; the most frequent pair wins,
    ties going to the smallest (left id, right id), as in BPETokenizer.train; in each word
    its occurrences are replaced, left to right and without overlap, by new_id.
    Returns (pair, its count, the merged words).
    """
    if not isinstance(words, dict) or not words or not all(
            isinstance(w, tuple) and isinstance(n, int) and not isinstance(n, bool) and n > 0 for w, n in words.items()):
        raise ValueError("words must be a non-empty dict {tuple of token ids: count >= 1}")
    if isinstance(new_id, bool) or not isinstance(new_id, int) or new_id < 0:
        raise ValueError(f"new_id must be an int >= 0, got {new_id!r}")
    counts: Counter = Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += n
    if not counts:
        raise ValueError("no word has two tokens left: nothing to merge")
    best = min(counts, key=lambda pair: (-counts[pair], pair))
    return best, counts[best], apply_merge(words, best, new_id)


def apply_merge(words: dict[tuple[int, ...], int], pair: tuple[int, int], new_id: int) -> dict[tuple[int, ...], int]:
    """Replace `pair` by `new_id` in each word, left to right and without overlap; counts of
    words that become equal are added. (The merge half of `bpe_merge_step`; callers check input.)"""
    merged: dict[tuple[int, ...], int] = {}
    for word, n in words.items():
        out, i = [], 0
        while i < len(word):
            if word[i:i + 2] == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(word[i])
                i += 1
        merged[tuple(out)] = merged.get(tuple(out), 0) + n
    return merged


def bpe_merge_table(text: str, n_merges: int) -> list[dict]:
    """The first n_merges merges BPE learns from text, by repeated `bpe_merge_step`.

    Token ids are BPETokenizer's (bytes in GPT-2 order, then new tokens), so the merges are
    the trainer's. Each row: {"rank", "left", "right", "merged" (strings, a space shown as
    "Ġ"), "count", "words" (the distinct words, spelled in tokens joined by spaces, after
    the merge)}. Stops early when nothing is left to merge.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty str")
    if isinstance(n_merges, bool) or not isinstance(n_merges, int) or n_merges < 1:
        raise ValueError(f"n_merges must be an int >= 1, got {n_merges!r}")
    vocab = [bytes([b]) for b in byte_order()]
    id_of = {tok: i for i, tok in enumerate(vocab)}
    words = dict(Counter(tuple(id_of[bytes([b])] for b in piece.encode("utf-8")) for piece in pretokenize(text)))
    show = lambda i: vocab[i].decode("utf-8", errors="replace").replace(" ", "Ġ")  # noqa: E731
    rows = []
    for rank in range(n_merges):
        if all(len(w) < 2 for w in words):
            break
        (a, b), count, merged = bpe_merge_step(words, len(vocab))
        new = vocab[a] + vocab[b]
        if new in id_of:                               # "ab"+"c" after "a"+"bc": the token exists
            merged = {tuple(id_of[new] if t == len(vocab) else t for t in w): n for w, n in merged.items()}
        else:
            id_of[new] = len(vocab)
            vocab.append(new)
        words = merged
        rows.append({"rank": rank, "left": show(a), "right": show(b), "merged": show(id_of[new]), "count": count,
                     "words": [" ".join(show(t) for t in w) for w in words]})
    return rows


# ----------------------------------------------------------------------------- tokenizer

class BPETokenizer:
    """Byte-level BPE. vocab[i] is the byte string of token i; merges[r] = (left id, right id).

    Special tokens (e.g. "<|endoftext|>") take the first ids; `encode` emits them whole
    when their text appears, and training treats their text as ordinary text.
    """

    def __init__(self, vocab: list[bytes], merges: list[tuple[int, int]], special_tokens=()):
        specials = list(special_tokens)
        if len(vocab) < len(specials) + 256:
            raise ValueError("vocab must hold the special tokens and all 256 bytes")
        self.special_tokens = specials
        self.vocab = list(vocab)
        self.merges = [tuple(m) for m in merges]
        self._id_of = {tok: i for i, tok in enumerate(self.vocab) if i >= len(specials)}
        self._special_id = {s: i for i, s in enumerate(specials)}
        self._byte_id = [self._id_of[bytes([b])] for b in range(256)]
        # rank of a pair and the id it merges into
        self._rank = {pair: (r, self._id_of[self.vocab[pair[0]] + self.vocab[pair[1]]])
                      for r, pair in enumerate(self.merges)}
        self._special_re = (re.compile("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)))
                            if specials else None)
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # ------------------------------------------------------------------ training

    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens=(), min_frequency: int = 0) -> BPETokenizer:
        """Learn merges from text until the vocabulary (specials + 256 bytes + merges) has vocab_size tokens."""
        specials = _check_specials(special_tokens)
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 256 + len(specials):
            raise ValueError(f"vocab_size must be an int >= 256 + {len(specials)} special tokens, got {vocab_size!r}")
        if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 0:
            raise ValueError(f"min_frequency must be an int >= 0, got {min_frequency!r}")

        vocab = [s.encode("utf-8") for s in specials] + [bytes([b]) for b in byte_order()]
        id_of = {tok: i for i, tok in enumerate(vocab) if i >= len(specials)}
        word_counts = Counter(piece.encode("utf-8") for piece in pretokenize(text))
        words = [[id_of[bytes([b])] for b in w] for w in word_counts]   # each distinct word as ids
        counts = list(word_counts.values())

        pair_count: dict[tuple[int, int], int] = Counter()
        where: dict[tuple[int, int], set[int]] = {}                    # pair -> words holding it
        for w, (word, n) in enumerate(zip(words, counts)):
            for pair in zip(word, word[1:]):
                pair_count[pair] += n
                where.setdefault(pair, set()).add(w)
        heap = [(-pair_count[p], p, i, ws) for i, (p, ws) in enumerate(where.items())]
        heapq.heapify(heap)                                            # max count, then smallest pair
        pushes = len(heap)

        raw_merges: list[tuple[int, int]] = []
        while len(vocab) < vocab_size and heap:
            neg, pair, _, positions = heapq.heappop(heap)
            if -neg != pair_count[pair]:                              # stale: refresh and retry
                heapq.heappush(heap, (-pair_count[pair], pair, pushes, positions))
                pushes += 1
                continue
            if -neg < 1 or -neg < min_frequency:
                break
            merged = vocab[pair[0]] + vocab[pair[1]]
            new_id = id_of.get(merged)
            if new_id is None:
                new_id = id_of[merged] = len(vocab)
                vocab.append(merged)
            raw_merges.append(pair)
            created: dict[tuple[int, int], set[int]] = {}
            for w in positions:
                for changed, delta in _merge_word(words[w], pair, new_id):
                    pair_count[changed] += delta * counts[w]
                    if delta > 0:
                        created.setdefault(changed, set()).add(w)
            for changed, ws in created.items():
                if pair_count[changed] > 0:
                    heapq.heappush(heap, (-pair_count[changed], changed, pushes, ws))
                    pushes += 1
        # a pair merged twice (its words came in two batches) keeps its last rank, as in `tokenizers`
        last = {pair: r for r, pair in enumerate(raw_merges)}
        merges = [pair for r, pair in enumerate(raw_merges) if last[pair] == r]
        return cls(vocab, merges, specials)

    # ------------------------------------------------------------------ encoding

    def encode(self, text: str) -> list[int]:
        """Token ids of text: special tokens whole, every other piece through the merges."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        ids: list[int] = []
        start = 0
        if self._special_re is not None:
            for m in self._special_re.finditer(text):
                self._encode_ordinary(text[start:m.start()], ids)
                ids.append(self._special_id[m.group()])
                start = m.end()
        self._encode_ordinary(text[start:], ids)
        return ids

    def _encode_ordinary(self, text: str, out: list[int]):
        for piece in pretokenize(text) if text else ():
            cached = self._cache.get(piece)
            if cached is None:
                cached = self._encode_piece(piece.encode("utf-8"))
                if len(self._cache) < 100_000:
                    self._cache[piece] = cached
            out.extend(cached)

    def _encode_piece(self, data: bytes) -> list[int]:
        """Apply merges to one pre-token: always the lowest-ranked adjacent pair, leftmost first."""
        sym = [self._byte_id[b] for b in data]
        nxt = list(range(1, len(sym))) + [-1]                         # linked list over positions
        prv = list(range(-1, len(sym) - 1))
        alive = [True] * len(sym)
        heap = [(self._rank[p][0], i, self._rank[p][1]) for i, p in enumerate(zip(sym, sym[1:])) if p in self._rank]
        heapq.heapify(heap)
        while heap:
            _, i, new_id = heapq.heappop(heap)
            j = nxt[i]
            if not alive[i] or j == -1 or self._rank.get((sym[i], sym[j]), (0, -1))[1] != new_id:
                continue                                              # expired entry
            sym[i], alive[j], nxt[i] = new_id, False, nxt[j]
            if nxt[j] != -1:
                prv[nxt[j]] = i
            for a, b in ((prv[i], i), (i, nxt[i])):
                if a != -1 and b != -1 and (sym[a], sym[b]) in self._rank:
                    rank, nid = self._rank[(sym[a], sym[b])]
                    heapq.heappush(heap, (rank, a, nid))
        return [s for s, keep in zip(sym, alive) if keep]

    def decode(self, ids) -> str:
        """Text of token ids; byte sequences that are not valid UTF-8 become U+FFFD."""
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            raise ValueError(f"ids must be a sequence of ints, got {type(ids).__name__}")
        ids = [int(i) if hasattr(i, "__index__") and not isinstance(i, bool) else i for i in ids]
        bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(self.vocab)]
        if bad:
            raise ValueError(f"token ids must be ints in [0, {len(self.vocab)}), got {bad[:5]}")
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, i: int) -> bytes:
        """The bytes token i stands for."""
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self.vocab):
            raise ValueError(f"token id must be an int in [0, {len(self.vocab)}), got {i!r}")
        return self.vocab[i]

    # ------------------------------------------------------------------ serialization

    def to_dict(self) -> dict:
        """Plain lists and strings (safe for torch.load(weights_only=True) and JSON)."""
        return {"kind": "byte-level-bpe", "special_tokens": list(self.special_tokens),
                "vocab": [t.hex() for t in self.vocab], "merges": [list(m) for m in self.merges]}

    @classmethod
    def from_dict(cls, d: dict) -> BPETokenizer:
        if not isinstance(d, dict) or d.get("kind") != "byte-level-bpe":
            raise ValueError("expected a dict made by BPETokenizer.to_dict()")
        try:
            specials = _check_specials(d["special_tokens"])
            vocab = [bytes.fromhex(t) for t in d["vocab"]]
            merges = [(int(a), int(b)) for a, b in d["merges"]]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed tokenizer dict: {err}") from err
        for s, tok in zip(specials, vocab):
            if tok != s.encode("utf-8"):
                raise ValueError("malformed tokenizer dict: special tokens must lead the vocab")
        if any(not (0 <= a < len(vocab) and 0 <= b < len(vocab)) for a, b in merges):
            raise ValueError("malformed tokenizer dict: merge ids outside the vocab")
        return cls(vocab, merges, specials)

    def __repr__(self):
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, special_tokens={self.special_tokens})"


def _merge_word(word: list[int], pair: tuple[int, int], new_id: int) -> list[tuple[tuple[int, int], int]]:
    """Replace every non-overlapping `pair` in word (left to right) by new_id, in place.

    Returns the pair-count changes: the neighbours' old pairs lose one, new pairs gain one.
    """
    a, b = pair
    changes, out, i, n = [], [], 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            if out:
                changes += [((out[-1], a), -1), ((out[-1], new_id), 1)]
            if i + 2 < n:
                changes += [((b, word[i + 2]), -1), ((new_id, word[i + 2]), 1)]
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    word[:] = out
    return changes


def _check_specials(special_tokens) -> list[str]:
    if isinstance(special_tokens, str) or not hasattr(special_tokens, "__iter__"):
        raise ValueError(f"special_tokens must be a list of strings, got {special_tokens!r}")
    specials = list(special_tokens)
    if any(not isinstance(s, str) or not s for s in specials) or len(set(specials)) != len(specials):
        raise ValueError(f"special_tokens must be distinct non-empty strings, got {specials!r}")
    return specials
