"""Extend the shipped tiny GPT past its 128-token training length with each RoPE method.

Writes llminfra_lab/assets/longctx_results.json, which chapter 16 and its lab read:
perplexity on held-out stories at 128..1024 tokens for every method without training,
the same after a short fine-tune at 512 tokens for the methods that call for one
(position interpolation and YaRN, factor 4), the needle probe, and StreamingLLM
window-only against sinks-plus-window. About 5-10 minutes on 2 CPU cores.

    python benchmarks/longctx_extend.py [--steps 60]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from llminfra_lab.longctx import (
    ROPE_METHODS,
    extend_model,
    heldout_ids,
    needle_accuracy,
    perplexity_vs_length,
    streaming_perplexity,
    window_perplexity,
)
from llminfra_lab.model import load_pretrained
from llminfra_lab.training import PRESETS, build_corpus
from llminfra_lab.training.loop import TrainConfig, train

OUT = Path(__file__).resolve().parents[1] / "llminfra_lab" / "assets" / "longctx_results.json"
LENGTHS = [128, 256, 512, 1024]
DEPTHS = [0.1, 0.5, 0.9]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    start = time.time()
    model, tok = load_pretrained("target")
    ids = heldout_ids(tok, 8000)
    results = {"lengths": LENGTHS, "original_len": 128, "zero_shot": perplexity_vs_length(model, ids, LENGTHS),
               "fine_tuned": {}, "fine_tune": {"seq_len": 512, "steps": args.steps, "batch_size": 4,
                                              "max_lr": 3e-4, "factor": 4}}
    train_ids = build_corpus(PRESETS["target"])["train_ids"]
    tuned = {}
    for method in ("pi", "yarn"):
        m = extend_model(model, method, 512).train()
        cfg = TrainConfig(steps=args.steps, batch_size=4, seq_len=512, max_lr=3e-4, min_lr=3e-5,
                          warmup_steps=5, seed=0)
        train(m, train_ids, cfg)
        m.eval()
        tuned[method] = m
        results["fine_tuned"][method] = []
        for n in LENGTHS:   # keep the tuned weights, set the tables for each length (factor 4 up to 512)
            ext = extend_model(m, method, n, original_len=128, factor=max(4.0, n / 128))
            results["fine_tuned"][method].append(window_perplexity(ext, ids, n))
    results["needle"] = {"depths": DEPTHS, "lengths": [128, 256, 512],
                         "zero_shot": {m: [sum(needle_accuracy(model, ids, n, DEPTHS, m, trials=8)) / len(DEPTHS)
                                           for n in (128, 256, 512)] for m in ("none", "pi", "yarn")}}
    long_ids = ids[:2049]
    results["streaming"] = {"tokens": 2048, "cache": 64,
                            "window_only": streaming_perplexity(model, long_ids, 0, 64),
                            "sinks_plus_window": streaming_perplexity(model, long_ids, 4, 60),
                            "window_only_small": streaming_perplexity(model, long_ids, 0, 16),
                            "sinks_plus_window_small": streaming_perplexity(model, long_ids, 4, 12)}
    results["methods"] = list(ROPE_METHODS)
    results["seconds"] = round(time.time() - start, 1)
    OUT.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
