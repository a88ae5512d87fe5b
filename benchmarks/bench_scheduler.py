"""Chapter 12: one synthetic request trace served by the shipped tiny GPT under each policy.

Writes llminfra_lab/assets/paged_bench.json (read by chapter 12 and its lab):
- the trace's distributions and totals;
- per policy: iterations, generated tokens, forward seconds, tokens per second, mean batch,
  preemptions, the time-averaged shares of held KV slots (token states, reserved, internal and
  external fragmentation) and the batch size of every iteration;
- the static vs continuous throughput ratio in tokens per CPU second of this process
  (`time.process_time`, which other jobs on a shared machine do not inflate as they do wall
  time), measured by alternating the two runs `--repeats` times in one process and taking the
  median of the per-pair ratios; wall-clock figures are recorded too;
- parallel-sampling and beam-search block counts with and without sharing.

    .venv/bin/python benchmarks/bench_scheduler.py [--requests 64] [--repeats 3] [--out PATH]

A run takes several minutes on 2 CPU cores. Greedy outputs are checked to be identical under
every policy (they must be: scheduling changes when a token is computed, never what it is).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from llminfra_lab import shipped
from llminfra_lab.model import load_pretrained
from llminfra_lab.paged import SchedulerConfig, beam_search, parallel_sample, replay, synthetic_trace

POOL_SLOTS = 768          # KV token slots: 48 blocks of 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1.0, help="arrivals per iteration")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=shipped.ASSETS / "paged_bench.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, _ = load_pretrained("target")
    trace = synthetic_trace(args.requests, model.cfg.vocab_size, rate=args.rate, seed=0)
    base = dict(max_num_seqs=16, max_num_batched_tokens=512)
    runs = {
        "static, contiguous max-length": (SchedulerConfig(policy="static", kv_reservation="max_len", **base), 16),
        "static": (SchedulerConfig(policy="static", **base), 16),
        "continuous": (SchedulerConfig(**base), 16),
        "continuous, chunked prefill": (SchedulerConfig(max_num_seqs=16, max_num_batched_tokens=128,
                                                        chunked_prefill=True, chunk_size=32), 16),
        "continuous, swap": (SchedulerConfig(preemption="swap", **base), 16),
        "contiguous max-length": (SchedulerConfig(kv_reservation="max_len", **base), 16),
        "contiguous pow2": (SchedulerConfig(kv_reservation="pow2", **base), 16),
        "contiguous oracle": (SchedulerConfig(kv_reservation="oracle", **base), 16),
        "continuous, block 8": (SchedulerConfig(**base), 8),
        "continuous, block 4": (SchedulerConfig(**base), 4),
    }
    results, outputs = {}, None
    for name, (config, block_size) in runs.items():
        start, cpu = time.perf_counter(), time.process_time()
        r = replay(model, trace, config, num_blocks=POOL_SLOTS // block_size, block_size=block_size,
                   clock=time.process_time)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        if outputs is None:
            outputs = r.outputs
        assert r.outputs == outputs, f"{name}: greedy outputs differ from the first policy's"
        results[name] = {**r.summary(), "block_size": block_size, "wall_seconds": round(wall, 3),
                         "cpu_seconds": round(cpu, 3),
                         "tokens_per_wall_second": round(r.generated_tokens / wall, 2),
                         "tokens_per_cpu_second": round(r.generated_tokens / cpu, 2),
                         "batch_sizes": r.batch_sizes}
        print(f"{name:30s} {r.iterations:4d} it  {r.generated_tokens / cpu:7.1f} tok/cpu-s  "
              f"batch {results[name]['mean_batch']:5.2f}  preempt {r.preemptions:3d}  "
              f"tokens {100 * r.fractions['tokens']:5.1f}%", flush=True)
    ratios, wall_ratios = [], []
    for _ in range(args.repeats):                 # alternate the pair so load drifts hit both
        pair, wall_pair = {}, {}
        for name in ("static", "continuous"):
            config, block_size = runs[name]
            start, cpu = time.perf_counter(), time.process_time()
            r = replay(model, trace, config, num_blocks=POOL_SLOTS // block_size, block_size=block_size)
            pair[name] = r.generated_tokens / (time.process_time() - cpu)
            wall_pair[name] = r.generated_tokens / (time.perf_counter() - start)
        ratios.append(pair["continuous"] / pair["static"])
        wall_ratios.append(wall_pair["continuous"] / wall_pair["static"])
    prompt = [t for r in trace for t in r.prompt][:96]            # a 96-token prompt from the trace's tokens
    samples, par = parallel_sample(model, prompt, 8, 32, seed=0, block_size=16)
    beams, beam = beam_search(model, prompt, 4, 32, block_size=16)
    out = {
        "made_by": "benchmarks/bench_scheduler.py",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "torch": torch.__version__,
        "threads": 1, "pool_slots": POOL_SLOTS,
        "trace": {"requests": args.requests, "rate_per_iteration": args.rate, "seed": 0,
                  "prompt": "lognormal median 40, sigma 0.6, clipped [4, 128]",
                  "output": "lognormal median 32, sigma 0.7, clipped [4, 120]",
                  "prompt_tokens": sum(len(r.prompt) for r in trace),
                  "output_tokens": sum(r.output_len for r in trace),
                  "last_arrival": trace[-1].arrival},
        "runs": results,
        "continuous_over_static": {"tokens_per_cpu_second_ratios": [round(x, 3) for x in ratios],
                                   "median": round(statistics.median(ratios), 3),
                                   "tokens_per_wall_second_ratios": [round(x, 3) for x in wall_ratios],
                                   "iterations_ratio": round(results["static"]["iterations"]
                                                             / results["continuous"]["iterations"], 3)},
        "sharing": {"parallel_sampling": {"prompt": len(prompt), "n": 8, "new_tokens": 32, "block_size": 16,
                                          "peak_blocks": par.peak_blocks, "unshared_blocks": par.unshared_blocks,
                                          "copies": par.copies},
                    "beam_search": {"prompt": len(prompt), "beam_width": 4, "new_tokens": 32, "block_size": 16,
                                    "peak_blocks": beam.peak_blocks, "unshared_blocks": beam.unshared_blocks,
                                    "copies": beam.copies}},
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print("continuous / static tokens per second:", out["continuous_over_static"])
    print("wrote", args.out)


if __name__ == "__main__":
    main()
