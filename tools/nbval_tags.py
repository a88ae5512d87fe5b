"""Turn nbval's comment markers in the labs into nbval's cell tags.

A line `# NBVAL_IGNORE_OUTPUT` at the top of a cell tells nbval not to compare that cell's
output, but the reader sees it on the website and in Colab. nbval reads the same options
from cell tags (`nbval-ignore-output`, `nbval-check-output`, `nbval-raises-exception`,
`nbval-skip`), which the website does not show. This tool removes every marker line from
the code cells of the labs and adds the matching tag; a notebook without markers is left
byte for byte as it was, so running it twice changes nothing.

    .venv/bin/python tools/nbval_tags.py              # every labs/*.ipynb
    .venv/bin/python tools/nbval_tags.py PATH...      # these notebooks
    .venv/bin/python tools/nbval_tags.py --check      # exit 1 if a marker is left

Notebooks are written as `tools/sync_setup_cell.py` writes them (indent 1, UTF-8).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# nbval's comment markers (nbval.plugin.comment_markers) and the cell tags it reads instead
TAGS = {
    "NBVAL_IGNORE_OUTPUT": "nbval-ignore-output",
    "NBVAL_CHECK_OUTPUT": "nbval-check-output",
    "NBVAL_RAISES_EXCEPTION": "nbval-raises-exception",
    "NBVAL_SKIP": "nbval-skip",
}
MARKER = re.compile(r"^\s*#+\s*(" + "|".join(TAGS) + r")\s*$")


def convert_cell(cell: dict) -> bool:
    """Move the markers of one code cell into its tags; True when the cell changed."""
    if cell.get("cell_type") != "code":
        return False
    source = cell["source"]
    lines = source.splitlines(keepends=True) if isinstance(source, str) else list(source)
    found = [m.group(1) for line in lines if (m := MARKER.match(line.rstrip("\n")))]
    if not found:
        return False
    kept = [line for line in lines if not MARKER.match(line.rstrip("\n"))]
    if kept:                                   # no trailing newline on the last line, as Jupyter stores it
        kept[-1] = kept[-1].rstrip("\n")
    cell["source"] = kept
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    for marker in found:
        if TAGS[marker] not in tags:
            tags.append(TAGS[marker])
    return True


def convert(path: Path) -> bool:
    """Convert one notebook in place; True when it was rewritten."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    changed = [convert_cell(cell) for cell in nb["cells"]]
    if any(changed):
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return any(changed)


def markers_left(path: Path) -> int:
    """How many code cells of a notebook still carry a marker line."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return sum(1 for c in nb["cells"] if c.get("cell_type") == "code"
               and any(MARKER.match(line.rstrip("\n")) for line in "".join(c["source"]).splitlines()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: labs/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a marker is left")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "labs").glob("*.ipynb"))
    if args.check:
        left = {p: n for p in paths if (n := markers_left(p))}
        for p, n in left.items():
            print(f"{p}: {n} cell(s) with an NBVAL_ comment marker; run tools/nbval_tags.py")
        return 1 if left else 0
    changed = [p for p in paths if convert(p)]
    print(f"{len(changed)} notebook(s) updated: nbval comment markers moved into cell tags")
    return 0


if __name__ == "__main__":
    sys.exit(main())
