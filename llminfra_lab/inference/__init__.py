"""Inference fundamentals (chapter 11): prefill and decode, the KV cache, latency metrics,
flash-decoding.

Read the files in this order:

    cost.py            FLOPs and HBM bytes of a prefill and of a decode step of a catalog model,
                       as roofline.KernelCost; the batch where decode stops being memory-bound;
                       KV cache per request and how many requests fit in HBM after the weights
    generation.py      greedy generation without a cache (the plain reference) and with
                       model.KVCache, timed; TTFT, TPOT and throughput as the OpenTelemetry GenAI
                       metrics define them
    flash_decoding.py  split-KV decode attention: partial results over chunks of the cache,
                       merged with attention.merge_partials
    plots.py           the chapter's figures

KV bytes per token live in the spine (`memory.kv_cache_bytes_per_token`); the roofline and the
accelerator table are chapter 2's (`roofline`, `hardware`).
"""
from __future__ import annotations

from llminfra_lab.inference.cost import (
    PhaseCost,
    attention_kind,
    decode_cost,
    decode_crossover_batch,
    kv_cache_bytes,
    kv_cache_rows,
    linear_shapes,
    max_concurrent_requests,
    phase_cost,
    prefill_cost,
    weight_bytes,
)
from llminfra_lab.inference.flash_decoding import chunk_attention, decode_work_items, split_bounds, split_kv_attention
from llminfra_lab.inference.generation import (
    OTEL_METRICS,
    LatencyMetrics,
    greedy_cached_timed,
    greedy_uncached,
    latency_metrics,
    measure_generation,
)
from llminfra_lab.inference.plots import (
    batching_timelines,
    load_bench,
    plot_batching_schematic,
    plot_decode_intensity,
    plot_kv_per_token,
    plot_latency_bench,
    plot_phase_roofline,
    plot_split_kv_schematic,
)

__all__ = [
    "PhaseCost", "linear_shapes", "phase_cost", "prefill_cost", "decode_cost", "decode_crossover_batch",
    "attention_kind", "kv_cache_bytes", "weight_bytes", "max_concurrent_requests", "kv_cache_rows",
    "chunk_attention", "split_bounds", "split_kv_attention", "decode_work_items",
    "OTEL_METRICS", "greedy_uncached", "greedy_cached_timed", "LatencyMetrics", "latency_metrics",
    "measure_generation",
    "load_bench", "plot_phase_roofline", "plot_decode_intensity", "plot_kv_per_token", "plot_split_kv_schematic",
    "batching_timelines", "plot_batching_schematic", "plot_latency_bench",
]
