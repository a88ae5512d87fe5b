"""The `llminfra-lab` command: its numbers are the package's, --json parses, bad input exits 2."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llminfra_lab import catalog, cli, hardware, memory
from llminfra_lab.economics import estimate_serving, estimate_training
from llminfra_lab.inference import kv_cache_bytes
from llminfra_lab.parallel import layout_memory_bytes, plan_layouts
from llminfra_lab.roofline import gemm_cost, is_memory_bound, roofline_time_s

COMMANDS = ["kv-cache", "train-memory", "roofline", "train-cost", "serve-cost", "plan"]


def run_json(capsys, *argv):
    assert cli.main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_kv_cache_is_the_package_number(capsys):
    got = run_json(capsys, "kv-cache", "llama-3-70b", "--context", "32768", "--batch", "8", "--dtype", "fp8")
    spec = catalog.model_spec("llama-3-70b")
    assert got["bytes_per_token"] == memory.kv_cache_bytes_per_token(spec, "fp8")
    assert got["bytes_per_request"] == kv_cache_bytes(spec, 32768, "fp8")
    assert got["bytes_total"] == 8 * kv_cache_bytes(spec, 32768, "fp8")


def test_train_memory_is_the_package_number(capsys):
    got = run_json(capsys, "train-memory", "llama-3-70b", "--zero-stage", "3", "--tp", "8", "--pp", "2", "--dp", "4",
                   "--seq-len", "8192", "--microbatches", "16", "--recompute", "full", "--gpu", "h100")
    spec = catalog.model_spec("llama-3-70b")
    want = layout_memory_bytes(spec.total_params(), spec.n_layers, spec.d_model, tp=8, pp=2, dp=4, seq_len=8192,
                               micro_batch=1, microbatches=16, n_heads=spec.n_heads, zero_stage=3, recompute="full")
    assert got["bytes"] == {**want, "total": sum(want.values())}
    assert got["fits"] == (sum(want.values()) <= hardware.accelerator("H100-SXM").hbm_gb * 1e9)


def test_roofline_is_the_package_verdict(capsys):
    for m, verdict in ((1, "memory-bound"), (8192, "compute-bound")):
        got = run_json(capsys, "roofline", str(m), "8192", "4096", "--gpu", "A100")
        kernel = gemm_cost(m, 4096, 8192, "bf16")
        assert (got["flops"], got["bytes"], got["intensity"]) == (kernel.flops, kernel.bytes, kernel.intensity)
        assert got["time_s"] == roofline_time_s(kernel, "A100-SXM-80GB")
        assert got["verdict"] == verdict == ("memory-bound" if is_memory_bound(kernel, "A100-SXM-80GB") else "compute-bound")
        assert got["ridge_point"] == hardware.accelerator("A100").ridge_point("bf16")


def test_costs_are_the_package_estimates(capsys):
    got = run_json(capsys, "train-cost", "deepseek-v3", "--tokens", "14.8e12", "--gpu", "H800-SXM", "--mfu", "0.3",
                   "--n-gpus", "2048")
    est = estimate_training("deepseek-v3", 14.8e12, "H800-SXM", mfu=0.3)
    assert {k: got[k] for k in dataclasses.asdict(est)} == dataclasses.asdict(est)
    assert got["days"] == est.days_on(2048)
    got = run_json(capsys, "serve-cost", "llama-3-70b", "--gpu", "H200", "--n-gpus", "2", "--batch", "32")
    assert got == dataclasses.asdict(estimate_serving("llama-3-70b", "H200", n_gpus=2, batch_size=32))


def test_plan_is_the_package_planner(capsys):
    got = run_json(capsys, "plan", "llama-3-70b", "--gpu", "H100", "--n-gpus", "64", "--top", "3")
    layouts = plan_layouts("llama-3-70b", "H100", 64)
    assert got["n_layouts"] == len(layouts)
    assert [(r["tp"], r["pp"], r["dp"], r["step_time_s"], r["memory_bytes"]) for r in got["layouts"]] == \
        [(L.tp, L.pp, L.dp, L.step_time_s, L.memory_bytes) for L in layouts[:3]]


@pytest.mark.parametrize("argv", [
    ["kv-cache", "llama-3-8b"], ["train-memory", "llama-3-8b"], ["roofline", "128", "128", "128"],
    ["train-cost", "llama-3-8b", "--tokens", "1e12"], ["serve-cost", "llama-3-8b"], ["plan", "llama-3-8b", "--n-gpus", "8"],
])
def test_human_output_and_json_parse(capsys, argv):
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert text.strip() and not text.lstrip().startswith("{")
    assert isinstance(run_json(capsys, *argv), dict)


@pytest.mark.parametrize("argv", [
    ["kv-cache", "no-such-model"], ["kv-cache", "llama-3-8b", "--context", "-1"], ["kv-cache", "llama-3-8b", "--batch", "0"],
    ["kv-cache", "llama-3-8b", "--dtype", "fp7"], ["roofline", "0", "8", "8"], ["roofline", "8", "8", "8", "--gpu", "nope"],
    ["roofline", "8", "8"], ["train-memory", "llama-3-8b", "--zero-stage", "4"], ["train-memory", "llama-3-8b", "--tp", "-2"],
    ["train-cost", "llama-3-8b", "--tokens", "1e12", "--mfu", "1.5"], ["train-cost", "llama-3-8b"],
    ["serve-cost", "deepseek-v3"], ["plan", "llama-3-8b", "--n-gpus", "0"], ["plan", "llama-3-8b", "--n-gpus", "x"],
    ["no-such-command"], [],
])
def test_bad_input_exits_2_with_one_line(capsys, argv):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llminfra-lab"), captured.err


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_works_and_lists_the_names(capsys, command):
    assert cli.main([command, "--help"] if command else ["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--json" in text or command is None
    if command in ("kv-cache", "train-memory", "train-cost", "serve-cost", "plan"):
        assert all(name in text for name in catalog.MODELS)
    if command in ("train-memory", "roofline", "train-cost", "serve-cost", "plan"):
        assert all(name in text for name in hardware.accelerator_names())


def test_installed_console_script():
    script = Path(sys.executable).parent / "llminfra-lab"
    if not script.exists():
        pytest.skip("console script not installed: run `pip install -e .` (make test does)")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(command in done.stdout for command in COMMANDS)
