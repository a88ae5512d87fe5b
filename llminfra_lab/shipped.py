"""Results that ship with the package: small JSON files in `llminfra_lab/assets/`.

Each is written by a script under `benchmarks/` (a scaling sweep, a training run, a fault
campaign) and read by the labs and chapters instead of rerunning what takes minutes.
`load_json` is the one reader; each chapter checks the shape of its own result.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["ASSETS", "load_json"]

ASSETS = Path(__file__).resolve().parent / "assets"   # where the benchmarks/ scripts write them


def load_json(name: str, path: str | Path | None = None, made_by: str = "") -> Any:
    """The shipped result `name` (a file in llminfra_lab/assets/), or the JSON file at `path`
    (a result the reader regenerated). A missing `path` raises FileNotFoundError that names
    `made_by`, the script that writes the file."""
    if path is None:
        return json.loads(resources.files("llminfra_lab").joinpath("assets", name).read_text(encoding="utf-8"))
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result file at {path}" + (f"; run {made_by}" if made_by else ""))
    return json.loads(path.read_text(encoding="utf-8"))
