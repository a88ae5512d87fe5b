"""A bounded load generator for an OpenAI-compatible server on this machine.

Open-loop arrivals: request i is sent at time t_i of a Poisson process (exponential gaps
of mean 1 / rate), whether or not earlier requests have finished, as real users do; a
closed loop ("send the next when one returns") would let a slow server slow its own load
down and hide queueing. Each request streams, so the client sees when the first token
arrives (TTFT) and when the last does. Bounded three ways: a fixed number of requests, a
wall-clock limit after which unfinished requests are cancelled and counted as failed, and
loopback only (it refuses any other host).

    TTFT  = first streamed token - request sent           (seconds)
    TPOT  = (last token - first token) / (tokens - 1)      (seconds per token, >= 2 tokens)
    goodput = requests per second that finished AND met the SLO on both TTFT and TPOT
"""
from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

import httpx
import numpy as np

from llminfra_lab.checks import positive_int, positive_number

__all__ = ["SLO", "RequestRecord", "poisson_arrivals", "make_workload", "run_load", "summarize",
           "percentile", "goodput", "LOOPBACK_HOSTS"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class SLO:
    """A service-level objective: a request is good when both limits hold (seconds)."""
    ttft_s: float = 1.0
    tpot_s: float = 0.1

    def __post_init__(self):
        positive_number("SLO.ttft_s", self.ttft_s)
        positive_number("SLO.tpot_s", self.tpot_s)


@dataclass
class RequestRecord:
    """What the client saw of one request (times in seconds from the start of the run)."""
    sent_s: float
    ttft_s: float | None = None
    e2e_s: float | None = None
    completion_tokens: int = 0
    ok: bool = False
    error: str = ""

    @property
    def tpot_s(self) -> float | None:
        if not self.ok or self.ttft_s is None or self.completion_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.completion_tokens - 1)


def poisson_arrivals(n: int, rate_per_s: float, seed: int = 0) -> list[float]:
    """Send times (seconds from 0) of n requests arriving as a Poisson process of the given rate."""
    positive_int("n", n)
    positive_number("rate_per_s", rate_per_s)
    rng = random.Random(seed)
    t, times = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate_per_s)
        times.append(t)
    return times


def make_workload(n: int, seed: int = 0, max_tokens: tuple[int, int] = (8, 48)) -> list[tuple[str, int]]:
    """n (prompt, max_tokens) pairs: story openings and arithmetic lines, output lengths uniform in max_tokens."""
    positive_int("n", n)
    lo, hi = max_tokens
    positive_int("max_tokens[0]", lo)
    if hi < lo:
        raise ValueError(f"max_tokens must be (low, high) with low <= high, got {max_tokens}")
    rng = random.Random(seed)
    openings = ["Once upon a time", "One day, a little", "The cat", "Tom and Lily went to the",
                "There was a big red", "A happy dog named"]
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            prompt = rng.choice(openings)
        else:
            prompt = "".join(f"{rng.randint(1, 99)}+{rng.randint(1, 99)}=\n" for _ in range(rng.randint(0, 3)))
            prompt += f"{rng.randint(1, 99)}+{rng.randint(1, 99)}="
        out.append((prompt, rng.randint(lo, hi)))
    return out


async def _one(client: httpx.AsyncClient, url: str, model: str, prompt: str, max_tokens: int,
               delay_s: float, t0: float) -> RequestRecord:
    await asyncio.sleep(max(0.0, t0 + delay_s - time.perf_counter()))
    rec = RequestRecord(sent_s=time.perf_counter() - t0)
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    sent = time.perf_counter()
    try:
        async with client.stream("POST", url, json=body) as resp:
            if resp.status_code != 200:
                rec.error = f"HTTP {resp.status_code}"
                return rec
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("choices") and rec.ttft_s is None and chunk["choices"][0].get("text"):
                    rec.ttft_s = time.perf_counter() - sent
                if chunk.get("usage"):
                    rec.completion_tokens = chunk["usage"]["completion_tokens"]
        rec.e2e_s = time.perf_counter() - sent
        if rec.ttft_s is None:                     # all tokens held back until the end (e.g. a stop string)
            rec.ttft_s = rec.e2e_s
        rec.ok = True
    except (httpx.HTTPError, json.JSONDecodeError, KeyError) as e:
        rec.error = type(e).__name__
    return rec


