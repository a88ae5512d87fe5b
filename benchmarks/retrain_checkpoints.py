"""Retrain the shipped tiny-GPT checkpoints from scratch and compare them with the shipped files.

    python benchmarks/retrain_checkpoints.py            # both presets (about 15-40 CPU-minutes)
    python benchmarks/retrain_checkpoints.py draft      # one preset

For each preset it runs `training.train_preset` (one CPU thread, the recipe's seeds), saves
the result under a temporary directory, and prints, next to the shipped checkpoint's recipe:
held-out story loss, story perplexity, held-out arithmetic accuracy, and the largest absolute
difference between any retrained and shipped weight.

Bit for bit holds only on the same machine type and software: the same CPU kernels, torch
version and thread count as the run that made the files (their recipes record the torch
version). Another CPU, another torch, or another kernel choice (for example
ATEN_CPU_CAPABILITY=default) sums floating-point numbers in another order; the weights then
differ, and the losses agree to about three digits and the accuracy to about a percent.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from llminfra_lab import training as T
from llminfra_lab.model import load_pretrained


def compare(name: str, workdir: Path) -> None:
    shipped, _ = load_pretrained(name)
    start = time.perf_counter()
    model, _, _, results = T.train_preset(name, workdir / f"{name}.pt")
    seconds = time.perf_counter() - start
    ref = shipped.recipe["results"]
    diff = max(float((a - b).abs().max()) for a, b in zip(model.state_dict().values(), shipped.state_dict().values()))
    print(f"== {name}: retrained in {seconds:.0f} s (torch {torch.__version__}; shipped with "
          f"torch {shipped.recipe.get('torch_version')})")
    for key in ("final_val_loss", "story_perplexity", "heldout_accuracy", "final_train_loss"):
        print(f"   {key:>18}: retrained {results[key]:.6f}   shipped {ref[key]:.6f}   "
              f"ratio {results[key] / ref[key] if ref[key] else float('nan'):.4f}")
    print(f"   {'max |dw|':>18}: {diff:.3e}   ({'bit-for-bit identical' if diff == 0 else 'differs'})")


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            compare(name, Path(tmp))


if __name__ == "__main__":
    main(sys.argv[1:] or ["draft", "target"])
