"""Chapter 15's measurements: acceptance, tokens per target pass and wall-clock ratios on CPU.

    .venv/bin/python benchmarks/bench_speculative.py

Decodes 120 tokens after each of three story prompts and one arithmetic prompt with the
shipped target, (a) plainly with a KV cache, (b) speculatively with the shipped draft
(gamma = 2, 4, 6; greedy and temperature 1), (c) with prompt lookup, (d) with the shipped
Medusa heads (tokens per pass only: that code recomputes the sequence each pass, so its
seconds mean nothing). Wall-clock is the median of 3 runs, one thread. It prints the table
and writes llminfra_lab/assets/speculative_bench.json, which the chapter and lab read.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from llminfra_lab import model
from llminfra_lab.speculative import (
    expected_tokens_per_step,
    greedy_generate,
    load_medusa_heads,
    medusa_generate,
    prompt_lookup_generate,
    speculative_generate,
)

OUT = Path(__file__).resolve().parent.parent / "llminfra_lab" / "assets" / "speculative_bench.json"
PROMPTS = ["Once upon a time, there was a", "Sam met Zoe, a", "Mia liked to", "12+7="]
NEW_TOKENS = 120


def timed(fn, repeats: int = 3):
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main() -> None:
    torch.set_num_threads(1)
    target, tok = model.load_pretrained("target")
    draft, _ = model.load_pretrained("draft")
    heads, _ = load_medusa_heads()
    prompts = [torch.tensor([tok.encode(p)]) for p in PROMPTS]
    rows = {}
    base_s = sum(timed(lambda i=i: greedy_generate(target, i, NEW_TOKENS))[0] for i in prompts)
    draft_s = sum(timed(lambda i=i: greedy_generate(draft, i, NEW_TOKENS))[0] for i in prompts)
    rows["plain greedy (target)"] = {"seconds": base_s, "tokens_per_pass": 1.0, "ratio": 1.0}
    for temperature in (0.0, 1.0):
        for gamma in (2, 4, 6):
            total_s, stats = 0.0, []
            for k, idx in enumerate(prompts):
                def run(idx=idx, k=k, gamma=gamma, temperature=temperature):
                    gen = torch.Generator().manual_seed(k)
                    return speculative_generate(target, draft, idx, NEW_TOKENS, gamma=gamma,
                                                temperature=temperature, generator=gen)
                s, (_, st) = timed(run)
                total_s += s
                stats.append(st)
            betas = [b for st in stats for b in st.betas]
            alpha = sum(betas) / len(betas)
            tpp = sum(st.new_tokens for st in stats) / sum(st.target_passes for st in stats)
            rows[f"draft model, T={temperature:g}, gamma={gamma}"] = {
                "seconds": total_s, "alpha": alpha, "tokens_per_pass": tpp,
                "formula": expected_tokens_per_step(alpha, gamma), "ratio": base_s / total_s,
                "per_prompt_alpha": [st.alpha for st in stats]}
    total_s, stats = 0.0, []
    for idx in prompts:
        s, (_, st) = timed(lambda idx=idx: prompt_lookup_generate(target, idx, NEW_TOKENS))
        total_s, stats = total_s + s, stats + [st]
    rows["prompt lookup (n<=3, 8 drafts)"] = {
        "seconds": total_s, "ratio": base_s / total_s,
        "tokens_per_pass": sum(st.new_tokens for st in stats) / sum(st.target_passes for st in stats),
        "acceptance_rate": sum(st.accepted for st in stats) / max(sum(st.drafted for st in stats), 1)}
    stats = [medusa_generate(target, heads, idx, NEW_TOKENS)[1] for idx in prompts]
    rows["Medusa heads (4 heads, 12-node tree)"] = {
        "tokens_per_pass": sum(st.new_tokens for st in stats) / sum(st.target_passes for st in stats)}
    result = {"new_tokens_per_prompt": NEW_TOKENS, "prompts": PROMPTS, "threads": 1,
              "draft_over_target_seconds": draft_s / base_s, "torch_version": str(torch.__version__), "rows": rows}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"c (draft/target time per token) = {draft_s / base_s:.2f}")
    for name, row in rows.items():
        extra = f" alpha {row['alpha']:.3f} formula {row['formula']:.2f}" if "alpha" in row else ""
        ratio = f" speed-up x{row['ratio']:.2f}" if "ratio" in row else ""
        print(f"{name:40s} tokens/pass {row['tokens_per_pass']:.2f}{extra}{ratio}")


if __name__ == "__main__":
    main()