async def _run(base_url: str, workload, arrivals, time_limit_s: float, model: str) -> list[RequestRecord]:
    url = base_url.rstrip("/") + "/v1/completions"
    limits = httpx.Limits(max_connections=len(workload) + 1)
    async with httpx.AsyncClient(timeout=httpx.Timeout(time_limit_s), limits=limits) as client:
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(_one(client, url, model, p, m, a, t0))
                 for (p, m), a in zip(workload, arrivals)]
        done, pending = await asyncio.wait(tasks, timeout=time_limit_s)
        for task in pending:
            task.cancel()
        records = []
        for task, a in zip(tasks, arrivals):
            if task in done and not task.cancelled():
                records.append(task.result())
            else:
                records.append(RequestRecord(sent_s=a, error="time limit"))
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return records


def run_load(base_url: str, n_requests: int = 16, rate_per_s: float = 4.0, time_limit_s: float = 30.0,
             seed: int = 0, max_tokens: tuple[int, int] = (8, 48), model: str = "tiny-gpt") -> list[RequestRecord]:
    """Send n_requests streamed completions to base_url (loopback only) at Poisson times; return their records.

    Runs its own event loop in a helper thread, so it works from a notebook (whose loop is busy).
    """
    host = urlparse(base_url).hostname
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the load generator only targets this machine ({LOOPBACK_HOSTS}), got host {host!r}")
    positive_int("n_requests", n_requests)
    positive_number("rate_per_s", rate_per_s)
    positive_number("time_limit_s", time_limit_s)
    workload = make_workload(n_requests, seed, max_tokens)
    arrivals = poisson_arrivals(n_requests, rate_per_s, seed)
    result: dict = {}

    def target():
        try:
            result["records"] = asyncio.run(_run(base_url, workload, arrivals, time_limit_s, model))
        except BaseException as e:          # surfaced in the caller's thread below
            result["error"] = e

    thread = threading.Thread(target=target, name="loadgen")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["records"]


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation as numpy's default), None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


def goodput(ttft_s: list[float | None], tpot_s: list[float | None], duration_s: float, slo: SLO) -> float:
    """Requests per second that met the SLO: TTFT <= slo.ttft_s and TPOT <= slo.tpot_s.

    One entry per request sent; None for TTFT marks a request that failed (never good); None
    for TPOT marks a one-token reply, judged on TTFT alone.
    """
    if len(ttft_s) != len(tpot_s):
        raise ValueError(f"ttft_s and tpot_s must have one entry per request, got {len(ttft_s)} and {len(tpot_s)}")
    positive_number("duration_s", duration_s)
    good = sum(1 for a, b in zip(ttft_s, tpot_s)
               if a is not None and a <= slo.ttft_s and (b is None or b <= slo.tpot_s))
    return good / duration_s


def summarize(records: list[RequestRecord], slo: SLO = SLO()) -> dict:
    """Throughput, TTFT and TPOT p50/p90/p99 and goodput of one run.

    The run's duration is from the first send to the last finish, so an idle tail after the
    last request does not dilute throughput. TTFT percentiles cover finished requests; a
    failed request counts against goodput, never silently dropped.
    """
    if not records:
        raise ValueError("records must be a non-empty list of RequestRecord")
    ok = [r for r in records if r.ok]
    end = max((r.sent_s + r.e2e_s for r in ok), default=0.0)
    start = min(r.sent_s for r in records)
    duration = max(end - start, 1e-9)
    ttft = [r.ttft_s for r in ok]
    tpot = [r.tpot_s for r in ok if r.tpot_s is not None]
    good_rate = goodput([r.ttft_s if r.ok else None for r in records], [r.tpot_s for r in records], duration, slo)
    out = {
        "requests": len(records), "finished": len(ok), "failed": len(records) - len(ok),
        "duration_s": duration if ok else None,
        "output_tokens": sum(r.completion_tokens for r in ok),
        "throughput_tok_s": sum(r.completion_tokens for r in ok) / duration if ok else 0.0,
        "throughput_req_s": len(ok) / duration if ok else 0.0,
        "goodput_req_s": good_rate if ok else 0.0,
        "slo_attainment": good_rate * duration / len(records),
        "slo": asdict(slo),
    }
    for name, values in (("ttft", ttft), ("tpot", tpot)):
        for q in (50, 90, 99):
            out[f"{name}_p{q}_s"] = percentile(values, q)
    return out
