"""Copy the repository URL from _config.yml into the set-up cell (the first code cell) of every lab.

The URL lives in one place (`repository.url` in _config.yml); a fork edits it there
and runs `make sync-url`. tests/test_book.py fails when a lab has drifted.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
URL_LINE = re.compile(r'^REPO_URL = "[^"]*"', re.M)


def repo_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]


def main() -> int:
    url = repo_url()
    changed = 0
    for path in sorted((ROOT / "labs").glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        cell = next(c for c in nb["cells"] if c["cell_type"] == "code")  # the set-up cell
        src = "".join(cell["source"])
        new = URL_LINE.sub(f'REPO_URL = "{url}"', src)
        if new != src:
            cell["source"] = new.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            changed += 1
    print(f"{changed} lab(s) now point at {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
