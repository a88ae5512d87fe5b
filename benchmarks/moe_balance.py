"""Train the small MoE GPT of chapter 8 under each load-balancing method; ship the history.

    .venv/bin/python benchmarks/moe_balance.py [--steps 300] [--out llminfra_lab/assets/moe_balance.json]

Runs llminfra_lab.moe.train_balance for "none" (no balancing), "aux" (Switch loss) and
"bias" (DeepSeek-V3's auxiliary-loss-free update) with the same seed, data and model, and
writes their per-step loss, MaxVio and expert loads. The lab and the chapter read the file;
a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from llminfra_lab import moe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "llminfra_lab" / "assets"
                                            / "moe_balance.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs, seconds = {}, {}
    for method in moe.METHODS:
        start = time.perf_counter()
        runs[method] = moe.train_balance(method, steps=args.steps, seed=args.seed)
        seconds[method] = round(time.perf_counter() - start, 1)
        print(f"{method:5s} final loss {runs[method]['loss'][-1]:.3f}  final MaxVio {runs[method]['maxvio'][-1]:.3f}"
              f"  ({seconds[method]} s)")
    result = {"script": "benchmarks/moe_balance.py", "steps": args.steps, "seed": args.seed,
              "model": "tiny_config('small') with 8 experts, top-2, d_expert 32, in each of its 2 layers",
              "torch": torch.__version__, "machine": platform.machine(), "seconds": seconds, "runs": runs}
    Path(args.out).write_text(json.dumps(result, separators=(",", ":")), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
