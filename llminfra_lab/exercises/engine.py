"""Lab 13 (inference engines): implement-it tasks and exercises."""
from __future__ import annotations

import math
import random

import torch

from llminfra_lab import engine
from llminfra_lab.labkit import exercise, task
from llminfra_lab.model import filter_logits

# ----------------------------------------------------------------------------- implement-it tasks


def _probs_cases(rng: random.Random) -> list[tuple]:
    cases = [(torch.tensor([2.0, 1.0, 0.0, -1.0]), 1.0, None, None),
             (torch.tensor([2.0, 1.0, 0.0, -1.0]), 0.5, 2, None),
             (torch.tensor([3.0, 2.9, 0.0, -5.0]), 1.0, None, 0.5)]
    for _ in range(20):
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        vocab = rng.choice([3, 8, 64, 512])
        logits = torch.randn(vocab, generator=gen) * 3
        top_k = rng.choice([None, 1, 2, 5])
        top_p = rng.choice([None, 0.3, 0.8, 0.95, 1.0])
        cases.append((logits, rng.choice([0.3, 0.7, 1.0, 1.5]), top_k, top_p))
    return cases


def _probs_filter_first(logits, temperature, top_k, top_p):       # top-p judged on the untempered logits
    top_p = None if top_p is not None and top_p >= 1 else top_p
    return torch.softmax(filter_logits(logits, top_k, top_p) / temperature, dim=-1)


task(
    "engine.sampling_probs",
    "Return the probabilities the engine samples the next token from: divide logits (1-D, vocab) by temperature, "
    "keep only the top_k largest (None = all), then keep the smallest set of most likely survivors whose mass "
    "reaches top_p (a token stays when the mass ranked above it is < top_p; None or 1.0 = all), set the rest to "
    "-inf and take one softmax. model.filter_logits(logits, top_k, top_p) does the filtering.",
    reference=engine.sampling_probs,
    cases=_probs_cases,
    mistake=_probs_filter_first,
)


