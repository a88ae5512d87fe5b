"""Run a function on N local processes that form one `torch.distributed` group.

The labs and tests of every distributed chapter (collectives, parallelism, ZeRO, MoE,
checkpointing, long context) start their process groups here, so there is one launcher:
`launch(fn, world_size, *args)` spawns `world_size` processes, each joins a group on
127.0.0.1 (gloo on CPU; NCCL across GPUs), runs ``fn(rank, world_size, *args)`` and sends
its return value back. `free_port` finds a free TCP port on loopback.
"""
from __future__ import annotations

import io
import os
import queue
import socket
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from llminfra_lab.checks import positive_int, positive_number

__all__ = ["launch", "free_port"]


def launch(fn: Callable[..., Any], world_size: int, *args: Any, backend: str = "gloo",
           timeout_s: float = 120.0, threads_per_rank: int = 1, **kwargs: Any) -> list[Any]:
    """Run ``fn(rank, world_size, *args, **kwargs)`` on `world_size` local processes.

    Each process joins one `torch.distributed` group (``backend`` "gloo" on CPU, "nccl"
    across GPUs) before `fn` runs, and leaves it afterwards. `fn` must be importable
    (defined at module level, not in a notebook cell), because processes are spawned.
    Returns the ranks' return values in rank order (tensors included: they are copied
    out through `torch.save`, not left in shared memory that dies with the process);
    raises RuntimeError with the failing rank's traceback if any rank fails, or if the
    group does not finish in `timeout_s`.
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}")
    positive_int("world_size", world_size)
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    positive_number("timeout_s", timeout_s)
    positive_int("threads_per_rank", threads_per_rank)
    for attempt in range(3):
        try:
            return _launch_once(fn, world_size, args, kwargs, backend, timeout_s, threads_per_rank)
        except RuntimeError as err:
            # The free port found by _free_port can be taken by another program before
            # rank 0 binds it; only that start-up race is retried, never a failure of fn.
            if attempt == 2 or not _port_clash(str(err)):
                raise
    raise AssertionError("unreachable")


def _port_clash(message: str) -> bool:
    return "EADDRINUSE" in message or "Address already in use" in message


def _launch_once(fn, world_size, args, kwargs, backend, timeout_s, threads_per_rank) -> list[Any]:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_run_rank, args=(fn, rank, world_size, port, backend, timeout_s,
                                            threads_per_rank, args, kwargs, results))
        for rank in range(world_size)
    ]
    for p in procs:
        p.start()
    outcome: dict[int, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(outcome) < world_size:
            try:
                rank, ok, value = results.get(timeout=0.2)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {world_size}-process group did not finish within {timeout_s} s") from None
                _raise_if_died(procs, outcome, results, world_size)
                continue
            if not ok:
                raise RuntimeError(f"rank {rank} of {world_size} failed:\n{value}")
            outcome[rank] = _unpack(value)
    except BaseException:  # a failure, a timeout or Ctrl-C: take the whole group down
        for p in procs:
            p.kill()
        raise
    finally:
        for p in procs:
            p.join(timeout=10)
    return [outcome[r] for r in range(world_size)]


def _raise_if_died(procs, outcome: dict, results, world_size: int) -> None:
    """Fail fast when a rank's process exited without reporting (e.g. it could not start)."""
    for rank, p in enumerate(procs):
        if rank not in outcome and p.exitcode is not None and p.exitcode != 0:
            try:  # its report may still be in flight
                r, ok, value = results.get(timeout=1.0)
            except queue.Empty:
                raise RuntimeError(f"rank {rank} of {world_size} exited with code {p.exitcode} "
                                   "before reporting (is fn importable, and is the caller's "
                                   "script guarded by `if __name__ == '__main__':`?)") from None
            if not ok:
                raise RuntimeError(f"rank {r} of {world_size} failed:\n{value}")
            outcome[r] = _unpack(value)


def _run_rank(fn, rank, world_size, port, backend, timeout_s, threads, args, kwargs, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    try:
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s))
        value = fn(rank, world_size, *args, **kwargs)
        results.put((rank, True, _pack(value)))
    except BaseException:  # report any failure to the parent instead of hanging it
        results.put((rank, False, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _pack(value: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _unpack(data: bytes) -> Any:
    # The bytes come from our own child process, so any picklable result is accepted.
    return torch.load(io.BytesIO(data), weights_only=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
