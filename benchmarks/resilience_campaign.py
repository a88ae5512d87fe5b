"""Fault-injection campaign of chapter 10: SIGKILL the trainer at random moments, resume, check.

Writes llminfra_lab/assets/resilience_campaign.json, which the chapter and lab 10 read.
Run:  .venv/bin/python benchmarks/resilience_campaign.py [--kills 30]   (a few minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from llminfra_lab.resilience import TrainerConfig, fault_injection_campaign

OUT = Path(__file__).resolve().parents[1] / "llminfra_lab" / "assets" / "resilience_campaign.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = TrainerConfig(steps=120, interval=10, pause_before_rename_s=0.15)
    start = time.time()
    with tempfile.TemporaryDirectory() as work:
        result = fault_injection_campaign(work, cfg, kills=args.kills, seed=args.seed, corrupt_prob=0.2)
    result["config"] = {k: getattr(cfg, k) for k in ("steps", "interval", "pause_before_rename_s")}
    result["corrupt_prob"] = 0.2
    result["seed"] = args.seed
    result["wall_seconds"] = round(time.time() - start, 1)
    result["machine"] = f"{platform.machine()}, torch {torch.__version__}"
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "records"}, indent=1))


if __name__ == "__main__":
    main()
