"""Fault injection: SIGKILL a training process at random moments and prove the resume is exact.

`fault_injection_campaign` first runs the trainer of `trainer.py` once without interruption
(the reference: its final weights and the digest of every checkpoint it saved). Then it runs
the same training as a child process, kills it with SIGKILL after a random delay (some kills
land while a checkpoint is being written), starts it again, and repeats. From the event log
and the checkpoints it establishes, for every kill:

- **no corrupt load**: the weights each restart loaded are bit-identical to the reference's
  weights at that step (and to the digest stored with the checkpoint);
- **bounded loss**: the steps between the last one completed before the kill and the step
  resumed from are at most one checkpoint interval;
- at the end, the **final weights equal the uninterrupted run's**, bit for bit.

Optionally it also flips a byte in the newest checkpoint after some kills (bit rot on the
storage), and the loader must refuse that checkpoint and fall back to the one before it.
"""
from __future__ import annotations

import dataclasses
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llminfra_lab.checks import nonnegative_int
from llminfra_lab.resilience.atomic import list_checkpoints
from llminfra_lab.resilience.trainer import TrainerConfig, read_events
from llminfra_lab.shipped import load_json

__all__ = ["fault_injection_campaign", "trainer_command", "flip_byte", "load_campaign_result"]


def fault_injection_campaign(work_dir: str | Path, cfg: TrainerConfig, kills: int, seed: int = 0,
                             corrupt_prob: float = 0.0, python: str = sys.executable,
                             timeout_s: float = 300.0) -> dict[str, Any]:
    """Kill the trainer `kills` times at random moments, resume after each, and check the result.

    Returns counts (``kills``, ``kills_mid_save``, ``resumes``, ``corrupt_loads``,
    ``refused_checkpoints``, ``corruptions_injected``), ``max_lost_steps``, ``interval``,
    ``final_equal`` (final weights bit-identical to the uninterrupted run) and ``records``
    (one dict per kill).
    """
    if not isinstance(cfg, TrainerConfig):
        raise ValueError(f"cfg must be a TrainerConfig, got {type(cfg).__name__}")
    nonnegative_int("kills", kills)
    if not 0 <= corrupt_prob <= 1:
        raise ValueError(f"corrupt_prob must be in [0, 1], got {corrupt_prob!r}")
    work_dir = Path(work_dir)
    rng = random.Random(seed)
    reference = work_dir / "reference"
    subprocess.run(trainer_command(reference, cfg, python), check=True, timeout=timeout_s,
                   capture_output=True)
    ref_events = read_events(reference)
    ref_digest = {e["step"]: e["digest"] for e in ref_events if e["event"] == "save_end"}
    ref_final = ref_events[-1]["digest"]
    ref_seconds = ref_events[-1]["t"] - ref_events[0]["t"]       # resume to done, no start-up

    run = work_dir / "run"
    records: list[dict[str, Any]] = []
    injected = 0
    for _ in range(kills):
        seen = len(read_events(run))
        proc = subprocess.Popen(trainer_command(run, cfg, python), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if not _wait_for_resume(run, seen, proc, timeout_s):
            break                                   # the run finished before we could kill it
        resumed_at = [e for e in read_events(run)[seen:] if e["event"] == "resume"][0]["step"]
        time.sleep(rng.uniform(0.0, ref_seconds * (cfg.steps - resumed_at) / cfg.steps))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mine = read_events(run)[seen:]
        if mine and mine[-1]["event"] == "done":
            break                                   # it finished before the signal: not a kill
        steps = [e["step"] for e in mine if e["event"] == "step"]
        last = mine[-1] if mine else {}
        record = {"pid": proc.pid, "last_step": max(steps, default=mine[0]["step"] if mine else 0),
                  "mid_save": last.get("event") == "save_begin", "corrupted": None}
        if corrupt_prob and rng.random() < corrupt_prob and list_checkpoints(run / "ckpt"):
            newest_step, newest = list_checkpoints(run / "ckpt")[0]
            flip_byte(newest / "state.pt", rng.randrange(1 << 30))
            record["corrupted"] = newest_step
            injected += 1
        records.append(record)
    subprocess.run(trainer_command(run, cfg, python), check=True, timeout=timeout_s, capture_output=True)
    resumes = [e for e in read_events(run) if e["event"] == "resume"]
    return _summarise(records, resumes, ref_digest, ref_final, read_events(run), cfg, injected)


def _summarise(records, resumes, ref_digest, ref_final, events, cfg, injected) -> dict[str, Any]:
    # resumes[0] is the first start (from scratch); resumes[i + 1] follows kill i.
    corrupt_loads, refused, max_lost = 0, 0, 0
    for i, resume in enumerate(resumes):
        step = resume["step"]
        if step > 0 and (resume["digest"] != ref_digest.get(step) or resume["digest"] != resume["saved_digest"]):
            corrupt_loads += 1
        refused += len(resume["refused"])
        if 0 < i <= len(records):
            rec = records[i - 1]
            rec["resumed_from"] = step
            rec["lost_steps"] = rec["last_step"] - step
            rec["refused"] = [s for s, _ in resume["refused"]]
            if rec["corrupted"] is None:            # bit rot may cost one more interval, by design
                max_lost = max(max_lost, rec["lost_steps"])
    done = [e for e in events if e["event"] == "done"]
    return {
        "kills": len(records),
        "kills_mid_save": sum(r["mid_save"] for r in records),
        "resumes": sum("resumed_from" in r for r in records),      # restarts that followed a kill
        "corrupt_loads": corrupt_loads,
        "corruptions_injected": injected,
        "refused_checkpoints": refused,
        "max_lost_steps": max_lost,
        "interval": cfg.interval,
        "final_equal": bool(done) and done[-1]["digest"] == ref_final,
        "records": records,
    }


def trainer_command(run_dir: str | Path, cfg: TrainerConfig, python: str = sys.executable) -> list[str]:
    """The command line that runs the trainer with `cfg` in its own process."""
    cmd = [python, "-m", "llminfra_lab.resilience.trainer", "--run-dir", str(run_dir)]
    for name, value in dataclasses.asdict(cfg).items():
        cmd += ["--" + name.replace("_", "-"), str(value)]
    return cmd


def flip_byte(path: str | Path, position: int) -> int:
    """Invert one byte of a file in place (at `position` modulo its length): silent bit rot.
    Returns the offset changed."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    if not data:
        raise ValueError(f"{path} is empty")
    offset = position % len(data)
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return offset


def _wait_for_resume(run: Path, seen: int, proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait until the new process has logged its resume (import and load done); False if it exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(e["event"] == "resume" for e in read_events(run)[seen:]):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    proc.kill()
    raise RuntimeError(f"the trainer did not start within {timeout_s} s")


def load_campaign_result() -> dict[str, Any]:
    """The campaign shipped in ``assets/resilience_campaign.json`` (written by
    ``benchmarks/resilience_campaign.py``)."""
    return load_json("resilience_campaign.json")
