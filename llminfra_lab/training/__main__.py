"""python -m llminfra_lab.training --preset target  (rebuilds a shipped checkpoint on one CPU thread).

The rebuilt file equals the shipped one bit for bit only on the same machine type with the
same torch version and thread count; elsewhere the losses agree to about three digits.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from llminfra_lab.training.checkpoints import CHECKPOINT_DIR, PRESETS, train_preset


def main(argv=None) -> int:
    """python -m llminfra_lab.training --preset target  (rebuilds the shipped checkpoint)."""
    parser = argparse.ArgumentParser(description="Train a shipped tiny-GPT checkpoint from scratch, on CPU.")
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--out", default=None, help="output .pt path (default: the shipped checkpoint's path)")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's steps (quick checks)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out) if args.out else CHECKPOINT_DIR / f"{args.preset}.pt"
    start = time.perf_counter()
    _, _, _, results = train_preset(args.preset, out, steps=args.steps)
    for key, value in results.items():
        print(f"{key:>26}: {value}")
    print(f"{'wall_seconds':>26}: {time.perf_counter() - start:.1f}")
    print(f"{'saved':>26}: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
