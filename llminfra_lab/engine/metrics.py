"""Prometheus metrics of the engine's server, named after the ones vLLM exports.

One `CollectorRegistry` per server (not prometheus-client's global one), so two servers in
one process (a test starting several) keep separate counts. The histograms' buckets are in
seconds and sized for a tiny model on a CPU: tens of milliseconds to tens of seconds.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["EngineMetrics", "CONTENT_TYPE_LATEST", "LATENCY_BUCKETS_S"]

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class EngineMetrics:
    """The server's counters, gauges and latency histograms, in a registry of their own."""

    def __init__(self, prefix: str = "llminfra"):
        if not isinstance(prefix, str) or not prefix.isidentifier():
            raise ValueError(f"prefix must be a Python-identifier-like string, got {prefix!r}")
        self.registry = CollectorRegistry()
        r, p = self.registry, prefix
        self.requests_running = Gauge(f"{p}_num_requests_running", "Requests in the running batch", registry=r)
        self.requests_waiting = Gauge(f"{p}_num_requests_waiting", "Requests queued for admission", registry=r)
        self.kv_cache_usage = Gauge(f"{p}_kv_cache_usage_perc", "Fraction of KV blocks in use (0-1)", registry=r)
        self.prompt_tokens = Counter(f"{p}_prompt_tokens", "Prompt tokens admitted", registry=r)
        self.generation_tokens = Counter(f"{p}_generation_tokens", "Tokens generated", registry=r)
        self.request_success = Counter(f"{p}_request_success", "Requests finished, by finish reason",
                                       ["finished_reason"], registry=r)
        self.request_errors = Counter(f"{p}_request_errors", "Requests refused, by HTTP status", ["status"],
                                      registry=r)
        self.ttft = Histogram(f"{p}_time_to_first_token_seconds", "Arrival to first generated token",
                              buckets=LATENCY_BUCKETS_S, registry=r)
        self.tpot = Histogram(f"{p}_time_per_output_token_seconds", "Mean gap between later output tokens",
                              buckets=LATENCY_BUCKETS_S, registry=r)
        self.e2e = Histogram(f"{p}_e2e_request_latency_seconds", "Arrival to last token",
                             buckets=LATENCY_BUCKETS_S, registry=r)

    def observe_finished(self, reason: str, ttft_s: float | None, e2e_s: float, n_tokens: int) -> None:
        """Count one finished request and record its latencies (TPOT needs two tokens or more)."""
        self.request_success.labels(finished_reason=reason).inc()
        self.e2e.observe(e2e_s)
        if ttft_s is not None:
            self.ttft.observe(ttft_s)
            if n_tokens > 1:
                self.tpot.observe((e2e_s - ttft_s) / (n_tokens - 1))

    def set_load(self, running: int, waiting: int, kv_usage: float) -> None:
        self.requests_running.set(running)
        self.requests_waiting.set(waiting)
        self.kv_cache_usage.set(kv_usage)

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)
