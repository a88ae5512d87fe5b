"""A small inference engine and its OpenAI-compatible server, built from chapters 11 and 12's parts.

- `core`: `Engine` (the tiny GPT + chapter 12's paged KV pool and scheduler + a sampler):
  `add_request`, `step`, `generate`, `abort`;
- `sampling`: `SamplingParams` (temperature, top-p, top-k, max tokens, stop strings, seed), the
  per-request sampler, streaming with stop strings, the tiny GPT's chat template;
- `server`: FastAPI + uvicorn, `/v1/models`, `/v1/completions`, `/v1/chat/completions` (SSE
  streaming), `/health`, `/metrics`; `python -m llminfra_lab.engine.server --port N`;
- `metrics`: the Prometheus registry of one server;
- `loadgen`: a bounded open-loop load generator (Poisson arrivals) and its summary: throughput,
  TTFT and TPOT percentiles, goodput under an SLO;
- `plots`: the engine schematic and the benchmark figures.
"""
from __future__ import annotations

from .core import Engine, RequestOutput, engine_from_args
from .loadgen import SLO, RequestRecord, goodput, make_workload, percentile, poisson_arrivals, run_load, summarize
from .metrics import EngineMetrics
from .plots import plot_engine_schematic, plot_latency_percentiles, plot_throughput_goodput
from .sampling import (
    CHAT_TEMPLATE_DOC,
    SamplingParams,
    apply_chat_template,
    emit_safe_length,
    sample_token,
    sampling_probs,
    stop_position,
)

__all__ = [
    "Engine", "RequestOutput", "engine_from_args",
    "SamplingParams", "sampling_probs", "sample_token", "stop_position", "emit_safe_length", "apply_chat_template",
    "CHAT_TEMPLATE_DOC",
    "SLO", "RequestRecord", "poisson_arrivals", "make_workload", "run_load", "summarize", "percentile", "goodput",
    "EngineMetrics",
    "plot_engine_schematic", "plot_latency_percentiles", "plot_throughput_goodput",
]