def _safe_cases(rng: random.Random) -> list[tuple]:
    cases = [("Hello wor", ("world",)), ("Hello\n", ("\n\n",)), ("abc", ()), ("x = 1 ##", ("###",)),
             ("caf\ufffd", ()), ("ends with E", ("END", "E.")), ("46", ("\n",))]
    alphabet = "ab\n#"
    for _ in range(30):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        stops = tuple({"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(0, 2))})
        stops = tuple(s for s in stops if s not in text)
        cases.append((text, stops))
    return cases


def _safe_whole_stop_only(text, stop):                          # ignores a stop string that is half-written
    keep = len(text)
    while keep and text[keep - 1] == "\ufffd":
        keep -= 1
    return keep


task(
    "engine.emit_safe_length",
    "Streaming with stop strings. text is the output so far (no stop string occurs in it whole); stop is a "
    "tuple of stop strings. Return how many leading characters can be sent to the client now: hold back a "
    "trailing run of '\\ufffd' (half of a multi-byte character) and then the longest tail that is a proper prefix "
    "of some stop string (it may still become that stop string).",
    reference=engine.emit_safe_length,
    cases=_safe_cases,
    mistake=_safe_whole_stop_only,
)


def _goodput_cases(rng: random.Random) -> list[tuple]:
    cases = [([0.1, 0.5, None], [0.02, 0.2, None], 2.0, engine.SLO(ttft_s=1.0, tpot_s=0.1)),
             ([0.2, 0.3], [None, 0.05], 1.0, engine.SLO(ttft_s=0.25, tpot_s=0.1))]
    for _ in range(20):
        n = rng.randint(1, 12)
        ttft = [None if rng.random() < 0.15 else rng.uniform(0.0, 2.0) for _ in range(n)]
        tpot = [None if (t is None or rng.random() < 0.1) else rng.uniform(0.0, 0.2) for t in ttft]
        cases.append((ttft, tpot, rng.uniform(0.5, 10.0), engine.SLO(ttft_s=rng.uniform(0.2, 1.5),
                                                                      tpot_s=rng.uniform(0.02, 0.15))))
    return cases


def _goodput_ttft_only(ttft_s, tpot_s, duration_s, slo):        # forgets the TPOT half of the SLO
    return sum(1 for a in ttft_s if a is not None and a <= slo.ttft_s) / duration_s


task(
    "engine.goodput",
    "Goodput. ttft_s and tpot_s hold one entry per request sent (seconds; ttft None = the request failed, "
    "tpot None = a one-token reply); duration_s is the run's length; slo has slo.ttft_s and slo.tpot_s. Return "
    "the requests per second that finished within BOTH limits (a one-token reply is judged on TTFT alone).",
    reference=engine.goodput,
    cases=_goodput_cases,
    mistake=_goodput_ttft_only,
)

# ----------------------------------------------------------------------------- exercises


def _little_params(seed: int) -> dict:
    if seed == 0:
        return {"rate": 4.0, "latency": 2.5}
    rng = random.Random(seed)
    return {"rate": rng.choice([2.0, 5.0, 8.0, 20.0]), "latency": rng.choice([0.5, 1.5, 3.0, 6.0])}


exercise(
    "engine.little_law",
    text=lambda rate, latency: (f"Requests arrive at {rate:g} per second and each spends {latency:g} s in the "
                                "server from arrival to last token. On average, how many requests are inside the "
                                "server at once?"),
    params=_little_params,
    solve=lambda rate, latency: rate * latency,
    mistake=lambda rate, latency: rate / latency,
)


def _pool_params(seed: int) -> dict:
    if seed == 0:
        return {"num_blocks": 256, "block_size": 16, "tokens": 200}
    rng = random.Random(seed)
    while True:                        # a case where rounding up to whole blocks changes the answer
        p = {"num_blocks": rng.choice([64, 128, 512, 1000]), "block_size": rng.choice([8, 16, 32]),
             "tokens": rng.randint(20, 900)}
        if _pool_solve(**p) != _pool_mistake(**p) and _pool_solve(**p) >= 1:
            return p


def _pool_solve(num_blocks, block_size, tokens):
    return num_blocks // math.ceil(tokens / block_size)


def _pool_mistake(num_blocks, block_size, tokens):      # counts tokens, as if blocks were never partly empty
    return num_blocks * block_size // tokens


exercise(
    "engine.pool_concurrency",
    text=lambda num_blocks, block_size, tokens: (
        f"A paged KV pool has {num_blocks} blocks of {block_size} tokens. Every request will reach {tokens} tokens "
        "(prompt + output) and blocks are never shared. How many such requests can hold their whole KV cache at once?"),
    params=_pool_params,
    solve=_pool_solve,
    mistake=_pool_mistake,
)


def _tpot_params(seed: int) -> dict:
    if seed == 0:
        return {"e2e_ms": 1300.0, "ttft_ms": 250.0, "tokens": 22}
    rng = random.Random(seed)
    while True:                        # a case where dividing by all tokens is visibly wrong
        n = rng.randint(5, 60)
        ttft = rng.choice([300.0, 600.0, 900.0, 1500.0])
        p = {"e2e_ms": ttft + (n - 1) * rng.choice([10.0, 25.0, 40.0]), "ttft_ms": ttft, "tokens": n}
        if abs(p["e2e_ms"] / n - (p["e2e_ms"] - ttft) / (n - 1)) > 0.1 * (p["e2e_ms"] - ttft) / (n - 1):
            return p


exercise(
    "engine.tpot",
    text=lambda e2e_ms, ttft_ms, tokens: (
        f"A streamed reply of {tokens} tokens took {e2e_ms:g} ms from request to last token; the first token came "
        f"after {ttft_ms:g} ms. What is its time per output token, in ms?"),
    params=_tpot_params,
    solve=lambda e2e_ms, ttft_ms, tokens: (e2e_ms - ttft_ms) / (tokens - 1),
    mistake=lambda e2e_ms, ttft_ms, tokens: e2e_ms / tokens,
)
