"""Run a function on N local processes that form one `torch.distributed` group.

The labs and tests of every distributed chapter (collectives, parallelism, ZeRO, MoE,
checkpointing, long context) start their process groups here, so there is one launcher:
`launch(fn, world_size, *args)` spawns `world_size` processes, each joins a group on
127.0.0.1 (gloo on CPU; NCCL across GPUs), runs ``fn(rank, world_size, *args)`` and sends
its return value back. `free_port` finds a free TCP port on loopback.

The same experiments also run under `torchrun`, on one machine or many. A chapter's
package describes each experiment once, as an `Experiment`: a `worker` that runs on every
rank and a `report` that turns the ranks' results into rank 0's summary. Two ways start it:

    run_in_process(exp, world_size, **options)       # the labs: `launch` on local gloo processes
    torchrun --nproc-per-node N -m llminfra_lab.<module> <experiment> [--json]   # `main`

`main` joins the group torchrun describes in the environment (`init_from_env`: env://,
NCCL and cuda:LOCAL_RANK when GPUs are present, gloo on CPU otherwise) and calls the very
same worker and report.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import queue
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from llminfra_lab.checks import positive_int, positive_number

__all__ = ["launch", "free_port", "Experiment", "run_in_process", "DistEnv", "init_from_env", "main",
           "DEFAULT_TIMEOUT_S"]

#: Seconds a collective may wait for a peer before it fails (torchrun entry points;
#: `--timeout-s` or the environment variable LLMINFRA_DIST_TIMEOUT_S override it).
DEFAULT_TIMEOUT_S = 300.0


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


# ---------------------------------------------------------------------------------------
# Experiments: one worker, two ways to start it (in process, or under torchrun)
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Experiment:
    """One distributed experiment, as a chapter's package describes it.

    `worker(rank, world_size, *, device, **options)` runs on every rank and returns a
    picklable result; `report(results, world_size, **options)` turns the ranks' results
    (in rank order) into rank 0's JSON-ready summary, whose "rows" (a list of dicts) the
    command line prints as a table. `options` maps each option to its default (its type
    is the default's; a bool becomes --name / --no-name). `fits(world_size, **options)`
    returns None, or one sentence saying why this world size cannot run the experiment.
    """
    worker: Callable[..., Any]
    report: Callable[..., dict]
    options: dict[str, Any] = field(default_factory=dict)
    fits: Callable[..., str | None] = lambda world_size, **options: None
    help: str = ""


def run_in_process(exp: Experiment, world_size: int, timeout_s: float = 120.0, **options: Any) -> dict:
    """Run `exp` on `world_size` local gloo processes (`launch`) and return its report."""
    if not isinstance(exp, Experiment):
        raise ValueError(f"exp must be an Experiment, got {type(exp).__name__}")
    positive_int("world_size", world_size)
    options = _with_defaults(exp, options)
    why = exp.fits(world_size, **options)
    if why:
        raise ValueError(why)
    results = launch(exp.worker, world_size, timeout_s=timeout_s, device="cpu", **options)
    return exp.report(results, world_size, **options)


def _with_defaults(exp: Experiment, options: dict) -> dict:
    unknown = sorted(set(options) - set(exp.options))
    if unknown:
        raise ValueError(f"unknown options {unknown}; valid: {sorted(exp.options)}")
    return {**exp.options, **options}


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a torchrun job: global rank and size, rank on its node,
    and the backend and device it uses."""
    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: str


def init_from_env(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> DistEnv:
    """Join the process group that torchrun describes in the environment (init_method env://).

    torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for each
    process it starts. `device` "auto" picks NCCL and cuda:LOCAL_RANK when this machine
    has GPUs, gloo and the CPU otherwise; "cuda" and "cpu" force one. Collectives that
    wait for a peer longer than `timeout_s` fail instead of hanging. Raises ValueError,
    with one sentence, when the environment or the devices don't fit.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    positive_number("timeout_s", timeout_s)
    missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"{', '.join(missing)} not set: start this with torchrun "
                         "(torchrun --nproc-per-node N -m llminfra_lab.<module> <experiment>)")
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    use_cuda = device == "cuda" or (device == "auto" and gpus > 0)
    if use_cuda and gpus == 0:
        raise ValueError("--device cuda was asked for, but torch sees no CUDA GPU on this machine")
    if use_cuda and local >= gpus:
        raise ValueError(f"local rank {local} has no GPU: this node has {gpus} GPU(s), so start at most "
                         f"--nproc-per-node {gpus}")
    backend, dev = ("nccl", f"cuda:{local}") if use_cuda else ("gloo", "cpu")
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout_s))
    return DistEnv(rank, world, local, backend, dev)


def main(prog: str, experiments: dict[str, Experiment], argv: Sequence[str] | None = None) -> int:
    """The command line of `python -m llminfra_lab.<module>`, run by every rank under torchrun.

    Parses `<experiment> [options] [--json] [--device D] [--timeout-s S]`, joins the group
    (`init_from_env`), runs the experiment's worker, gathers the results on rank 0 and
    prints its report there: a table, or JSON with --json. Returns the exit code: 0 when
    done; 2, after one line on stderr, when the world size or the devices don't fit; 1
    when a rank fails (for instance because a peer died or timed out).
    """
    args = _parser(prog, experiments).parse_args(argv)
    exp = experiments[args.experiment]
    options = {name: getattr(args, name) for name in exp.options}
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "0"))
    say = lambda line: print(f"{prog} {args.experiment}: {line}", file=sys.stderr, flush=True)  # noqa: E731
    why = exp.fits(world, **options) if world else None
    try:
        if why:
            raise ValueError(why)
        env = init_from_env(args.device, args.timeout_s)
    except ValueError as err:
        if rank == 0:
            say(f"error: {err}")
        return 2
    say(f"rank {env.rank}/{env.world_size} started on {env.device} ({env.backend}, timeout {args.timeout_s:g} s)")
    try:
        result = _to_cpu(exp.worker(env.rank, env.world_size, device=env.device, **options))
        gathered = [None] * env.world_size if env.rank == 0 else None
        dist.gather_object(result, gathered, dst=0)
        if env.rank == 0:
            summary = {"experiment": args.experiment, "world_size": env.world_size, "backend": env.backend,
                       "device": env.device.split(":")[0], "torch": torch.__version__,
                       **exp.report(gathered, env.world_size, **options)}
            print(json.dumps(summary) if args.json else _table(summary), flush=True)
        dist.barrier()
    except Exception as err:  # a peer died, timed out or the worker failed: one line, then leave
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        say(f"rank {env.rank} failed: {type(err).__name__}: {first}")
        sys.stderr.flush()
        os._exit(1)   # not destroy_process_group: it can wait on the peers that are gone
    dist.destroy_process_group()
    return 0


def _parser(prog: str, experiments: dict[str, Experiment]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"torchrun --nproc-per-node N -m {prog}",
                                     description="Run one of this chapter's distributed experiments.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print rank 0's results as JSON")
    common.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: NCCL on cuda:LOCAL_RANK when GPUs are present, else gloo on CPU")
    common.add_argument("--timeout-s", type=float,
                        default=float(os.environ.get("LLMINFRA_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S)),
                        help="seconds a collective waits for a peer before failing (default %(default)s)")
    sub = parser.add_subparsers(dest="experiment", required=True)
    for name, exp in experiments.items():
        p = sub.add_parser(name, parents=[common], help=exp.help, description=exp.help)
        for opt, default in exp.options.items():
            flag = "--" + opt.replace("_", "-")
            if isinstance(default, bool):
                p.add_argument(flag, dest=opt, action=argparse.BooleanOptionalAction, default=default)
            else:
                p.add_argument(flag, dest=opt, type=type(default), default=default, help="default %(default)s")
    return parser


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _table(summary: dict) -> str:
    """The summary's scalars as `key: value` lines, then its "rows" as an aligned table."""
    lines = [f"{k}: {v}" for k, v in summary.items() if k != "rows" and not isinstance(v, (dict, list))]
    for k, v in summary.items():   # one level of nested scalars, e.g. check.ok
        if isinstance(v, dict):
            lines += [f"{k}.{kk}: {_cell(vv)}" for kk, vv in v.items() if not isinstance(vv, (dict, list))]
    rows = summary.get("rows") or []
    if rows:
        cols = list(dict.fromkeys(c for r in rows for c in r))
        cells = [[_cell(r.get(c, "")) for c in cols] for r in rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        lines.append("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
        lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return " ".join(_cell(x) for x in v)
    return str(v)
