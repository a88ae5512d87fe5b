"""The book's chapter map, shipped with the package so labs and the landing page can read it.

`assets/chapters.yml` lists, for each of the 25 chapters, its title (English and
Chinese), the module behind it, the topics it covers, what its lab does and the
published results its code reproduces.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

__all__ = ["Chapter", "chapters", "chapter", "chapter_map_markdown", "PARTS"]

# The book's parts, in reading order, and the chapters each one holds.
PARTS: dict[str, range] = {
    "Hardware and systems": range(1, 5),
    "Training": range(5, 11),
    "Inference": range(11, 17),
    "Retrieval and applications": range(17, 20),
    "Agents and operations": range(20, 25),
    "Outlook": range(25, 26),
}


@dataclass(frozen=True)
class Chapter:
    n: int
    slug: str
    title: str
    title_zh: str
    module: str
    covers: tuple[str, ...]
    lab: str
    checks: tuple[str, ...]

    @property
    def stem(self) -> str:
        """File stem shared by the chapter and its lab, e.g. "02-gpu-mental-model"."""
        return f"{self.n:02d}-{self.slug}"

    @property
    def part(self) -> str:
        return next(name for name, span in PARTS.items() if self.n in span)


def chapters() -> list[Chapter]:
    """All 25 chapters in reading order."""
    text = resources.files("llminfra_lab").joinpath("assets/chapters.yml").read_text(encoding="utf-8")
    spec = yaml.safe_load(text)
    return [
        Chapter(
            n=c["n"], slug=c["slug"], title=c["title"], title_zh=c["title_zh"], module=c["module"],
            covers=tuple(c["covers"]), lab=c["lab"], checks=tuple(c.get("checks", ())),
        )
        for c in spec["chapters"]
    ]


def chapter(n: int) -> Chapter:
    """Chapter number `n` (1-25)."""
    found = [c for c in chapters() if c.n == n]
    if not found:
        raise ValueError(f"chapter number must be between 1 and {len(chapters())}, got {n!r}")
    return found[0]


def chapter_map_markdown(book_root: str | Path) -> str:
    """A Markdown table of every chapter by part, marking those published in `book_root/_toc.yml`.

    Published chapters link to their page and lab; the rest are listed as planned.
    """
    toc_path = Path(book_root) / "_toc.yml"
    if not toc_path.is_file():
        raise ValueError(f"expected a Jupyter Book root with _toc.yml, found none at {toc_path}")
    toc = toc_path.read_text(encoding="utf-8")
    lines = ["| # | Chapter | 中文 | Module | Lab |", "|---|---|---|---|---|"]
    part = None
    for c in chapters():
        if c.part != part:
            part = c.part
            lines.append(f"| | **{part}** | | | |")
        if f"chapters/{c.stem}" in toc:
            title = f"[{c.title}](chapters/{c.stem}.md)"
            lab = f"[lab](labs/{c.stem}.ipynb)"
        else:
            title, lab = f"{c.title} *(in preparation)*", ""
        lines.append(f"| {c.n} | {title} | {c.title_zh} | `llminfra_lab.{c.module}` | {lab} |")
    return "\n".join(lines)
