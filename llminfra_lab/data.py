"""Deterministic synthetic corpora (no downloads) and a batch sampler.

Three kinds of text, each made from a seed so that every reader gets the same bytes:

* arithmetic: problems such as "37+58=95". The answer is checkable, so held-out accuracy
  can be measured and the alignment chapter can use it as a verifiable reward.
* stories: short English stories from a small probabilistic grammar, for language modelling.
* json: flat records with a fixed schema (`RECORD_SCHEMA`), for structured output.

`corpus(kind, n_chars, seed)` returns exactly n_chars characters of any kind; it makes
tens of megabytes in seconds. `batches` samples (input, next-token target) windows.
"""
from __future__ import annotations

import json
import random

import torch

from llminfra_lab.checks import positive_int

__all__ = [
    "arithmetic_problems", "arithmetic_split", "arithmetic_answer", "arithmetic_reward",
    "stories", "json_records", "RECORD_SCHEMA", "corpus", "CORPUS_KINDS", "batches",
]

OPS = "+-*"


# ----------------------------------------------------------------------------- arithmetic

def arithmetic_problems(n: int, digits: int = 2, seed: int = 0, ops: str = "+") -> list[str]:
    """n distinct problems "a<op>b=c", operands uniform in [0, 10**digits), e.g. "37+58=95"."""
    _check_arithmetic(n, digits, seed, ops)
    rng = random.Random(seed)
    size = 10 ** digits
    seen: set[tuple[int, str, int]] = set()
    out = []
    while len(out) < n:
        key = (rng.randrange(size), rng.choice(ops), rng.randrange(size))
        if key not in seen:
            seen.add(key)
            a, op, b = key
            out.append(f"{a}{op}{b}={_apply(a, op, b)}")
    return out


def arithmetic_split(n_train: int, n_test: int, digits: int = 2, seed: int = 0, ops: str = "+"):
    """(train, held_out): disjoint lists of problems, so held-out accuracy measures generalisation."""
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 0:
        raise ValueError(f"n_train must be an int >= 0, got {n_train!r}")
    if isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 0:
        raise ValueError(f"n_test must be an int >= 0, got {n_test!r}")
    problems = arithmetic_problems(n_train + n_test, digits, seed, ops)
    return problems[n_test:], problems[:n_test]


def arithmetic_answer(prompt: str) -> str:
    """The correct answer to "a<op>b=" (or "a<op>b"), as a decimal string: "37+58=" -> "95"."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a str like '37+58=', got {prompt!r}")
    text = prompt.strip().removesuffix("=")
    for i, ch in enumerate(text):
        if ch in OPS and i > 0:
            left, right = text[:i], text[i + 1:]
            if left.isdigit() and right.isdigit():
                return str(_apply(int(left), ch, int(right)))
    raise ValueError(f"prompt must look like '37+58=' (digits, one of {OPS!r}, digits), got {prompt!r}")


def arithmetic_reward(prompt: str, completion: str) -> float:
    """1.0 when completion starts with the correct answer (ending at a non-digit or the end), else 0.0."""
    answer = arithmetic_answer(prompt)
    if not isinstance(completion, str):
        raise ValueError(f"completion must be a str, got {type(completion).__name__}")
    got = completion.strip()
    ok = got.startswith(answer) and (len(got) == len(answer) or not got[len(answer)].isdigit())
    return 1.0 if ok else 0.0


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _check_arithmetic(n, digits, seed, ops):
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 9:
        raise ValueError(f"digits must be an int in 1..9, got {digits!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not isinstance(ops, str) or not ops or any(o not in OPS for o in ops) or len(set(ops)) != len(ops):
        raise ValueError(f"ops must be a non-empty string of distinct characters from {OPS!r}, got {ops!r}")
    if n > len(ops) * 10 ** (2 * digits):
        raise ValueError(f"only {len(ops) * 10 ** (2 * digits)} distinct problems exist with digits={digits}, "
                         f"ops={ops!r}; asked for {n}")


# ----------------------------------------------------------------------------- stories

# A small probabilistic grammar. Each story: an opening that introduces a character,
# a few middle sentences (weighted choices), and an ending. Names and things recur
# within a story, so a model can learn to copy them from context.
_NAMES = ["Tom", "Lily", "Max", "Mia", "Ben", "Sue", "Sam", "Anna", "Leo", "Zoe"]
_ANIMALS = ["cat", "dog", "bird", "fox", "rabbit", "bear", "frog", "duck"]
_ADJ = ["little", "big", "happy", "sleepy", "brave", "shy", "kind", "funny"]
_COLORS = ["red", "blue", "green", "yellow", "pink", "brown"]
_THINGS = ["ball", "kite", "box", "hat", "book", "cake", "boat", "drum"]
_PLACES = ["the park", "the garden", "the forest", "the river", "the house", "the hill"]
_FEELINGS = ["happy", "sad", "excited", "scared", "tired", "proud"]
_VERBS = ["play", "run", "sing", "jump", "read", "swim", "dance"]


def _sentence(rng: random.Random, name: str, animal: str, thing: str, friend: str) -> str:
    """One middle sentence; the weights make some sentence shapes more common than others."""
    color, place, feeling = rng.choice(_COLORS), rng.choice(_PLACES), rng.choice(_FEELINGS)
    verb = rng.choice(_VERBS)
    shapes = [
        (4, f"{name} liked to {verb} in {place}."),
        (3, f"One day, {name} found a {color} {thing} in {place}."),
        (3, f"{name} met {friend}, a {rng.choice(_ADJ)} {rng.choice(_ANIMALS)}."),
        (2, f"\"Can I {verb} with your {thing}?\" asked {friend}."),
        (2, f"{name} felt {feeling} because the {thing} was {color}."),
        (2, f"They went to {place} and played with the {thing}."),
        (1, f"The {animal} said, \"I am {feeling} today!\""),
        (1, f"{name} and {friend} shared the {thing} and laughed."),
    ]
    weights = [w for w, _ in shapes]
    return rng.choices([s for _, s in shapes], weights=weights)[0]


def _story(rng: random.Random) -> str:
    name, friend = rng.sample(_NAMES, 2)
    animal, thing = rng.choice(_ANIMALS), rng.choice(_THINGS)
    opening = (f"Once upon a time, there was a {rng.choice(_ADJ)} {animal} named {name}."
               if rng.random() < 0.7 else f"{name} was a {rng.choice(_ADJ)} {animal} who lived near {rng.choice(_PLACES)}.")
    middle = [_sentence(rng, name, animal, thing, friend) for _ in range(rng.randint(2, 5))]
    ending = rng.choice([f"In the end, {name} was very {rng.choice(_FEELINGS)}.",
                         f"From that day on, {name} and {friend} were best friends.",
                         f"{name} went home and slept well.", "The end."])
    return " ".join([opening, *middle, ending])


def stories(n_chars: int, seed: int = 0) -> str:
    """Exactly n_chars characters of grammar stories, separated by blank lines."""
    _check_size(n_chars, seed)
    rng = random.Random(seed)
    parts, total = [], 0
    while total < n_chars:
        parts.append(_story(rng) + "\n\n")
        total += len(parts[-1])
    return "".join(parts)[:n_chars]


# ----------------------------------------------------------------------------- JSON records

RECORD_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0},
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 18, "maximum": 90},
        "city": {"type": "string", "enum": ["London", "Paris", "Tokyo", "Beijing", "Lagos", "Lima", "Oslo", "Delhi"]},
        "email": {"type": "string"},
        "score": {"type": "number", "minimum": 0, "maximum": 100},
        "active": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["id", "name", "age", "city", "email", "score", "active", "tags"],
    "additionalProperties": False,
}
_FIRST = ["Ada", "Alan", "Grace", "Linus", "Mei", "Ravi", "Sofia", "Yuki", "Omar", "Ines"]
_LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Chen", "Patel", "Garcia", "Sato", "Haddad", "Silva"]
_TAGS = ["admin", "beta", "gpu", "ml", "infra", "ops", "research", "student"]


def json_records(n: int, seed: int = 0) -> list[dict]:
    """n records matching RECORD_SCHEMA, e.g. {"id": 0, "name": "Ada Chen", "age": 31, ...}."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    _check_size(1, seed)
    rng = random.Random(seed)
    cities = RECORD_SCHEMA["properties"]["city"]["enum"]
    out = []
    for i in range(n):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        out.append({
            "id": i, "name": f"{first} {last}", "age": rng.randint(18, 90), "city": rng.choice(cities),
            "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@example.com",
            "score": round(rng.uniform(0, 100), 1), "active": rng.random() < 0.5,
            "tags": sorted(rng.sample(_TAGS, rng.randint(0, 3))),
        })
    return out


