"""Checkpoints of a job that spans processes: sharded DCP, async saves, elastic restarts.

- `dcp_save_rank` / `dcp_load_rank` run inside a process group started by `launch.launch`:
  a weight matrix is sharded by rows across the ranks (a DTensor), each rank writes only its
  shard with `torch.distributed.checkpoint` (one file per rank plus a ``.metadata`` file), and
  a group of a *different* size reads it back into its own sharding (load-time resharding).
  ``asynchronous=True`` uses `dcp.async_save`: the state is staged (copied) and written by a
  background thread while the caller carries on; the returned future says when it is on disk.
- `elastic_worker` is a data-parallel training script for ``torchrun``; `run_elastic` starts
  it with ``--max-restarts``, one worker SIGKILLs itself once at a chosen step, torchrun tears
  the group down and starts it again, and the workers resume from the last checkpoint. The
  workers meet in the agent's store under a prefix of their attempt (`attempt_store`): torchrun
  keeps one store for all attempts, and without the prefix a restarted rank could read the
  address its peer had in the attempt that died.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor

from llminfra_lab.checks import positive_int
from llminfra_lab.resilience.atomic import load_latest, save_checkpoint, state_digest

__all__ = ["dcp_save_rank", "dcp_load_rank", "sharded_matrix", "attempt_store", "elastic_worker", "run_elastic"]


def sharded_matrix(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """The full (rows, cols) float32 matrix the DCP examples shard (the same on every rank)."""
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def dcp_save_rank(rank: int, world_size: int, path: str, rows: int = 10, cols: int = 6,
                  asynchronous: bool = False) -> dict[str, Any]:
    """Shard a matrix by rows over this group and save it with DCP (each rank writes its shard).
    Run with ``launch(dcp_save_rank, n, path)``. Returns this rank's shard shape and whether the
    call returned before the write finished (async)."""
    mesh = init_device_mesh("cpu", (world_size,))
    weight = distribute_tensor(sharded_matrix(rows, cols), mesh, [Shard(0)])
    state = {"weight": weight, "step": torch.tensor(7)}
    if asynchronous:
        future = dcp.async_save(state, checkpoint_id=path)
        returned_early = not future.done()
        future.result()                                   # wait before the group is torn down
    else:
        dcp.save(state, checkpoint_id=path)
        returned_early = False
    return {"local_rows": weight.to_local().shape[0], "returned_early": returned_early}


def dcp_load_rank(rank: int, world_size: int, path: str, rows: int = 10, cols: int = 6) -> dict[str, Any]:
    """Load the checkpoint into a group of `world_size` ranks, each with its own row shard, and
    return this rank's shard and the full matrix reassembled from all ranks."""
    mesh = init_device_mesh("cpu", (world_size,))
    state = {"weight": distribute_tensor(torch.zeros(rows, cols), mesh, [Shard(0)]), "step": torch.tensor(0)}
    dcp.load(state, checkpoint_id=path)                   # in place: reads only this rank's rows
    return {"local": state["weight"].to_local().clone(), "full": state["weight"].full_tensor(),
            "step": int(state["step"])}


# ----------------------------------------------------------------------------- elastic restart


