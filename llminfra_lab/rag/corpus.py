"""The corpus: this book's own pages, parsed into sections.

A snapshot of the chapters' MyST Markdown ships in `llminfra_lab/assets/rag/book/` (written by
`benchmarks/embed_book.py --snapshot`, which records its date in `manifest.json`), so the lab
works in Colab without the repository. `parse_markdown` cuts a page at its headings into
`Section`s and strips what a reader does not read (front matter, code cells, directive
options, role markup); `parse_html` does the same for an HTML page, as a crawler would meet it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from importlib import resources

from llminfra_lab.checks import positive_int

__all__ = ["Section", "slugify", "clean_markdown", "parse_markdown", "parse_html", "book_pages", "load_book",
           "book_manifest"]

# Directives whose body is code or machinery rather than prose: dropped whole.
_DROP_FENCES = ("{code-cell}", "{literalinclude}", "{glossary}")


@dataclass(frozen=True)
class Section:
    """One headed span of a page: `doc` (the page's file stem), `title`, heading `level`
    (1 for the page's own title), `text` (the prose under it) and `id` ("doc#slug")."""
    doc: str
    title: str
    level: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc}#{slugify(self.title)}"


def slugify(title: str) -> str:
    """Lower-case words joined by hyphens: "14.2 Granularity: who shares a scale" -> "14-2-granularity-who-shares-a-scale"."""
    return "-".join(re.findall(r"[a-z0-9]+", title.lower()))


def _strip_roles(line: str) -> str:
    line = re.sub(r"\{(?:cite|cite:p|cite:t|numref|ref|eq)\}`[^`]*`", "", line)
    line = re.sub(r"\{term\}`([^`<]*?)\s*<[^`]*>`", r"\1", line)        # {term}`GQA <grouped-query attention>`
    line = re.sub(r"\{(?:term|doc|download)\}`([^`]*)`", r"\1", line)
    return re.sub(r"\s+([.,;:)])", r"\1", line)


def clean_markdown(text: str) -> str:
    """MyST Markdown as a reader sees it: no front matter, no code cells or included code, no
    directive options; prose of exercises, solutions and admonitions kept; roles unwrapped."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    lines = text.splitlines()
    if lines and lines[0].strip() == "---":                         # MyST-NB front matter
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), 0)
        lines = lines[end + 1:]
    out, fence = [], None                                           # fence = (marker, keep?)
    for line in lines:
        stripped = line.strip()
        opener = re.match(r"^(`{3,}|:{3,})\s*(\S*)", stripped)
        if fence is None and opener:
            marker, name = opener.group(1), opener.group(2)
            fence = (marker, not any(name.startswith(d) for d in _DROP_FENCES) and not (name and marker[0] == "`"
                                                                                      and not name.startswith("{")))
            continue
        if fence is not None and stripped == fence[0]:
            fence = None
            continue
        if fence is not None and not fence[1]:
            continue
        if re.match(r"^:[a-z-]+:", stripped):                      # directive options
            continue
        out.append(_strip_roles(line))
    return "\n".join(out)


def parse_markdown(text: str, doc: str, max_level: int = 2) -> list[Section]:
    """Sections of a Markdown page, cut at headings of level <= max_level (deeper headings
    stay in their parent's text). Text before the first heading goes to a level-0 section."""
    positive_int("max_level", max_level)
    sections, title, level, body = [], doc, 0, []
    for line in clean_markdown(text).splitlines():
        m = re.match(r"^(#{1,6})\s+(.*\S)\s*$", line)
        if m and len(m.group(1)) <= max_level:
            if body and "".join(body).strip() or level > 0:
                sections.append(Section(doc, title, level, "\n".join(body).strip()))
            title, level, body = m.group(2), len(m.group(1)), []
        else:
            body.append(line)
    sections.append(Section(doc, title, level, "\n".join(body).strip()))
    return [s for s in sections if s.text or s.level > 0]


class _HTMLSections(HTMLParser):
    """Collects (level, heading, text) from h1-h6 and block text, skipping script and style."""

    def __init__(self, max_level: int):
        super().__init__()
        self.max_level, self.parts = max_level, [(0, "", [])]
        self.heading, self.skip = None, 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "nav"):
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag) and int(tag[1]) <= self.max_level:
            self.heading = (int(tag[1]), [])
        elif tag in ("p", "li", "tr", "br", "pre", "div"):
            self.parts[-1][2].append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "nav"):
            self.skip = max(0, self.skip - 1)
        elif self.heading and tag == f"h{self.heading[0]}":
            self.parts.append((self.heading[0], " ".join("".join(self.heading[1]).split()), []))
            self.heading = None

    def handle_data(self, data):
        if self.skip:
            return
        (self.heading[1] if self.heading else self.parts[-1][2]).append(data)


def parse_html(html: str, doc: str, max_level: int = 2) -> list[Section]:
    """Sections of an HTML page, cut at <h1>..<h{max_level}>; scripts, styles and <nav> dropped."""
    positive_int("max_level", max_level)
    if not isinstance(html, str):
        raise ValueError(f"html must be a str, got {type(html).__name__}")
    parser = _HTMLSections(max_level)
    parser.feed(html)
    parser.close()
    out = []
    for level, title, chunks in parser.parts:
        text = "\n".join(" ".join(line.split()) for line in "".join(chunks).splitlines() if line.strip())
        if text or level > 0:
            out.append(Section(doc, title or doc, level, text))
    return out


def _book_dir():
    return resources.files("llminfra_lab").joinpath("assets", "rag", "book")


def book_manifest() -> dict:
    """What the shipped snapshot holds: its date, the commit it came from, its files."""
    return json.loads(_book_dir().joinpath("manifest.json").read_text(encoding="utf-8"))


def book_pages() -> dict[str, str]:
    """{file stem: Markdown} of every page in the shipped snapshot, in the book's order."""
    return {stem: _book_dir().joinpath(f"{stem}.md").read_text(encoding="utf-8")
            for stem in book_manifest()["files"]}


def load_book(max_level: int = 2) -> list[Section]:
    """Every section of every page of the snapshot (the glossary excluded: it is the entity
    graph's source, see graph.py), in reading order."""
    return [s for stem, text in book_pages().items() if stem != "glossary"
            for s in parse_markdown(text, stem, max_level)]
