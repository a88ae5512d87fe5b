"""Benchmark chapter 13's server under several scheduler settings with the bounded load generator.

For each setting: start the OpenAI-compatible server on a free loopback port, send the same
open-loop workload (Poisson arrivals, fixed request count, time limit), stop the server, and
summarise throughput, TTFT and TPOT p50/p90/p99 and goodput under the stated SLO. Writes
llminfra_lab/assets/engine_bench.json, which the chapter and the lab read.

    python benchmarks/bench_engine.py [--requests 48] [--rate 3] [--out llminfra_lab/assets/engine_bench.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from llminfra_lab.engine import SLO, engine_from_args, run_load, summarize
from llminfra_lab.engine.server import start_server

SETTINGS = {
    "static (batch of 8)": dict(policy="static", max_num_seqs=8),
    "continuous (8 seqs)": dict(policy="continuous", max_num_seqs=8),
    "continuous (8), chunked prefill": dict(policy="continuous", max_num_seqs=8, chunked_prefill=True,
                                            chunk_size=16, max_num_batched_tokens=64),
    "continuous (2 seqs)": dict(policy="continuous", max_num_seqs=2),
}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--rate", type=float, default=3.0)
    ap.add_argument("--time-limit", type=float, default=240.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "llminfra_lab/assets/engine_bench.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    slo = SLO(ttft_s=1.0, tpot_s=0.1)
    results = {}
    for name, kwargs in SETTINGS.items():
        engine = engine_from_args(num_blocks=256, block_size=16, **kwargs)
        handle = start_server(engine)
        try:
            run_load(handle.url, n_requests=4, rate_per_s=50.0, time_limit_s=60, seed=99)     # warm-up
            t = time.perf_counter()
            records = run_load(handle.url, n_requests=args.requests, rate_per_s=args.rate,
                               time_limit_s=args.time_limit, seed=args.seed)
            results[name] = {"scheduler": kwargs, **summarize(records, slo),
                             "wall_s": time.perf_counter() - t}
        finally:
            handle.stop()
        print(f"{name:34s} {results[name]['throughput_tok_s']:7.1f} tok/s  goodput {results[name]['goodput_req_s']:.2f}"
              f" req/s  TTFT p50 {results[name]['ttft_p50_s'] * 1000:.0f} ms  p99 {results[name]['ttft_p99_s'] * 1000:.0f}"
              f" ms  TPOT p50 {results[name]['tpot_p50_s'] * 1000:.0f} ms")
    out = {"made_by": "benchmarks/bench_engine.py", "requests": args.requests, "rate_per_s": args.rate,
           "seed": args.seed, "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s}, "threads": args.threads,
           "workload": "make_workload: story openings and arithmetic lines, max_tokens uniform in [8, 48], greedy",
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "device": "cpu", "torch": torch.__version__, "results": results}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
