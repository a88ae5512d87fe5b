"""Train the Medusa heads of chapter 15 on the frozen shipped target; ship them (~270 KB).

    .venv/bin/python benchmarks/train_medusa_heads.py [--steps 200]

Writes llminfra_lab/assets/speculative_medusa.pt: {d_model, n_heads, state_dict, recipe}.
The recipe holds the loss curve (first and last steps) and the seconds the run took.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from llminfra_lab import model
from llminfra_lab.speculative import train_medusa_heads

OUT = Path(__file__).resolve().parent.parent / "llminfra_lab" / "assets" / "speculative_medusa.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--heads", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    target, tok = model.load_pretrained("target")
    for p in target.parameters():
        p.requires_grad_(False)
    start = time.perf_counter()
    heads, losses = train_medusa_heads(target, tok, n_heads=args.heads, steps=args.steps, seed=0)
    seconds = time.perf_counter() - start
    recipe = {"steps": args.steps, "n_heads": args.heads, "batch_size": 16, "seq_len": 128, "lr": 3e-3,
              "seed": 0, "corpus": "data.stories(400_000, seed=1)", "first_losses": losses[:10],
              "last_losses": losses[-10:], "seconds": round(seconds, 1), "torch_version": str(torch.__version__)}
    state = {k: v.detach().clone() for k, v in heads.state_dict().items()}
    torch.save({"d_model": target.cfg.d_model, "n_heads": args.heads, "state_dict": state, "recipe": recipe}, OUT)
    print(f"wrote {OUT} after {seconds:.0f} s; loss {losses[0]:.3f} -> {sum(losses[-10:]) / 10:.3f}")


if __name__ == "__main__":
    main()
