"""A synthetic request trace replayed with the real tiny GPT under each scheduling policy.

The trace (`synthetic_trace`) draws, from a seeded generator:
    arrivals      a Poisson process: exponential gaps with mean 1 / rate iterations
    prompt length lognormal, median `prompt_median` tokens, sigma 0.6, clipped to [4, 128]
    output length lognormal, median `output_median` tokens, sigma 0.7, clipped to [4, 120]
    prompt tokens uniform over the vocabulary
Arrivals are counted in scheduler iterations, not seconds, so which request runs when is the
same on every machine; only the seconds each forward pass takes differ. `replay` serves the
trace greedily with `paged_forward` and records, per iteration, the batch, the tokens and the
KV slots by use (`MemorySnapshot`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from llminfra_lab.checks import positive_int, positive_number
from llminfra_lab.model import GPT

from .cache import PagedKVCache, paged_forward
from .scheduler import Scheduler, SchedulerConfig

__all__ = ["TraceRequest", "ReplayResult", "synthetic_trace", "replay", "serve_greedy"]


@dataclass
class TraceRequest:
    request_id: int
    arrival: int                 # iteration at which the request arrives
    prompt: list[int]
    output_len: int              # tokens to generate (max_new_tokens; the replay ignores end-of-text)


@dataclass
class ReplayResult:
    policy: str
    iterations: int
    generated_tokens: int
    forward_seconds: float
    batch_sizes: list[int]
    step_tokens: list[int]
    preemptions: int
    fractions: dict[str, float]            # time-averaged shares of held KV slots: tokens, reserved, internal, external
    outputs: dict[int, list[int]] = field(default_factory=dict)
    finish_iteration: dict[int, int] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.forward_seconds if self.forward_seconds > 0 else float("nan")

    @property
    def tokens_per_iteration(self) -> float:
        return self.generated_tokens / max(self.iterations, 1)

    def summary(self) -> dict:
        """Plain numbers for a JSON file (the outputs themselves are left out)."""
        return {"policy": self.policy, "iterations": self.iterations, "generated_tokens": self.generated_tokens,
                "forward_seconds": round(self.forward_seconds, 4),
                "tokens_per_second": round(self.tokens_per_second, 2),
                "tokens_per_iteration": round(self.tokens_per_iteration, 4),
                "mean_batch": round(sum(self.batch_sizes) / max(len(self.batch_sizes), 1), 3),
                "preemptions": self.preemptions,
                "fractions": {k: round(v, 4) for k, v in self.fractions.items()}}


def synthetic_trace(n_requests: int, vocab_size: int, rate: float = 1.0, prompt_median: int = 40,
                    output_median: int = 32, seed: int = 0) -> list[TraceRequest]:
    """n_requests requests with Poisson arrivals (rate per iteration) and lognormal lengths (see module)."""
    positive_int("n_requests", n_requests)
    positive_int("vocab_size", vocab_size)
    positive_number("rate", rate)
    positive_int("prompt_median", prompt_median)
    positive_int("output_median", output_median)
    gen = torch.Generator().manual_seed(seed)
    gaps = -torch.log1p(-torch.rand(n_requests, generator=gen, dtype=torch.float64)) / rate
    arrivals = torch.cumsum(gaps, 0) - gaps[0]                     # the first request arrives at 0

    def lognormal(median, sigma, lo, hi):
        z = torch.randn(n_requests, generator=gen, dtype=torch.float64)
        return [int(min(max(round(median * math.exp(sigma * float(x))), lo), hi)) for x in z]

    prompts = lognormal(prompt_median, 0.6, 4, 128)
    outputs = lognormal(output_median, 0.7, 4, 120)
    trace = []
    for i in range(n_requests):
        ids = torch.randint(0, vocab_size, (prompts[i],), generator=gen).tolist()
        trace.append(TraceRequest(i, int(arrivals[i]), ids, outputs[i]))
    return trace


@torch.no_grad()
def replay(model: GPT, trace: list[TraceRequest], config: SchedulerConfig, num_blocks: int, block_size: int = 16,
           clock=time.perf_counter) -> ReplayResult:
    """Serve the trace greedily under `config`; KV pool of num_blocks x block_size token slots.

    In a contiguous reservation mode the reservations are made in an arena of exactly that many
    slots; the blocks that really hold the K/V get a little headroom (one block per sequence) so
    that rounding to whole blocks never preempts a request whose reservation fits.
    """
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a GPT, got {type(model).__name__}")
    if not isinstance(trace, list) or not trace or not all(isinstance(r, TraceRequest) for r in trace):
        raise ValueError("trace must be a non-empty list of TraceRequest")
    if not isinstance(config, SchedulerConfig):
        raise ValueError(f"config must be a SchedulerConfig, got {type(config).__name__}")
    positive_int("num_blocks", num_blocks)
    positive_int("block_size", block_size)
    headroom = 0 if config.kv_reservation == "paged" else config.max_num_seqs
    dtype = next(model.parameters()).dtype
    cache = PagedKVCache(model.cfg, num_blocks + headroom, block_size, dtype=dtype)
    sched = Scheduler(config, cache, arena_slots=num_blocks * block_size)
    pending = sorted(trace, key=lambda r: (r.arrival, r.request_id))
    it, seconds, batches, tokens, generated = 0, 0.0, [], [], 0
    totals = dict(tokens=0, reserved=0, internal=0, external=0)
    finish = {}
    while pending or sched.has_unfinished():
        while pending and pending[0].arrival <= it:
            r = pending.pop(0)
            sched.add_request(r.request_id, r.prompt, r.output_len)
        step = sched.schedule()
        if not step.seq_ids:
            if pending and not sched.running:
                it = max(it + 1, pending[0].arrival)   # idle until the next arrival
                continue
            raise RuntimeError("the scheduler found nothing to run although requests are waiting")
        start = clock()
        logits = paged_forward(model, cache, step.seq_ids, step.tokens)
        seconds += clock() - start
        nxt = [int(row.argmax()) if s else None for row, s in zip(logits, step.sample)]
        generated += sum(step.sample)
        for req in sched.update(step, nxt):
            finish[req.request_id] = it
        snap = sched.memory()
        for key in totals:
            totals[key] += getattr(snap, key)
        batches.append(len(step.seq_ids))
        tokens.append(step.num_tokens)
        it += 1
    held = sum(totals.values())
    fractions = {k: v / held for k, v in totals.items()} if held else {k: 0.0 for k in totals}
    name = f"{config.policy}/{config.kv_reservation}" + ("/chunked" if config.chunked_prefill else "")
    return ReplayResult(name, it, generated, seconds, batches, tokens,
                        sum(r.num_preemptions for r in sched.requests.values()), fractions,
                        {rid: r.output for rid, r in sched.requests.items()}, finish)


@torch.no_grad()
def serve_greedy(model: GPT, prompts: list[list[int]], max_new_tokens: int | list[int],
                 config: SchedulerConfig | None = None, num_blocks: int = 64, block_size: int = 8
                 ) -> list[list[int]]:
    """Greedy completions of all prompts, served together out of one block pool."""
    n = len(prompts) if isinstance(prompts, list) else 0
    lengths = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * n
    if not n or len(lengths) != n:
        raise ValueError("prompts must be a non-empty list and max_new_tokens an int or one int per prompt")
    trace = [TraceRequest(i, 0, p, m) for i, (p, m) in enumerate(zip(prompts, lengths))]
    result = replay(model, trace, config or SchedulerConfig(max_num_batched_tokens=4096), num_blocks, block_size)
    return [result.outputs[i] for i in range(n)]
