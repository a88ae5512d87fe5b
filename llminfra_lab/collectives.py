"""Collective communication: running code on N local processes with torch.distributed.

`launch` starts a process group of `world_size` local processes (gloo on CPU; the
same code runs with NCCL across GPUs) and returns what each rank's function returned.
The parallelism and training-framework chapters reuse it.
"""
from __future__ import annotations

import os
import socket
import traceback
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["launch"]


def launch(fn: Callable[..., Any], world_size: int, *args: Any, backend: str = "gloo",
           timeout_s: float = 120.0, threads_per_rank: int = 1, **kwargs: Any) -> list[Any]:
    """Run ``fn(rank, world_size, *args, **kwargs)`` on `world_size` local processes.

    Each process joins one `torch.distributed` group (``backend`` "gloo" on CPU, "nccl"
    across GPUs) before `fn` runs, and leaves it afterwards. `fn` must be importable
    (defined at module level, not in a notebook cell), because processes are spawned.
    Returns the ranks' return values in rank order; raises RuntimeError with the failing
    rank's traceback if any rank fails, or if the group does not finish in `timeout_s`.
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}")
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_run_rank, args=(fn, rank, world_size, port, backend, timeout_s,
                                            threads_per_rank, args, kwargs, results))
        for rank in range(world_size)
    ]
    for p in procs:
        p.start()
    outcome: dict[int, Any] = {}
    try:
        for _ in range(world_size):
            rank, ok, value = results.get(timeout=timeout_s)
            if not ok:
                raise RuntimeError(f"rank {rank} of {world_size} failed:\n{value}")
            outcome[rank] = value
    except Exception as err:  # a failure, or queue.Empty on timeout
        for p in procs:
            p.kill()
        if isinstance(err, RuntimeError):
            raise
        raise RuntimeError(f"the {world_size}-process group did not finish within {timeout_s} s") from err
    finally:
        for p in procs:
            p.join(timeout=10)
    return [outcome[r] for r in range(world_size)]


def _run_rank(fn, rank, world_size, port, backend, timeout_s, threads, args, kwargs, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    try:
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s))
        value = fn(rank, world_size, *args, **kwargs)
        results.put((rank, True, value))
    except BaseException:  # report any failure to the parent instead of hanging it
        results.put((rank, False, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
