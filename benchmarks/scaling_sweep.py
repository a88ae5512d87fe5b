"""Run the sweep of tiny training runs that chapter 5 fits a scaling law to, and store it.

    python benchmarks/scaling_sweep.py            # writes llminfra_lab/assets/scaling_sweep.json

Every width in training.SWEEP_WIDTHS is trained for every budget in training.SWEEP_STEPS
(a fresh model and a cosine schedule ending at the budget each time) on the checkpoints'
arithmetic-and-stories mixture, and its held-out loss is recorded. One thread, deterministic on
one machine and software (another CPU or torch changes the losses in the third or fourth digit);
it takes a few minutes on a laptop core, which is why the lab reads the stored results instead.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from llminfra_lab import training as T


def main(out: Path) -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = T.sweep_data()
    runs = []
    for d_model in T.SWEEP_WIDTHS:
        for steps in T.SWEEP_STEPS:
            rec = T.sweep_run(d_model, steps, data=data)
            runs.append(rec)
            print(f"d_model={d_model:3d} steps={steps:4d} N={rec['n_params']:7d} D={rec['n_tokens']:7d} "
                  f"val_loss={rec['val_loss']:.4f}", flush=True)
    law = T.fit_chinchilla([r["n_params"] for r in runs], [r["n_tokens"] for r in runs],
                           [r["val_loss"] for r in runs])
    sweep = {
        "settings": {"widths": list(T.SWEEP_WIDTHS), "steps": list(T.SWEEP_STEPS), "n_layer": 2,
                     "batch_size": 8, "seq_len": 64, "max_lr": "0.288 / d_model (min_lr = max_lr / 10)",
                     "corpus": "build_corpus(PRESETS['draft']) (arithmetic + stories)",
                     "heldout": "500 held-out problems + held-out stories, shuffled", "tokenizer": "the checkpoints' BPE (512)",
                     "command": "python benchmarks/scaling_sweep.py", "torch_version": str(torch.__version__)},
        "fit": {"E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha, "beta": law.beta},
        "runs": runs,
    }
    out.write_text(json.dumps(sweep, indent=1) + "\n", encoding="utf-8")
    print(f"fit: {law}")
    print(f"wrote {out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    default = Path(__file__).resolve().parent.parent / "llminfra_lab" / "assets" / "scaling_sweep.json"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
