"""Continuous batching and PagedAttention: chapter 12's block pool, paged forward pass and scheduler.

- `blocks`: `BlockAllocator` (reference counts, copy-on-write), `OutOfBlocks`, and the
  `ContiguousAllocator` of systems that reserve one contiguous range per request;
- `cache`: `PagedKVCache` (per-layer block pools, block tables, fork, swap), `paged_attention`
  (K/V gathered through block tables) and `paged_forward` (the tiny GPT on a mixed batch);
- `scheduler`: `Scheduler` and `SchedulerConfig` (static vs continuous batching, chunked
  prefill, preemption by recompute or swap, paged vs contiguous KV reservation);
- `replay`: a synthetic request trace served with the real tiny GPT under each policy;
- `sharing`: parallel sampling and beam search sharing blocks with copy-on-write;
- `prefix`: prefix caching as vLLM does it (hashed full blocks) and as SGLang does (radix tree);
- `plots`: the block-table schematic and the chapter's figures.

Chapter 13's engine drives `PagedKVCache`, `paged_forward` and `Scheduler`; their names and
signatures are a contract (see the scheduler module's docstring for the loop).
"""
from __future__ import annotations

from .blocks import BlockAllocator, ContiguousAllocator, OutOfBlocks
from .cache import PagedKVCache, SwappedSequence, paged_attention, paged_forward, slots_for
from .plots import plot_batch_timeline, plot_block_table_schematic, plot_memory_breakdown, plot_prefix_hit_rates
from .prefix import BlockPrefixCache, RadixCache, block_hashes, hit_rate, multi_turn_trace, shared_prompt_trace
from .replay import ReplayResult, TraceRequest, replay, serve_greedy, synthetic_trace
from .scheduler import RESERVATIONS, MemorySnapshot, Request, Scheduler, SchedulerConfig, SchedulerStep
from .sharing import SharingStats, beam_search, parallel_sample

__all__ = [
    "OutOfBlocks", "BlockAllocator", "ContiguousAllocator",
    "PagedKVCache", "SwappedSequence", "paged_attention", "paged_forward", "slots_for",
    "SchedulerConfig", "Scheduler", "SchedulerStep", "Request", "MemorySnapshot", "RESERVATIONS",
    "TraceRequest", "ReplayResult", "synthetic_trace", "replay", "serve_greedy",
    "SharingStats", "parallel_sample", "beam_search",
    "block_hashes", "BlockPrefixCache", "RadixCache", "shared_prompt_trace", "multi_turn_trace", "hit_rate",
    "plot_block_table_schematic", "plot_memory_breakdown", "plot_batch_timeline", "plot_prefix_hit_rates",
]