# ----------------------------------------------------------------------------- corpora and batches

CORPUS_KINDS = ("arithmetic", "stories", "json")


def corpus(kind: str, n_chars: int, seed: int = 0) -> str:
    """Exactly n_chars characters of one kind: "arithmetic" and "json" hold one item per line."""
    if kind not in CORPUS_KINDS:
        raise KeyError(f"unknown corpus kind {kind!r}; valid kinds: {list(CORPUS_KINDS)}")
    _check_size(n_chars, seed)
    if kind == "stories":
        return stories(n_chars, seed)
    parts, total, batch = [], 0, max(16, n_chars // 40)
    rng_seed = seed
    while total < n_chars:
        if kind == "arithmetic":
            # digits 1..3 mixed, three operations; each chunk from its own derived seed
            items = [p for d in (1, 2, 3) for p in arithmetic_problems(min(batch, 90), d, rng_seed, OPS)]
            random.Random(rng_seed).shuffle(items)
        else:
            items = [json.dumps(r, separators=(",", ":")) for r in json_records(batch, rng_seed)]
        chunk = "\n".join(items) + "\n"
        parts.append(chunk)
        total += len(chunk)
        rng_seed += 1_000_003
    return "".join(parts)[:n_chars]


def batches(token_ids, batch_size: int, seq_len: int, generator: torch.Generator | None = None):
    """One random batch (x, y) of windows from token_ids: x (batch, seq_len), y = x shifted by one."""
    if isinstance(token_ids, torch.Tensor):
        ids = token_ids
    elif isinstance(token_ids, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) for t in token_ids):
        ids = torch.tensor(token_ids, dtype=torch.long)
    else:
        raise ValueError("token_ids must be a 1-D torch.long tensor or a list of ints")
    if ids.dtype != torch.long or ids.dim() != 1:
        raise ValueError(f"token_ids must be 1-D torch.long, got {ids.dtype} with shape {tuple(ids.shape)}")
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
        positive_int(f"{name}", value)
    if ids.numel() < seq_len + 1:
        raise ValueError(f"need at least seq_len + 1 = {seq_len + 1} tokens, got {ids.numel()}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    starts = torch.randint(0, ids.numel() - seq_len, (batch_size,), generator=generator)
    offsets = torch.arange(seq_len)
    x = ids[starts[:, None] + offsets]
    y = ids[starts[:, None] + offsets + 1]
    return x, y


def _check_size(n_chars, seed):
    if isinstance(n_chars, bool) or not isinstance(n_chars, int) or n_chars < 0:
        raise ValueError(f"n_chars must be an int >= 0, got {n_chars!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
