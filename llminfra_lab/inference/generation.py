"""Generating with and without a KV cache, and the latency metrics a serving system reports.

Without a cache, step t runs the model over all t tokens so far and keeps only the last
position's logits: the work of a step grows with the sequence, and the whole generation is
quadratic in its length. With `model.KVCache`, the prompt is run once (the prefill) and
each later step runs one token (the decode), attending to the keys and values the cache
kept. The two must give the same tokens: the cache changes the work, not the result.

Latency metrics, as the OpenTelemetry GenAI semantic conventions name the server-side ones:

    gen_ai.server.time_to_first_token     time to generate the first token (TTFT), seconds
    gen_ai.server.time_per_output_token   time per output token generated after the first
                                          (TPOT): (end - first token) / (n_out - 1)
    gen_ai.server.request.duration        the whole request, to its last token (E2E)

and throughput: output tokens of all sequences divided by the request duration.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from llminfra_lab.checks import positive_int
from llminfra_lab.model import GPT, KVCache

__all__ = ["OTEL_METRICS", "greedy_uncached", "greedy_cached_timed", "LatencyMetrics", "latency_metrics",
           "measure_generation"]

#: The OpenTelemetry GenAI server metrics this module computes, with their definitions (histograms, unit s).
OTEL_METRICS: dict[str, str] = {
    "gen_ai.server.time_to_first_token": "Time to generate first token for successful responses",
    "gen_ai.server.time_per_output_token": "Time per output token generated after the first token for successful "
                                           "responses",
    "gen_ai.server.request.duration": "Generative AI server request duration such as time-to-last byte or last "
                                      "output token",
}


@torch.no_grad()
def greedy_uncached(model: GPT, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy generation the plain way: every step reruns the model over the whole sequence.

    idx (batch, prompt) token ids; returns (batch, prompt + max_new_tokens). The reference
    that cached generation must equal token for token.
    """
    _check(model, idx, max_new_tokens)
    out = idx
    for _ in range(max_new_tokens):
        logits = model(out)                                   # (batch, t, vocab): all positions again
        nxt = logits[:, -1, :].float().argmax(-1, keepdim=True)
        out = torch.cat([out, nxt], dim=1)
    return out


@torch.no_grad()
def greedy_cached_timed(model: GPT, idx: torch.Tensor, max_new_tokens: int,
                        clock=time.perf_counter) -> tuple[torch.Tensor, list[float]]:
    """Greedy generation with `model.KVCache`, recording when each output token is ready.

    Returns (tokens (batch, prompt + max_new_tokens), times): times[0] is the start of the
    request and times[i] the moment output token i (1-based) exists, from `clock` in seconds.
    Step 1 is the prefill of the whole prompt; steps 2.. are decode steps of one token.
    """
    _check(model, idx, max_new_tokens)
    positive_int("max_new_tokens", max_new_tokens)
    dtype = next(model.parameters()).dtype
    times = [clock()]
    cache = KVCache.empty(model.cfg, idx.shape[0], idx.device, dtype)
    out, step_input = idx, idx
    for _ in range(max_new_tokens):
        logits = model(step_input, cache)                     # prefill first, then one token at a time
        nxt = logits[:, -1, :].float().argmax(-1, keepdim=True)
        times.append(clock())
        out = torch.cat([out, nxt], dim=1)
        step_input = nxt
    return out, times


@dataclass(frozen=True)
class LatencyMetrics:
    """Per-request latency metrics (seconds) and throughput (output tokens per second)."""

    ttft_s: float              # gen_ai.server.time_to_first_token
    tpot_s: float              # gen_ai.server.time_per_output_token (NaN with one output token)
    e2e_s: float               # gen_ai.server.request.duration
    output_tokens: int         # per sequence
    batch: int
    throughput_tok_s: float    # batch x output_tokens / e2e_s


def latency_metrics(times: list[float], batch: int = 1) -> LatencyMetrics:
    """TTFT, TPOT, E2E and throughput from `times` = [start, token 1 ready, ..., token n ready].

    TTFT = t1 - t0; TPOT = (tn - t1) / (n - 1), the mean gap after the first token (the
    first token's time is prefill, which TTFT already holds); E2E = tn - t0; throughput =
    batch x n / E2E.
    """
    if not isinstance(times, (list, tuple)) or len(times) < 2:
        raise ValueError(f"times must be [start, token 1, ..., token n] with n >= 1, got {times!r}")
    if any(b < a for a, b in zip(times, times[1:])):
        raise ValueError("times must be non-decreasing (start first, then each token as it is ready)")
    positive_int("batch", batch)
    n = len(times) - 1
    ttft, e2e = times[1] - times[0], times[-1] - times[0]
    tpot = (times[-1] - times[1]) / (n - 1) if n > 1 else float("nan")
    return LatencyMetrics(ttft, tpot, e2e, n, batch, batch * n / e2e if e2e > 0 else float("inf"))


def measure_generation(model: GPT, idx: torch.Tensor, max_new_tokens: int, use_cache: bool = True,
                       repeats: int = 3) -> LatencyMetrics:
    """Latency metrics of greedy generation, the run with the median E2E of `repeats`.

    With use_cache=False each step reruns the whole sequence (no prefill/decode split), so
    its "TTFT" is the first full pass and its "TPOT" the mean of growing passes.
    """
    positive_int("repeats", repeats)
    runs = []
    for _ in range(repeats):
        if use_cache:
            _, times = greedy_cached_timed(model, idx, max_new_tokens)
        else:
            times = [time.perf_counter()]
            out = idx
            with torch.no_grad():
                for _ in range(max_new_tokens):
                    out = greedy_uncached(model, out, 1)
                    times.append(time.perf_counter())
        runs.append(latency_metrics(times, idx.shape[0]))
    return sorted(runs, key=lambda m: m.e2e_s)[len(runs) // 2]


def _check(model, idx, max_new_tokens) -> None:
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a model.GPT, got {type(model).__name__}")
    model._check_idx(idx, None)
    positive_int("max_new_tokens", max_new_tokens)
    if idx.shape[1] + max_new_tokens > model.cfg.max_seq_len:
        raise ValueError(f"{idx.shape[1]} + {max_new_tokens} tokens exceed max_seq_len {model.cfg.max_seq_len}")
