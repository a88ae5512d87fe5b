"""The engine: the tiny GPT, chapter 12's paged KV pool and scheduler, and a sampler, in one step loop.

    engine = Engine.from_pretrained("target", policy="continuous", max_num_seqs=8)
    rid = engine.add_request(tokenizer.encode("12+34="), SamplingParams(temperature=0, max_tokens=8))
    while engine.has_unfinished():
        for out in engine.step():          # RequestOutputs: new tokens, safe-to-stream text
            ...

One `step` is one iteration of iteration-level scheduling (Orca, vLLM): the scheduler says
which sequences run which tokens now (prompt chunks and single decode tokens mixed), one
`paged_forward` runs them all and appends their keys and values to the block pool, and each
sequence that has consumed all its known tokens samples one new token with its own sampling
parameters and generator. A request ends at max_tokens ("length"), at a stop string ("stop",
the text cut before it) or when aborted ("abort"); its blocks go back to the pool.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import torch

from llminfra_lab.checks import positive_int
from llminfra_lab.model import GPT, load_pretrained
from llminfra_lab.paged import PagedKVCache, Scheduler, SchedulerConfig, paged_forward
from llminfra_lab.tokenizer import BPETokenizer

from .sampling import SamplingParams, emit_safe_length, sample_token, stop_position

__all__ = ["Engine", "RequestOutput", "engine_from_args"]


@dataclass
class RequestOutput:
    """What one step produced for one request (times from time.perf_counter, seconds)."""
    request_id: str
    prompt_token_ids: list[int]
    token_ids: list[int]                   # every token generated so far
    new_token_ids: list[int]               # generated in this step
    text: str                              # text streamable so far (cut before a stop string)
    new_text: str                          # the part of text not streamed before
    finished: bool = False
    finish_reason: str | None = None       # "length", "stop" or "abort"
    arrival_time: float = 0.0
    first_token_time: float | None = None
    finish_time: float | None = None


@dataclass
class _Request:
    request_id: str
    seq_id: int
    prompt: list[int]
    params: SamplingParams
    generator: torch.Generator
    arrival_time: float
    output: list[int] = field(default_factory=list)
    emitted: int = 0                       # characters of text already streamed
    first_token_time: float | None = None


class Engine:
    """Owns the model, its tokenizer, the paged KV pool and the scheduler; `step` advances every request."""

    def __init__(self, model: GPT, tokenizer: BPETokenizer | None = None, *, num_blocks: int = 256,
                 block_size: int = 16, scheduler_config: SchedulerConfig | None = None, seed: int = 0):
        if not isinstance(model, GPT):
            raise ValueError(f"model must be a GPT, got {type(model).__name__}")
        positive_int("num_blocks", num_blocks)
        positive_int("block_size", block_size)
        self.model, self.tokenizer = model.eval(), tokenizer
        dtype = next(model.parameters()).dtype
        device = next(model.parameters()).device
        self.cache = PagedKVCache(model.cfg, num_blocks, block_size, dtype=dtype, device=device)
        config = scheduler_config if scheduler_config is not None else SchedulerConfig()
        if not isinstance(config, SchedulerConfig):
            raise ValueError(f"scheduler_config must be a SchedulerConfig, got {type(config).__name__}")
        self.scheduler = Scheduler(config, self.cache)
        self._requests: dict[str, _Request] = {}
        self._by_seq: dict[int, _Request] = {}
        self._next_seq = 0
        self._seeds = random.Random(seed)

    @classmethod
    def from_pretrained(cls, name: str = "target", **kwargs) -> Engine:
        """An engine over a shipped checkpoint ("target" or "draft") and its tokenizer."""
        model, tokenizer = load_pretrained(name)
        return cls(model, tokenizer, **kwargs)

    # ------------------------------------------------------------------ requests
    def add_request(self, prompt: list[int] | str, params: SamplingParams | None = None,
                    request_id: str | None = None) -> str:
        """Queue a request (token ids, or text when the engine has a tokenizer); returns its id."""
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("a text prompt needs an engine with a tokenizer; pass token ids")
            prompt = self.tokenizer.encode(prompt)
        vocab, context = self.model.cfg.vocab_size, self.model.cfg.max_seq_len
        if not isinstance(prompt, list) or not prompt or not all(
                isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocab for t in prompt):
            raise ValueError(f"prompt must be a non-empty list of token ids in [0, {vocab}) or a string")
        params = params if params is not None else SamplingParams()
        if not isinstance(params, SamplingParams):
            raise ValueError(f"params must be a SamplingParams, got {type(params).__name__}")
        if len(prompt) + params.max_tokens > context:
            raise ValueError(f"{len(prompt)} prompt + {params.max_tokens} new tokens exceed the context of "
                             f"{context} tokens")
        request_id = request_id if request_id is not None else f"req-{self._next_seq}"
        if request_id in self._requests:
            raise ValueError(f"request id {request_id!r} is already in use")
        seed = params.seed if params.seed is not None else self._seeds.getrandbits(63)
        generator = torch.Generator(device=self.cache.k.device).manual_seed(seed)
        req = _Request(request_id, self._next_seq, list(prompt), params, generator, time.perf_counter())
        self.scheduler.add_request(req.seq_id, list(prompt), params.max_tokens)   # ValueError if it can never fit
        self._next_seq += 1
        self._requests[request_id], self._by_seq[req.seq_id] = req, req
        return request_id

    def abort(self, request_id: str) -> bool:
        """Drop a request wherever it is (queued, running, preempted); its KV blocks go back. False if unknown."""
        req = self._requests.pop(request_id, None)
        if req is None:
            return False
        del self._by_seq[req.seq_id]
        self.scheduler.abort(req.seq_id)
        self.scheduler.requests.pop(req.seq_id, None)          # a long-running server forgets finished requests
        return True

    def has_unfinished(self) -> bool:
        return bool(self._requests)

    def stats(self) -> dict:
        """Running and waiting request counts and the fraction of KV blocks in use."""
        alloc = self.cache.allocator
        running = len(self.scheduler.running)
        return {"running": running, "waiting": len(self._requests) - running,
                "kv_usage": 1 - alloc.num_free / alloc.num_blocks}

    # ------------------------------------------------------------------ the step
    @torch.no_grad()
    def step(self) -> list[RequestOutput]:
        """One iteration: schedule, one paged forward pass, sample, detect the end of requests."""
        batch = self.scheduler.schedule()
        if not batch.seq_ids:
            return []
        logits = paged_forward(self.model, self.cache, batch.seq_ids, batch.tokens)
        now = time.perf_counter()
        next_tokens: list[int | None] = []
        for row, (seq_id, sample) in enumerate(zip(batch.seq_ids, batch.sample)):
            req = self._by_seq[seq_id]
            next_tokens.append(sample_token(logits[row], req.params, req.generator) if sample else None)
        self.scheduler.update(batch, next_tokens)                  # frees requests that reached max_tokens
        outputs = []
        for seq_id, token in zip(batch.seq_ids, next_tokens):
            if token is None:
                continue                                           # a prefill chunk short of the prompt's end
            req = self._by_seq[seq_id]
            req.output.append(token)
            req.first_token_time = req.first_token_time or now
            out = self._detokenize(req, [token], now)
            outputs.append(out)
            if out.finished:
                if out.finish_reason == "stop":
                    self.scheduler.abort(seq_id)                   # the scheduler only knows max_tokens
                self.scheduler.requests.pop(seq_id, None)
                del self._requests[req.request_id], self._by_seq[seq_id]
        return outputs

    def _detokenize(self, req: _Request, new: list[int], now: float) -> RequestOutput:
        """New text safe to stream, and whether the request just ended (stop string or max_tokens)."""
        text = self.tokenizer.decode(req.output) if self.tokenizer is not None else ""
        reason = None
        cut = stop_position(text, req.params.stop) if req.params.stop else None
        if cut is not None:
            text, reason = text[:cut], "stop"
        elif len(req.output) >= req.params.max_tokens:
            reason = "length"
        safe = len(text) if reason else emit_safe_length(text, req.params.stop)
        new_text = text[req.emitted:safe]
        req.emitted = max(req.emitted, safe)
        return RequestOutput(req.request_id, req.prompt, list(req.output), new, text[:req.emitted], new_text,
                             reason is not None, reason, req.arrival_time, req.first_token_time,
                             now if reason else None)

    # ------------------------------------------------------------------ offline use
    def generate(self, prompts: list[list[int] | str], params: SamplingParams | list[SamplingParams] | None = None
                 ) -> list[RequestOutput]:
        """Run prompts to completion together (continuous batching); final outputs in prompt order."""
        if not isinstance(prompts, list) or not prompts:
            raise ValueError("prompts must be a non-empty list of token-id lists or strings")
        params_list = params if isinstance(params, list) else [params] * len(prompts)
        if len(params_list) != len(prompts):
            raise ValueError(f"got {len(params_list)} SamplingParams for {len(prompts)} prompts")
        ids = [self.add_request(p, sp) for p, sp in zip(prompts, params_list)]
        final: dict[str, RequestOutput] = {}
        while any(i not in final for i in ids):
            for out in self.step():
                if out.finished:
                    final[out.request_id] = out
        return [final[i] for i in ids]


def engine_from_args(name: str = "target", policy: str = "continuous", max_num_seqs: int = 8,
                     num_blocks: int = 256, block_size: int = 16, seed: int = 0, **scheduler_kwargs) -> Engine:
    """An engine over a shipped checkpoint with a scheduler built from plain arguments (the server's CLI)."""
    config = SchedulerConfig(policy=policy, max_num_seqs=max_num_seqs, **scheduler_kwargs)
    return Engine.from_pretrained(name, num_blocks=num_blocks, block_size=block_size, scheduler_config=config,
                                  seed=seed)
