"""Atomic checkpoints: write aside, fsync, rename, and a manifest of checksums.

A checkpoint is a directory ``<root>/step_00000042/`` holding one or more data files and
``MANIFEST.json``, which lists each file's size and SHA-256. It is written in three moves,
so that a crash at any instant leaves either the old set of checkpoints or the new one,
never a half-written directory that looks finished:

1. every file is written inside a temporary directory ``<root>/.tmp-step_00000042-<pid>/``,
   flushed and fsync'ed (the bytes are on the disk, not only in the page cache);
2. the manifest is written last, the same way: its presence means "all files are complete";
3. the temporary directory is renamed to its final name (``os.replace``, atomic on POSIX
   within one file system) and the parent directory is fsync'ed so the rename itself survives
   a power cut.

`load_latest` walks the checkpoints newest first, verifies each against its manifest, and
returns the first that passes: a torn, truncated or bit-flipped checkpoint is refused and the
previous good one is used. The save steps are `write_file_atomic`, `save_checkpoint`; the
checks are `verify_checkpoint`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from llminfra_lab.checks import nonnegative_int, positive_int

__all__ = ["MANIFEST", "save_checkpoint", "write_file_atomic", "verify_checkpoint", "list_checkpoints",
           "load_latest", "prune_checkpoints", "manifest_problem", "sha256_bytes", "state_digest", "checkpoint_dir"]

MANIFEST = "MANIFEST.json"
_TMP_PREFIX = ".tmp-"


def save_checkpoint(state: dict[str, Any], root: str | Path, step: int,
                    pause_before_rename_s: float = 0.0) -> Path:
    """Save `state` (anything `torch.save` takes) as checkpoint `step` under `root`, atomically.

    The state is serialised to ``state.pt`` in a temporary directory, fsync'ed, described in
    ``MANIFEST.json`` (size and SHA-256 of every file, the step), and the directory is renamed
    into place. `pause_before_rename_s` holds the finished temporary directory open for that
    long before the rename: fault-injection tests use it to widen the window in which a kill
    lands in the middle of a save. Returns the checkpoint's directory.
    """
    nonnegative_int("step", step)
    if not isinstance(state, dict):
        raise ValueError(f"state must be a dict, got {type(state).__name__}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(root, step)
    tmp = root / f"{_TMP_PREFIX}{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    write_file_atomic(tmp / "state.pt", payload)
    manifest = {"step": step, "files": {"state.pt": {"bytes": len(payload), "sha256": sha256_bytes(payload)}}}
    write_file_atomic(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
    if pause_before_rename_s > 0:
        time.sleep(pause_before_rename_s)
    if final.exists():                       # a re-save of the same step replaces the old copy
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    return final


def write_file_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part.

    The bytes go to a temporary file in the same directory, are flushed and fsync'ed, the file
    is renamed over `path`, and the directory is fsync'ed to make the rename durable.
    """
    path = Path(path)
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def verify_checkpoint(path: str | Path) -> str | None:
    """None when the checkpoint at `path` matches its manifest; otherwise why it does not.

    Checks that the manifest exists and parses, and that every file it lists exists with the
    listed size and SHA-256.
    """
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files = manifest["files"]
    except FileNotFoundError:
        return "no manifest (the save did not finish)"
    except (ValueError, KeyError, TypeError):
        return "manifest unreadable"
    contents = {name: (path / name).read_bytes() for name in files if (path / name).is_file()}
    return manifest_problem(manifest, contents)


def manifest_problem(manifest: dict[str, Any], contents: dict[str, bytes]) -> str | None:
    """None when every file `manifest` lists is in `contents` (name -> bytes) with the listed size
    and SHA-256; otherwise the first problem. A flipped bit keeps the size, so the hash is needed."""
    for name, meta in manifest["files"].items():
        if name not in contents:
            return f"{name} missing"
        data = contents[name]
        if len(data) != meta["bytes"]:
            return f"{name} has {len(data)} bytes, manifest says {meta['bytes']}"
        if sha256_bytes(data) != meta["sha256"]:
            return f"{name} checksum mismatch"
    return None


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """(step, directory) of every finished-looking checkpoint under `root`, newest first.

    Temporary directories of unfinished saves are skipped; nothing is verified here.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith("step_") and p.name[5:].isdigit():
            found.append((int(p.name[5:]), p))
    return sorted(found, reverse=True)


def load_latest(root: str | Path) -> tuple[int | None, dict[str, Any] | None, list[tuple[int, str]]]:
    """Load the newest checkpoint under `root` that passes `verify_checkpoint`.

    Returns (step, state, refused): the step and state of the checkpoint loaded (None, None
    when there is none) and (step, reason) for each newer checkpoint that was refused.
    """
    refused: list[tuple[int, str]] = []
    for step, path in list_checkpoints(root):
        problem = verify_checkpoint(path)
        if problem is not None:
            refused.append((step, problem))
            continue
        state = torch.load(path / "state.pt", weights_only=False)
        return step, state, refused
    return None, None, refused


def prune_checkpoints(root: str | Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest *verified* checkpoints and any leftover temporary
    directories; returns what was deleted. Never deletes the last good checkpoint."""
    positive_int("keep", keep)
    root = Path(root)
    deleted, kept = [], 0
    for _, path in list_checkpoints(root):
        if kept < keep and verify_checkpoint(path) is None:
            kept += 1
            continue
        if kept >= keep:
            shutil.rmtree(path, ignore_errors=True)
            deleted.append(path)
    for p in root.glob(f"{_TMP_PREFIX}*") if root.is_dir() else []:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        deleted.append(p)
    return deleted


def checkpoint_dir(root: str | Path, step: int) -> Path:
    """The directory of checkpoint `step` under `root` (zero-padded so names sort by step)."""
    return Path(root) / f"step_{step:08d}"


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def state_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the raw bytes of named tensors (sorted by name): equal digests mean
    bit-identical values, which is how the tests compare a resumed run with an uninterrupted one."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
