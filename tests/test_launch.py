"""The local launcher (llminfra_lab.launch): results, failures, port races and bad input."""
from __future__ import annotations

import math
import socket

import pytest
import torch

from llminfra_lab import launch as L


@pytest.mark.distributed
def test_launch_propagates_a_failing_rank_with_its_traceback():
    """Rank 0 computes log(0) and raises; launch re-raises it as RuntimeError naming the
    rank and carrying the child's traceback, and does not wait for the timeout."""
    with pytest.raises(RuntimeError, match="rank 0 of 2 failed") as info:
        L.launch(math.log, 2, timeout_s=60)   # fn(rank, world_size) = log(rank, base=2)
    text = str(info.value)
    assert "rank 0 of 2 failed" in text
    assert "Traceback" in text and "ValueError" in text


@pytest.mark.distributed
def test_launch_returns_tensors_that_outlive_the_ranks():
    """A rank's tensor comes back intact after its process has exited (not as a handle to
    shared memory that died with it)."""
    out = L.launch(torch.arange, 2, timeout_s=60)   # fn(rank, world_size) = arange(rank, 2)
    assert [t.tolist() for t in out] == [[0, 1], [1]]


@pytest.mark.distributed
def test_launch_retries_when_its_port_is_taken(monkeypatch):
    """Another program can grab the free port between free_port and rank 0's bind; launch
    retries that start-up race (EADDRINUSE) with a fresh port instead of failing."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    real = L.free_port
    ports = iter([busy.getsockname()[1]])
    monkeypatch.setattr(L, "free_port", lambda: next(ports, None) or real())
    try:
        assert L.launch(divmod, 2, timeout_s=60) == [(0, 0), (0, 1)]
    finally:
        busy.close()
    assert L._port_clash("DistNetworkError: ... name: EADDRINUSE, message: address already in use")
    assert not L._port_clash("ValueError: math domain error")


def test_launch_rejects_bad_input():
    with pytest.raises(ValueError, match="fn must be callable, got int"):
        L.launch(42, 2)
    with pytest.raises(ValueError, match="world_size must be an int >= 1"):
        L.launch(math.log, 0)
    with pytest.raises(ValueError, match="backend must be 'gloo' or 'nccl', got 'mpi'"):
        L.launch(math.log, 2, backend="mpi")
    for bad in (0, -1.0, math.nan, "60"):
        with pytest.raises(ValueError, match="timeout_s must be a finite number > 0"):
            L.launch(math.log, 2, timeout_s=bad)
    with pytest.raises(ValueError, match="threads_per_rank must be an int >= 1"):
        L.launch(math.log, 2, threads_per_rank=0)


# ---------------------------------------------------------------------------------------
# The torchrun side: init_from_env, main's one-line errors, run_in_process (no processes
# are started here; tests/test_torchrun.py starts real torchrun agents)
# ---------------------------------------------------------------------------------------

TOY = L.Experiment(worker=divmod, report=lambda results, world_size, **o: {"rows": [{"n": world_size}]},
                   options={"size": 4, "fast": True},
                   fits=lambda world_size, **o: None if world_size % 2 == 0 else f"needs an even world size, got {world_size}")


def test_init_from_env_says_to_use_torchrun_when_its_variables_are_missing(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(ValueError, match="RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set: start "
                                         "this with torchrun"):
        L.init_from_env()
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu' or 'cuda', got 'tpu'"):
        L.init_from_env("tpu")
    with pytest.raises(ValueError, match="timeout_s must be a finite number > 0"):
        L.init_from_env(timeout_s=0)


def test_init_from_env_refuses_cuda_without_a_gpu_and_extra_ranks_per_node(monkeypatch):
    """Devices that don't fit: --device cuda on a machine without GPUs, or more processes on
    a node than it has GPUs (NCCL needs one GPU per rank), fail before any group is joined."""
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device cuda was asked for, but torch sees no CUDA GPU"):
        L.init_from_env("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"local rank 3 has no GPU: this node has 2 GPU\(s\), so start at most "
                                         "--nproc-per-node 2"):
        L.init_from_env("auto")


def test_main_exits_2_with_one_line_when_the_world_size_does_not_fit(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert L.main("toy", {"toy": TOY}, ["toy", "--size", "8", "--no-fast"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["toy toy: error: needs an even world size, got 3"]


def test_main_exits_2_with_one_line_outside_torchrun(monkeypatch, capsys):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert L.main("toy", {"toy": TOY}, ["toy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("toy toy: error: RANK, WORLD_SIZE") and "torchrun" in err[0]


def test_main_rejects_unknown_experiments_and_options(capsys):
    """argparse's usage error (exit code 2) names the bad experiment or option."""
    with pytest.raises(SystemExit, match="^2$"):
        L.main("toy", {"toy": TOY}, ["nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="^2$"):
        L.main("toy", {"toy": TOY}, ["toy", "--colour", "red"])
    assert "unrecognized arguments: --colour red" in capsys.readouterr().err


def test_run_in_process_rejects_bad_input():
    with pytest.raises(ValueError, match="exp must be an Experiment, got builtin_function_or_method"):
        L.run_in_process(divmod, 2)
    with pytest.raises(ValueError, match=r"unknown options \['colour'\]; valid: \['fast', 'size'\]"):
        L.run_in_process(TOY, 2, colour="red")
    with pytest.raises(ValueError, match="needs an even world size, got 3"):
        L.run_in_process(TOY, 3)


def test_table_prints_scalars_nested_checks_and_rows():
    text = L._table({"experiment": "x", "check": {"ok": True, "skip": [1]},
                     "rows": [{"a": 1.23456, "b": "q"}, {"a": 2, "c": [1.0, 2.0]}]})
    assert text.splitlines() == ["experiment: x", "check.ok: True", "    a  b    c", "1.235  q     ", "    2     1 2"]
