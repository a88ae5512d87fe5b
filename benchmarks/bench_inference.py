"""Chapter 11's measurements: TTFT, TPOT and per-token step time of the tiny GPT on this CPU.

    .venv/bin/python benchmarks/bench_inference.py

With the shipped `target` model, one thread, greedy decoding:
(a) KV-cached generation of 32 tokens after prompts of 16 to 192 tokens: TTFT and TPOT
    (median of 5 runs), as the OpenTelemetry GenAI server metrics define them;
(b) the time of each generation step with and without the KV cache, from a 16-token prompt to
    the 256-token context (median of 5 runs per step);
(c) throughput of cached decoding at batch 1 to 64 (prompt 64, 32 new tokens).
It prints the tables and writes llminfra_lab/assets/inference_bench.json, which the chapter
and lab read. Times depend on the machine; the ratios are the point.
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch

from llminfra_lab import model
from llminfra_lab.inference import greedy_cached_timed, greedy_uncached, latency_metrics
from llminfra_lab.model import KVCache

OUT = Path(__file__).resolve().parents[1] / "llminfra_lab" / "assets" / "inference_bench.json"
RUNS = 5


def prompt_ids(tok, n: int, batch: int = 1) -> torch.Tensor:
    text = "Once upon a time there was a little fox who lived in the forest. " * 40
    ids = tok.encode(text)[:n]
    return torch.tensor([ids] * batch, dtype=torch.long)


def ttft_table(gpt, tok) -> list[dict]:
    rows = []
    for n in (16, 32, 64, 128, 192):
        idx = prompt_ids(tok, n)
        runs = [latency_metrics(greedy_cached_timed(gpt, idx, 32)[1]) for _ in range(RUNS)]
        rows.append({"prompt": n, "ttft_ms": 1e3 * statistics.median(r.ttft_s for r in runs),
                     "tpot_ms": 1e3 * statistics.median(r.tpot_s for r in runs)})
    return rows


@torch.no_grad()
def step_times(gpt, tok) -> dict:
    idx = prompt_ids(tok, 16)
    total = gpt.cfg.max_seq_len - idx.shape[1]
    full = greedy_uncached(gpt, idx, total)                  # the tokens both paths produce
    cached, uncached = [[] for _ in range(total)], [[] for _ in range(total)]
    for _ in range(RUNS):
        cache = KVCache.empty(gpt.cfg, 1)
        step_input = idx
        for i in range(total):
            t0 = time.perf_counter()
            gpt(step_input, cache)
            cached[i].append(time.perf_counter() - t0)
            step_input = full[:, idx.shape[1] + i:idx.shape[1] + i + 1]
        for i in range(total):
            t0 = time.perf_counter()
            gpt(full[:, :idx.shape[1] + i])
            uncached[i].append(time.perf_counter() - t0)
    positions = list(range(idx.shape[1], idx.shape[1] + total))
    return {"position": positions, "cached_step_ms": [1e3 * statistics.median(c) for c in cached],
            "uncached_step_ms": [1e3 * statistics.median(u) for u in uncached]}


def batch_table(gpt, tok) -> list[dict]:
    rows = []
    for b in (1, 4, 16, 64):
        idx = prompt_ids(tok, 64, b)
        runs = sorted((latency_metrics(greedy_cached_timed(gpt, idx, 32)[1], b) for _ in range(RUNS)),
                      key=lambda m: m.e2e_s)
        m = runs[RUNS // 2]
        rows.append({"batch": b, "ttft_ms": 1e3 * m.ttft_s, "tpot_ms": 1e3 * m.tpot_s,
                     "throughput_tok_s": m.throughput_tok_s})
    return rows


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    gpt, tok = model.load_pretrained("target")
    steps = step_times(gpt, tok)
    result = {
        "made_by": "benchmarks/bench_inference.py", "machine": f"{platform.machine()} CPU, 1 thread",
        "torch": torch.__version__, "model": "target", "runs": RUNS,
        "ttft": ttft_table(gpt, tok), "steps": steps, "batch": batch_table(gpt, tok),
    }
    for r in result["ttft"]:
        print(f"prompt {r['prompt']:>4}: TTFT {r['ttft_ms']:6.2f} ms  TPOT {r['tpot_ms']:5.2f} ms")
    last = -1
    print(f"step at {steps['position'][last]} tokens: cached {steps['cached_step_ms'][last]:.2f} ms, "
          f"uncached {steps['uncached_step_ms'][last]:.2f} ms")
    for r in result["batch"]:
        print(f"batch {r['batch']:>3}: TPOT {r['tpot_ms']:6.2f} ms, {r['throughput_tok_s']:8.0f} tokens/s")
    OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
