#!/usr/bin/env python3
"""GPU check: the distributed experiments on NCCL, chapter 3's kernels natively, and their benchmark.

    .venv/bin/python tools/gpu_check.py [--out llminfra_lab/assets/gpu_check.json] [--timeout-s 300]

On a machine with one or more NVIDIA GPUs it runs, one after the other:

1. the torchrun entry points of chapters 4, 6 and 7 on NCCL, one process per GPU
   (`torchrun --standalone --nproc-per-node G -m llminfra_lab.<module> <experiment> --json`):
   the ring all-reduce against NCCL's with a bus-bandwidth sweep up to 256 MiB (needs G >= 2),
   the tensor-parallel block step (G in 1, 2), the data-parallel step, ZeRO 0-3 against FSDP2
   (needs G >= 2);
2. chapter 3's kernel tests natively (`pytest tests/test_kernels.py`, no Triton interpreter);
3. `benchmarks/bench_kernels.py` (Triton kernels' throughput as a ratio to PyTorch's).

It writes what it saw to one JSON file: GPU names, driver, torch, CUDA, NCCL and Triton
versions, each experiment's rank-0 report (or its error), the kernel tests' pass/fail
counts and the benchmark's ratios. The chapters (4, 6 and 7, section "Running at scale")
quote that file, `llminfra_lab/assets/gpu_check.json`. Without a GPU it says so and exits 2.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "llminfra_lab" / "assets" / "gpu_check.json"

# (module, experiment, extra arguments, smallest and largest number of GPUs it fits)
EXPERIMENTS = [
    ("llminfra_lab.collectives", "ring", ["--max-bytes", str(256 << 20), "--repeats", "5"], 2, None),
    ("llminfra_lab.parallel", "tp", [], 1, 2),
    ("llminfra_lab.parallel", "dp", [], 1, None),
    ("llminfra_lab.zero", "compare", [], 2, None),
]


def run(cmd: list[str], timeout_s: float, env: dict | None = None) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, seconds) of `cmd` run from the repository root."""
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, env=env)
        return p.returncode, p.stdout, p.stderr, time.monotonic() - start
    except subprocess.TimeoutExpired as err:
        return 124, err.stdout or "", (err.stderr or "") + f"\ntimed out after {timeout_s} s", timeout_s


def environment() -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": [], "nccl": None, "triton": None}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["nccl"] = ".".join(str(v) for v in torch.cuda.nccl.version())
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        pass
    if shutil.which("nvidia-smi"):
        code, out, _, _ = run(["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"], 30)
        info["nvidia_smi"] = out.strip().splitlines() if code == 0 else None
    return info


def experiments(n_gpus: int, timeout_s: float) -> list[dict]:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    out = []
    for module, name, extra, lo, hi in EXPERIMENTS:
        nproc = n_gpus if hi is None else min(n_gpus, hi)
        entry = {"module": module, "experiment": name, "nproc_per_node": nproc}
        if nproc < lo:
            entry["skipped"] = f"needs at least {lo} GPUs, this machine has {n_gpus}"
        else:
            cmd = torchrun + ["--nproc-per-node", str(nproc), "-m", module, name, "--json"] + extra
            code, stdout, stderr, seconds = run(cmd, timeout_s)
            entry.update(command=" ".join(cmd[1:]), exit_code=code, seconds=round(seconds, 1))
            lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
            if code == 0 and lines:
                entry["report"] = json.loads(lines[-1])
            else:
                entry["error_tail"] = stderr[-2000:]
        out.append(entry)
    return out


def kernel_tests(timeout_s: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}   # native, not interpreted
    code, stdout, stderr, seconds = run([sys.executable, "-m", "pytest", "-q", "tests/test_kernels.py"], timeout_s, env)
    summary = (stdout.strip().splitlines() or [""])[-1]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    return {"exit_code": code, "summary": summary, "counts": counts, "seconds": round(seconds, 1),
            "tail": "" if code == 0 else (stdout + stderr)[-2000:]}


def kernel_bench(timeout_s: float) -> dict:
    code, stdout, stderr, seconds = run([sys.executable, "benchmarks/bench_kernels.py"], timeout_s)
    rows = []
    for line in stdout.splitlines():   # "<kernel name>   <triton ms>  <torch ms>  <ratio>"
        m = re.match(r"^(.*\S)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", line)
        if m:
            rows.append({"kernel": m[1], "triton_ms": float(m[2]), "torch_ms": float(m[3]),
                         "throughput_ratio": float(m[4])})
    return {"exit_code": code, "rows": rows, "stdout": stdout[-4000:], "seconds": round(seconds, 1),
            "stderr_tail": "" if code == 0 else stderr[-2000:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write (default %(default)s)")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="limit per step (default %(default)s)")
    args = parser.parse_args(argv)
    env = environment()
    if not env["gpus"]:
        print("gpu_check: no CUDA GPU visible to torch; this check needs one (nothing written)", file=sys.stderr)
        return 2
    result = {"date_utc": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()), "environment": env,
              "experiments": experiments(len(env["gpus"]), args.timeout_s),
              "kernel_tests": kernel_tests(args.timeout_s), "kernel_bench": kernel_bench(args.timeout_s)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    failed = [e["experiment"] for e in result["experiments"] if e.get("exit_code", 0) != 0]
    ok = not failed and result["kernel_tests"]["exit_code"] == 0 and result["kernel_bench"]["exit_code"] == 0
    print(f"gpu_check: {', '.join(env['gpus'])}; wrote {args.out}; "
          + ("all steps passed" if ok else f"failed: experiments {failed or 'none'}, kernel tests exit "
             f"{result['kernel_tests']['exit_code']}, bench exit {result['kernel_bench']['exit_code']}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
