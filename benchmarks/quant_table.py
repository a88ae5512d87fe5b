"""Quantize the shipped tiny GPT with every method of chapter 14 and write the table it shows.

    .venv/bin/python benchmarks/quant_table.py      # a few minutes on one CPU core

Writes llminfra_lab/assets/quant_table.json: held-out story perplexity (training.story_perplexity,
64 windows of 128 tokens, as chapter 5 computes it) and weight / KV memory of each method at
8, 4 and 3 bits, per output channel and with groups of 32. Perplexities differ across CPUs in
late digits; the chapter and lab read this file.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from llminfra_lab.model import load_pretrained
from llminfra_lab.quant import calibration_ids, heldout_ids, kv_bytes_per_token, quantize_model, weight_bytes
from llminfra_lab.training import story_perplexity

OUT = Path(__file__).resolve().parents[1] / "llminfra_lab" / "assets" / "quant_table.json"


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, tok = load_pretrained("target")
    ids, calib = heldout_ids(tok), calibration_ids(tok)
    fp_bytes = weight_bytes(model, "kv_int8")["total"]          # every weight in BF16
    rows = [{"method": "bf16 reference (fp32 math)", "key": "fp", "bits": 16, "group": None,
             "ppl": story_perplexity(model, ids), "weight_bytes": fp_bytes,
             "kv_bytes_per_token": kv_bytes_per_token(model, "bf16")}]
    runs = [(m, b, g) for b in (8, 4, 3) for g in (None, 32) for m in ("rtn", "gptq", "awq")]
    runs += [(m, 4, None) for m in ("nf4", "mxfp4")] + [("bitnet", 2, None)]
    runs += [(m, 8, None) for m in ("w8a8", "smoothquant", "llm.int8", "kv_int8", "kv_fp8")]
    for method, bits, group in runs:
        t0 = time.time()
        q = quantize_model(model, method, bits, group, calib)
        kv = {"kv_int8": "int8", "kv_fp8": "fp8"}.get(method, "bf16")
        rows.append({"method": method, "key": f"{method}-{bits}-{group}", "bits": bits, "group": group,
                     "ppl": story_perplexity(q, ids), "weight_bytes": weight_bytes(model, method, bits, group)["total"],
                     "kv_bytes_per_token": kv_bytes_per_token(model, kv), "seconds": round(time.time() - t0, 1)})
        print(f"{method:12s} {bits} {group!s:5s} ppl {rows[-1]['ppl']:.4f}", flush=True)
    OUT.write_text(json.dumps({"model": "target", "eval": "64 windows x 128 tokens of stories(40000, seed=2)",
                               "calibration": "32 x 128 tokens of stories(seed=11)", "torch": torch.__version__,
                               "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
