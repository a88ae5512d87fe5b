"""The distributed experiments of chapters 4, 6 and 7 under torchrun (llminfra_lab.launch.main).

Every test starts real torchrun agents on loopback (127.0.0.1, gloo on CPU), bounded in
time. The two-"node" test is the multi-node case in miniature: two agents, two processes
each, meeting through torchrun's c10d rendezvous, must give the in-process launcher's
results to the last bit.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llminfra_lab.collectives.experiments import RING
from llminfra_lab.launch import free_port, run_in_process
from llminfra_lab.zero.experiments import COMPARE

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]   # what .venv/bin/torchrun runs
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _agents(module_args: list[str], n_nodes: int, tmp_path: Path, tag: str) -> list[subprocess.Popen]:
    """Start `n_nodes` torchrun agents of 2 processes each, rendezvousing through c10d on loopback."""
    port = free_port()
    procs = []
    for node in range(n_nodes):
        cmd = TORCHRUN + ["--nnodes", str(n_nodes), "--nproc-per-node", "2", "--node-rank", str(node),
                          "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", tag,
                          # node 0 hosts the rendezvous store (on one machine both could)
                          "--rdzv-conf", f"join_timeout=60,is_host={int(node == 0)}", "--max-restarts", "0",
                          "-m"] + module_args
        with open(tmp_path / f"{tag}-node{node}.out", "w") as out, open(tmp_path / f"{tag}-node{node}.err", "w") as err:
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=out, stderr=err, start_new_session=True))
    return procs


def _kill_node(agent: subprocess.Popen) -> None:
    """SIGKILL an agent and its workers, as a node failure would. torchrun starts each worker
    in a session of its own, so killing the agent's process group would not reach them."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == agent.pid:                     # field 4 of /proc/PID/stat: the parent's pid
            workers.append(int(stat.parent.name))
    for pid in workers + [agent.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    agent.wait()


def _wait(procs: list[subprocess.Popen], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    try:
        return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                _kill_node(p)


def _read(tmp_path: Path, tag: str, stream: str) -> str:
    return "".join(f.read_text() for f in sorted(tmp_path.glob(f"{tag}-node*.{stream}")))


def _rank0_json(tmp_path: Path, tag: str) -> dict:
    lines = [ln for ln in _read(tmp_path, tag, "out").splitlines() if ln.startswith("{")]
    assert len(lines) == 1, _read(tmp_path, tag, "err")[-3000:]
    return json.loads(lines[0])


def test_two_nodes_zero3_and_ring_equal_the_in_process_launcher(tmp_path):
    """Two torchrun agents ("nodes") of 2 processes each, c10d rendezvous on 127.0.0.1, run
    ZeRO-3 for two steps and chapter 4's ring all-reduce. They give the in-process launcher's
    results on 4 processes to the last bit: every rank's losses and the final weights
    (SHA-256 of their bytes), which also equal plain data parallel's (Rajbhandari et al.
    2020: sharding does not change the arithmetic); every rank's reduced tensor (SHA-256),
    its error against the library's all-reduce, and the bytes each rank sent, 2(p-1)/p of
    the buffer per rank (Patarasuk & Yuan 2009). Both jobs and both in-process runs go at
    once, to bound the wall time on a busy machine."""
    jobs = {"zero": _agents(["llminfra_lab.zero", "compare", "--stages", "3", "--no-fsdp2", "--steps", "2",
                             "--json", "--timeout-s", "120"], 2, tmp_path, "zero"),
            "ring": _agents(["llminfra_lab.collectives", "ring", "--max-bytes", "0", "--json", "--timeout-s", "120"],
                            2, tmp_path, "ring")}
    try:
        want_zero = json.loads(json.dumps(run_in_process(COMPARE, 4, timeout_s=240, stages="3", fsdp2=False, steps=2)))
        want_ring = json.loads(json.dumps(run_in_process(RING, 4, timeout_s=240, max_bytes=0)))
    finally:
        codes = {tag: _wait(procs, timeout_s=240) for tag, procs in jobs.items()}
    for tag in jobs:
        assert codes[tag] == [0, 0], _read(tmp_path, tag, "err")[-3000:]
    zero, ring = _rank0_json(tmp_path, "zero"), _rank0_json(tmp_path, "ring")
    assert (zero["world_size"], zero["backend"], zero["device"]) == (4, "gloo", "cpu")
    assert zero["check"] == want_zero["check"]
    assert zero["check"]["ok"] and zero["check"]["zero3"]["max_weight_diff"] <= 1e-5   # float32, 4 ranks
    assert ring["check"] == want_ring["check"] and ring["check"]["ok"]
    assert sum(ring["check"]["bytes_sent_per_rank"]) == 2 * 3 * 1001 * 8     # 2(p-1) S in all, p = 4
    assert ring["rows"] == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds an agent's workers through /proc (Linux)")
def test_a_dead_node_stops_the_others_with_a_clear_error(tmp_path):
    """Kill one agent and its processes mid-run (as a node failure does): the surviving
    ranks fail with one line naming the rank and the error, and their agent exits non-zero
    within 75 s of the kill instead of hanging (--timeout-s 30: a collective waits at most
    30 s for a peer; the rest is the agents' shutdown on a loaded machine)."""
    procs = _agents(["llminfra_lab.zero", "compare", "--stages", "3", "--no-fsdp2", "--steps", "100000",
                     "--timeout-s", "30"], 2, tmp_path, "fail")
    deadline = time.monotonic() + 120
    while _read(tmp_path, "fail", "err").count("started on cpu") < 4:   # all 4 ranks joined the group
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), _read(tmp_path, "fail", "err")
        time.sleep(0.2)
    time.sleep(2.0)                                                    # now inside the training loop
    _kill_node(procs[1])
    killed_at = time.monotonic()
    code = _wait(procs[:1], timeout_s=90)[0]
    took = time.monotonic() - killed_at
    err = _read(tmp_path, "fail", "err")
    assert code != 0, err[-3000:]
    assert took < 75, f"the surviving agent took {took:.0f} s"
    failed = [ln for ln in err.splitlines() if "llminfra_lab.zero compare: rank" in ln and "failed:" in ln]
    assert failed, err[-3000:]


def test_one_node_tp_and_dp_match_one_process(tmp_path):
    """`torchrun --nproc-per-node 2 -m llminfra_lab.parallel tp|dp`, as a reader would type it
    (--standalone): the tensor-parallel block step (2 all-reduces forward, 2 backward,
    Shoeybi et al. 2019) and the data-parallel step equal the one-process step."""
    runs = {exp: subprocess.Popen(TORCHRUN + ["--standalone", "--nproc-per-node", "2", "-m", "llminfra_lab.parallel",
                                               exp, "--json"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
            for exp in ("tp", "dp")}                                      # both at once
    for exp, run in runs.items():
        try:
            stdout, stderr = run.communicate(timeout=180)
        finally:
            if run.poll() is None:
                _kill_node(run)
        assert run.returncode == 0, stderr[-3000:]
        got = json.loads([ln for ln in stdout.splitlines() if ln.startswith("{")][0])
        assert got["check"]["ok"], got
        if exp == "tp":
            assert (got["check"]["g_forward"], got["check"]["f_backward"]) == (2, 2)
