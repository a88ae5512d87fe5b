"""An iteration-level scheduler over a paged KV cache (Orca's idea, vLLM's policies).

The engine loop that drives it (chapter 13's engine is this loop plus sampling and a server):

    sched = Scheduler(SchedulerConfig(...), cache)
    sched.add_request(rid, prompt_ids, max_new_tokens)          # any time, any number
    while sched.has_unfinished():
        step = sched.schedule()                                 # a SchedulerStep
        if not step.seq_ids: ...                                # nothing runnable yet (no arrivals)
        logits = paged_forward(model, cache, step.seq_ids, step.tokens)
        next_ids = [pick(row) if s else None for row, s in zip(logits, step.sample)]
        for req in sched.update(step, next_ids): ...            # the requests that finished
    sched.abort(rid)                                            # a client went away: blocks freed

`SchedulerStep` says which sequences run which tokens this iteration (seq id = request id),
which rows are to be sampled (a prefill chunk that does not reach the prompt's end is not),
and which requests were preempted, swapped out or swapped in to make room.

Policies (SchedulerConfig):
- policy "static": a batch is admitted only when the previous batch has completely finished
  (request-level batching, as a naive server batching `generate` calls); "continuous": a
  request joins and leaves the batch at any iteration (Yu et al. 2022, "Orca").
- chunked_prefill False: an iteration either prefills newly admitted prompts (whole) or decodes
  every running sequence, prefills first (vLLM's original scheduler). True: decodes go first and
  the rest of the token budget is filled with prompt chunks of at most chunk_size tokens
  (Agrawal et al. 2023/2024, "Sarathi"), so long prompts no longer stall decoding.
- preemption "recompute": a victim's blocks are freed and it is prefilled again later (prompt
  plus the tokens it had generated); "swap": its K/V go to host memory and come back unchanged.
  The victim is the most recently admitted running request, as in vLLM.
- kv_reservation "paged" (blocks on demand) or a contiguous reservation per request, as systems
  before vLLM did: "max_len" (the model's max_seq_len), "pow2" (the final length rounded up to a
  power of two) or "oracle" (exactly the final length). A contiguous mode admits a request only
  if a first-fit range of that many slots is free in an arena of the pool's size.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from llminfra_lab.checks import positive_int

from .blocks import ContiguousAllocator
from .cache import PagedKVCache, SwappedSequence

__all__ = ["SchedulerConfig", "Request", "SchedulerStep", "MemorySnapshot", "Scheduler", "RESERVATIONS"]

RESERVATIONS = ("paged", "max_len", "pow2", "oracle")


@dataclass
class SchedulerConfig:
    policy: str = "continuous"              # "static" | "continuous"
    max_num_seqs: int = 16                  # running sequences at most
    max_num_batched_tokens: int = 512       # tokens per iteration at most
    chunked_prefill: bool = False
    chunk_size: int = 64                    # prompt tokens per sequence per iteration when chunked
    preemption: str = "recompute"           # "recompute" | "swap"
    kv_reservation: str = "paged"           # one of RESERVATIONS

    def __post_init__(self):
        if self.policy not in ("static", "continuous"):
            raise ValueError(f"policy must be 'static' or 'continuous', got {self.policy!r}")
        if self.preemption not in ("recompute", "swap"):
            raise ValueError(f"preemption must be 'recompute' or 'swap', got {self.preemption!r}")
        if self.kv_reservation not in RESERVATIONS:
            raise ValueError(f"kv_reservation must be one of {RESERVATIONS}, got {self.kv_reservation!r}")
        if not isinstance(self.chunked_prefill, bool):
            raise ValueError(f"chunked_prefill must be a bool, got {self.chunked_prefill!r}")
        for name in ("max_num_seqs", "max_num_batched_tokens", "chunk_size"):
            positive_int(f"SchedulerConfig.{name}", getattr(self, name))


@dataclass
class Request:
    request_id: int
    prompt: list[int]
    max_new_tokens: int
    eos_token_id: int | None = None
    output: list[int] = field(default_factory=list)
    num_computed: int = 0                    # tokens whose K/V are in the pool
    status: str = "waiting"                  # waiting | running | swapped | finished | aborted
    num_preemptions: int = 0
    swapped: SwappedSequence | None = None

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.output

    @property
    def final_len(self) -> int:
        """Tokens the request holds when it finishes at max_new_tokens."""
        return len(self.prompt) + self.max_new_tokens


@dataclass
class SchedulerStep:
    seq_ids: list[int] = field(default_factory=list)
    tokens: list[list[int]] = field(default_factory=list)
    sample: list[bool] = field(default_factory=list)
    preempted: list[int] = field(default_factory=list)      # by recompute
    swapped_out: list[int] = field(default_factory=list)
    swapped_in: list[int] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)


@dataclass
class MemorySnapshot:
    """KV slots by what they hold, at one moment (token slots; capacity = num_blocks * block_size)."""

    capacity: int
    tokens: int              # slots holding a token's K/V
    reserved: int            # slots set aside for tokens the request will produce later (contiguous modes)
    internal: int            # slots of a request that will never hold a token (past its final length,
                             # or the empty tail of a paged sequence's last block)
    external: int            # free slots in holes too small for the next request's reservation

    @property
    def held(self) -> int:
        return self.tokens + self.reserved + self.internal + self.external


class Scheduler:
    """Iteration-level scheduler over `cache` (a PagedKVCache); see the module docstring."""

    def __init__(self, config: SchedulerConfig, cache: PagedKVCache, arena_slots: int | None = None):
        if not isinstance(config, SchedulerConfig):
            raise ValueError(f"config must be a SchedulerConfig, got {type(config).__name__}")
        if not isinstance(cache, PagedKVCache):
            raise ValueError(f"cache must be a PagedKVCache, got {type(cache).__name__}")
        self.config, self.cache = config, cache
        self.requests: dict[int, Request] = {}
        self.waiting: deque[int] = deque()
        self.running: list[int] = []
        self.swapped: deque[int] = deque()
        capacity = arena_slots or cache.allocator.num_blocks * cache.block_size
        positive_int("arena_slots", capacity)
        self.arena = ContiguousAllocator(capacity) if config.kv_reservation != "paged" else None

    # ------------------------------------------------------------------ requests
    def add_request(self, request_id: int, prompt: list[int], max_new_tokens: int,
                    eos_token_id: int | None = None) -> Request:
        """Queue a request; ValueError if it could never run (too long for the model, budget or pool)."""
        if request_id in self.requests:
            raise ValueError(f"request {request_id!r} already exists")
        cfg = self.cache.config
        if not isinstance(prompt, list) or not prompt or not all(
                isinstance(t, int) and not isinstance(t, bool) and 0 <= t < cfg.vocab_size for t in prompt):
            raise ValueError(f"prompt must be a non-empty list of token ids in [0, {cfg.vocab_size})")
        positive_int("max_new_tokens", max_new_tokens)
        req = Request(request_id, list(prompt), max_new_tokens, eos_token_id)
        if req.final_len > cfg.max_seq_len:
            raise ValueError(f"prompt {len(prompt)} + max_new_tokens {max_new_tokens} exceed max_seq_len {cfg.max_seq_len}")
        if not self.config.chunked_prefill and req.final_len > self.config.max_num_batched_tokens:
            raise ValueError(f"without chunked prefill a request of up to {req.final_len} tokens (prefilled again "
                             f"after a preemption) needs max_num_batched_tokens >= that, got "
                             f"{self.config.max_num_batched_tokens}")
        if -(-req.final_len // self.cache.block_size) > self.cache.allocator.num_blocks or \
                (self.arena and self._reservation(req) > self.arena.capacity):
            raise ValueError(f"a request of {req.final_len} tokens can never fit the KV pool")
        self.requests[request_id] = req
        self.waiting.append(request_id)
        return req

    def abort(self, request_id: int) -> None:
        """Drop a request wherever it is; its blocks (and reservation) are freed."""
        req = self._get(request_id)
        if req.status in ("finished", "aborted"):
            return
        for queue in (self.waiting, self.swapped):
            if request_id in queue:
                queue.remove(request_id)
        self._release(req, "aborted")

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running or self.swapped)

    # ------------------------------------------------------------------ one iteration
    def schedule(self) -> SchedulerStep:
        """The work of the next iteration (possibly empty); preempts when blocks run out."""
        step, budget = SchedulerStep(), _Budget(self.config.max_num_batched_tokens, self.cache.allocator.num_free)
        if self.config.chunked_prefill:
            self._schedule_running(step, budget, decode_only=False)
            if not step.preempted and not step.swapped_out:
                self._swap_in(step, budget)
                self._admit(step, budget)
            return step
        if not self.swapped:                       # prefill-first: new prompts, whole, in their own step
            self._admit(step, budget)
            if step.seq_ids:
                return step
        self._schedule_running(step, budget, decode_only=True)
        if not step.preempted and not step.swapped_out:
            self._swap_in(step, budget)
        return step

    def update(self, step: SchedulerStep, next_tokens: list[int | None]) -> list[Request]:
        """Record an iteration's results (a token id per row where step.sample is True); the finished requests."""
        if not isinstance(step, SchedulerStep) or not isinstance(next_tokens, list) \
                or len(next_tokens) != len(step.seq_ids):
            raise ValueError("update needs the SchedulerStep and one entry of next_tokens per scheduled sequence")
        finished = []
        for seq_id, toks, sample, nxt in zip(step.seq_ids, step.tokens, step.sample, next_tokens):
            req = self.requests[seq_id]
            if req.status != "running":          # aborted while the step ran
                continue
            req.num_computed += len(toks)
            if not sample:
                continue
            if isinstance(nxt, bool) or not isinstance(nxt, int):
                raise ValueError(f"sequence {seq_id} was to be sampled; next_tokens must hold its token id")
            req.output.append(nxt)
            if len(req.output) >= req.max_new_tokens or nxt == req.eos_token_id:
                self._release(req, "finished")
                finished.append(req)
        return finished

    def memory(self) -> MemorySnapshot:
        """Where the KV slots are now: tokens, reserved, internal and external fragmentation."""
        bs, capacity = self.cache.block_size, self.cache.allocator.num_blocks * self.cache.block_size
        if self.arena is None:
            tokens = self.cache.num_tokens
            return MemorySnapshot(capacity, tokens, 0, self.cache.num_used_blocks * bs - tokens, 0)
        live = [self.requests[r] for r in self.running]
        tokens = sum(self.cache.seq_len(r.request_id) for r in live)
        reserved = sum(r.final_len - self.cache.seq_len(r.request_id) for r in live)
        internal = sum(self.arena.size_of(r.request_id) - r.final_len for r in live)
        nxt = self.requests[self.waiting[0]] if self.waiting else None
        external = self.arena.unusable_free(self._reservation(nxt)) if nxt else 0
        return MemorySnapshot(self.arena.capacity, tokens, reserved, internal, external)

    # ------------------------------------------------------------------ the parts of schedule()
    def _schedule_running(self, step: SchedulerStep, budget: _Budget, decode_only: bool) -> None:
        queue = list(self.running)
        while queue:
            req = self.requests[queue.pop(0)]
            remaining = len(req.tokens) - req.num_computed
            if decode_only and remaining != 1:
                continue
            n = min(remaining, self.config.chunk_size if remaining > 1 else 1, budget.tokens)
            if n == 0 or len(step.seq_ids) >= self.config.max_num_seqs:
                continue
            while self.cache.blocks_needed(req.request_id, n) > budget.blocks:
                victim = queue.pop() if queue else req       # the latest admitted, possibly req itself
                self._preempt(self.requests[victim] if isinstance(victim, int) else victim, step, budget)
                if victim is req:
                    break
            if req.status == "running":
                self._plan(step, budget, req, n)

    def _swap_in(self, step: SchedulerStep, budget: _Budget) -> None:
        bs = self.cache.block_size
        while self.swapped and len(self.running) < self.config.max_num_seqs and budget.tokens >= 1:
            req = self.requests[self.swapped[0]]
            blocks_in = -(-req.num_computed // bs)
            if -(-(req.num_computed + 1) // bs) > budget.blocks:
                return
            self.swapped.popleft()
            self.cache.swap_in(req.request_id, req.swapped)
            budget.blocks -= blocks_in
            req.swapped, req.status = None, "running"
            self.running.append(req.request_id)
            step.swapped_in.append(req.request_id)
            self._plan(step, budget, req, min(len(req.tokens) - req.num_computed, self.config.chunk_size,
                                              budget.tokens))

    def _admit(self, step: SchedulerStep, budget: _Budget) -> None:
        if self.config.policy == "static" and (self.running or self.swapped):
            return
        while self.waiting and len(self.running) < self.config.max_num_seqs and budget.tokens > 0:
            req = self.requests[self.waiting[0]]
            todo = len(req.tokens)
            n = min(todo, self.config.chunk_size, budget.tokens) if self.config.chunked_prefill else todo
            if n > budget.tokens or -(-todo // self.cache.block_size) > budget.blocks:
                return                                  # the whole prompt must fit, not just this chunk
            if self.arena is not None and self.arena.allocate(req.request_id, self._reservation(req)) is None:
                return
            self.waiting.popleft()
            self.cache.add_sequence(req.request_id)
            req.status = "running"
            self.running.append(req.request_id)
            self._plan(step, budget, req, n)

    def _plan(self, step: SchedulerStep, budget: _Budget, req: Request, n: int) -> None:
        budget.blocks -= self.cache.blocks_needed(req.request_id, n)
        budget.tokens -= n
        step.seq_ids.append(req.request_id)
        step.tokens.append(req.tokens[req.num_computed:req.num_computed + n])
        step.sample.append(req.num_computed + n == len(req.tokens))

    def _preempt(self, req: Request, step: SchedulerStep, budget: _Budget) -> None:
        before = self.cache.allocator.num_free
        self.running.remove(req.request_id)
        req.num_preemptions += 1
        if self.config.preemption == "swap":
            req.swapped, req.status = self.cache.swap_out(req.request_id), "swapped"
            self.swapped.append(req.request_id)
            step.swapped_out.append(req.request_id)
        else:
            self.cache.free_sequence(req.request_id)
            req.num_computed, req.status = 0, "waiting"
            self.waiting.appendleft(req.request_id)
            step.preempted.append(req.request_id)
        if self.arena is not None:
            self.arena.release(req.request_id)
        budget.blocks += self.cache.allocator.num_free - before
        if req.request_id in step.seq_ids:                  # planned earlier in this step: unplan it
            i = step.seq_ids.index(req.request_id)
            budget.tokens += len(step.tokens[i])
            for lst in (step.seq_ids, step.tokens, step.sample):
                del lst[i]

    def _release(self, req: Request, status: str) -> None:
        if req.request_id in self.running:
            self.running.remove(req.request_id)
        if self.cache.has_sequence(req.request_id):
            self.cache.free_sequence(req.request_id)
        if self.arena is not None and req.request_id in self.arena._ranges:
            self.arena.release(req.request_id)
        req.swapped, req.status = None, status

    def _reservation(self, req: Request) -> int:
        """Contiguous slots reserved for a request in the non-paged modes."""
        mode = self.config.kv_reservation
        if mode == "max_len":
            return self.cache.config.max_seq_len
        if mode == "pow2":
            return min(1 << (req.final_len - 1).bit_length(), max(self.cache.config.max_seq_len, req.final_len))
        return req.final_len

    def _get(self, request_id: int) -> Request:
        if request_id not in self.requests:
            raise KeyError(f"unknown request {request_id!r}")
        return self.requests[request_id]


@dataclass
class _Budget:
    tokens: int
    blocks: int
