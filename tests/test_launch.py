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