def attempt_store(attempt: int, timeout: timedelta) -> dist.Store | None:
    """The torchrun agent's TCPStore with its keys scoped to restart `attempt`, or None when the
    workers are not told to use the agent's store (then `init_process_group` makes its own).

    With the c10d rendezvous (and the static one) the agent hosts one TCPStore for the whole job
    and gives every attempt's workers its address (``TORCHELASTIC_USE_AGENT_STORE=True``). In
    torch 2.13 the store outlives the attempts and `init_process_group` writes the same keys each
    time: gloo's ``default_pg/0//cpu//0/<rank>`` holds the address a rank listens on. After a
    restart, a rank that reaches gloo's connect before its restarted peer has written its key
    reads the address the peer had in the attempt that died and gets "connection refused"
    (PyTorch issue 135712). On a loaded machine one rank often starts seconds after the other,
    so restarts failed again and again. The prefix makes each attempt's keys new.
    `TORCHELASTIC_RESTART_COUNT` is the same on every rank of one agent, so this suits a job on
    one node; across nodes each agent counts its own restarts."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timeout)
    return dist.PrefixStore(f"attempt_{attempt}", store)


def elastic_worker(run_dir: str, steps: int, interval: int, fail_step: int, fail_rank: int = 1,
                   restart_delay_s: float = 0.0) -> None:
    """One rank of a data-parallel job under torchrun (reads RANK, WORLD_SIZE and
    TORCHELASTIC_RESTART_COUNT from the environment). Joins the group through `attempt_store`,
    resumes from the newest good checkpoint, all-reduces gradients, saves every `interval` steps
    from rank 0, and on the first attempt rank `fail_rank` SIGKILLs itself after step `fail_step`
    (0: never). On later attempts rank `fail_rank` waits `restart_delay_s` before joining the
    group: a slow start, as on a loaded machine, which made restarts fail before the prefix."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    torch.set_num_threads(1)
    if attempt > 0 and rank == fail_rank and restart_delay_s > 0:
        time.sleep(restart_delay_s)
    # A short timeout, so a group that cannot form errors within 30 s (and torchrun restarts it)
    # instead of waiting gloo's default 30 minutes.
    timeout = timedelta(seconds=30)
    store = attempt_store(attempt, timeout)
    if store is None:
        dist.init_process_group("gloo", timeout=timeout)
    else:
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=timeout)
    run = Path(run_dir)
    net = torch.nn.Linear(16, 16)
    torch.nn.init.normal_(net.weight, generator=torch.Generator().manual_seed(0))
    torch.nn.init.zeros_(net.bias)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    start, state, _ = load_latest(run / "ckpt")
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    start = start or 0
    with open(run / f"events-rank{rank}.jsonl", "a") as log:
        log.write(json.dumps({"event": "start", "attempt": attempt, "step": start}) + "\n")
        log.flush()
    for step in range(start, steps):
        gen = torch.Generator().manual_seed(1000 * step + rank)          # data of (step, rank)
        x = torch.randn(32, 16, generator=gen)
        loss = (net(x) - x.flip(1)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        for p in net.parameters():
            dist.all_reduce(p.grad)
            p.grad /= world
        opt.step()
        if (step + 1) % interval == 0 or step + 1 == steps:
            if rank == 0:
                save_checkpoint({"model": net.state_dict(), "optimizer": opt.state_dict()}, run / "ckpt", step + 1)
            dist.barrier()
        if attempt == 0 and rank == fail_rank and step + 1 == fail_step:
            os.kill(os.getpid(), signal.SIGKILL)
    if rank == 0:
        (run / "final.json").write_text(json.dumps({"digest": state_digest(dict(net.state_dict()))}))
    dist.destroy_process_group()


def run_elastic(run_dir: str | Path, nproc: int = 2, steps: int = 30, interval: int = 5, fail_step: int = 0,
                max_restarts: int = 2, timeout_s: float = 240.0, restart_delay_s: float = 0.0) -> dict[str, Any]:
    """Run `elastic_worker` under ``torchrun --max-restarts`` on loopback; returns torchrun's exit
    code, the start events of every rank (attempt, step resumed from) and the final digest.

    The c10d rendezvous store binds port 0 (the OS picks a free port as it binds, so no other
    process can take it in between). If torchrun has not finished after `timeout_s` it gets
    SIGTERM, which it passes on to its workers, then SIGKILL; a TimeoutError says so."""
    positive_int("nproc", nproc)
    positive_int("steps", steps)
    positive_int("interval", interval)
    if fail_step < 0 or fail_step > steps:
        raise ValueError(f"fail_step must be in 0..{steps}, got {fail_step!r}")
    if restart_delay_s < 0:
        raise ValueError(f"restart_delay_s must be >= 0, got {restart_delay_s!r}")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    code = (f"from llminfra_lab.resilience.distributed import elastic_worker; "
            f"elastic_worker({str(run)!r}, {steps}, {interval}, {fail_step}, restart_delay_s={restart_delay_s!r})")
    script = run / "worker.py"
    script.write_text(code + "\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
           f"--max-restarts={max_restarts}", "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:0",
           "--monitor-interval=0.5", str(script)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.terminate()                              # torchrun stops its workers on SIGTERM
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        raise TimeoutError(f"torchrun did not finish in {timeout_s} s; its log ends:\n{stderr[-3000:]}") from None
    starts = {}
    for r in range(nproc):
        f = run / f"events-rank{r}.jsonl"
        starts[r] = [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []
    final = run / "final.json"
    return {"returncode": proc.returncode, "starts": starts,
            "digest": json.loads(final.read_text())["digest"] if final.exists() else None,
            "log_tail": stderr[-6000:]}
