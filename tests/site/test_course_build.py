"""The course build (`make book-course`) holds no chapter's solution; the book's build does.

Every `{solution}` block of every chapter in the table of contents is read from its Markdown
and cut into plain phrases of six words or more that appear nowhere else in the chapter. The
course build is searched, every file of it (pages, search index, anything copied), for each
phrase; the normal build must show each solution through at least one of its phrases, so
the search is known to find solution text where there is some.

The build checks run only when LLMINFRA_COURSE_SITE names a built course site (`make
book-course` sets it to _build/course/_build/html), so `make test` and `make unit` skip them;
the normal build is LLMINFRA_SITE, or _build/html.
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
CHAPTERS = [c["file"] for part in TOC["parts"] for c in part["chapters"] if c["file"].startswith("chapters/")]
COURSE = Path(os.environ["LLMINFRA_COURSE_SITE"]).resolve() if os.environ.get("LLMINFRA_COURSE_SITE") else None
BOOK = Path(os.environ.get("LLMINFRA_SITE") or ROOT / "_build" / "html").resolve()
MIN_WORDS = 6


def solutions(markdown: str) -> tuple[list[str], str]:
    """The bodies of the `{solution}` blocks (backtick or colon fences), and the rest of the text."""
    bodies, rest, lines, i = [], [], markdown.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^\s*(`{3,}|:{3,})\{solution\}", lines[i])
        if not m:
            rest.append(lines[i])
            i += 1
            continue
        fence, body, i = m.group(1), [], i + 1
        while i < len(lines) and lines[i].strip() != fence:
            if body or not re.match(r"^\s*:[\w-]+:", lines[i]):   # skip the options (:class:, :label:)
                body.append(lines[i])
            i += 1
        bodies.append("\n".join(body))
        i += 1
    return bodies, "\n".join(rest)


def _plain(text: str) -> str:
    """Markdown reduced to runs of plain words, separated by '|' wherever markup, math or
    code stood (those render differently in HTML)."""
    text = re.sub(r"\{[\w:-]+\}`[^`]*`|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$", "|", text, flags=re.S)
    text = text.replace("...", "|").replace("--", "|")
    text = re.sub(r"[^A-Za-z0-9 ,.'\n-]", "|", text)
    return re.sub(r"\s+", " ", text)


def phrases(body: str, elsewhere: str) -> list[str]:
    """The solution's plain phrases of MIN_WORDS words or more not found elsewhere in the chapter."""
    other = _plain(elsewhere)
    found = []
    for chunk in _plain(body).split("|"):
        chunk = chunk.strip(" ,.'-")
        if len(chunk.split()) >= MIN_WORDS and chunk not in other:
            found.append(chunk)
    return found


def chapter_phrases() -> dict[str, list[list[str]]]:
    """For each published chapter, the phrases of each of its solutions."""
    out = {}
    for f in CHAPTERS:
        bodies, rest = solutions((ROOT / f"{f}.md").read_text(encoding="utf-8"))
        out[f] = [phrases(b, rest) for b in bodies]
    return out


def page_text(raw: str) -> str:
    """A built file as a reader sees its text: tags dropped, entities and typographic quotes undone."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", raw))
    for fancy, plain in (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"'), ("\u2013", "-")):
        text = text.replace(fancy, plain)
    return re.sub(r"\s+", " ", text)


def test_every_published_chapter_has_solutions_with_searchable_phrases():
    """Runs in `make test`: the search below has something to look for in every solution."""
    for f, sols in chapter_phrases().items():
        assert sols, f"{f}: no {{solution}} block found"
        empty = [i + 1 for i, p in enumerate(sols) if not p]
        assert not empty, f"{f}: solutions {empty} have no plain phrase of {MIN_WORDS}+ words to search for"


needs_course = pytest.mark.skipif(COURSE is None, reason="course build: run `make book-course` (LLMINFRA_COURSE_SITE unset)")


@needs_course
def test_the_book_build_shows_every_solution():
    assert (BOOK / "intro.html").is_file(), f"{BOOK}: no built book; run `make book`"
    for f, sols in chapter_phrases().items():
        text = page_text((BOOK / f"{f}.html").read_text(encoding="utf-8"))
        missing = [p[0] for p in sols if not any(phrase in text for phrase in p)]
        assert not missing, f"{f}.html lacks solutions starting {missing}"


@needs_course
def test_the_course_build_has_no_solution_text_anywhere():
    assert (COURSE / "intro.html").is_file(), f"{COURSE}: no course build; run `make book-course`"
    wanted = {phrase: f for f, sols in chapter_phrases().items() for p in sols for phrase in p}
    leaks = []
    for path in sorted(p for p in COURSE.rglob("*") if p.is_file()):
        if path.suffix in {".png", ".svg", ".jpg", ".woff", ".woff2", ".ttf", ".eot", ".ico", ".gif"}:
            continue
        text = page_text(path.read_text(encoding="utf-8", errors="replace"))
        leaks += [f"{path.relative_to(COURSE)}: {phrase!r} ({f})" for phrase, f in wanted.items() if phrase in text]
    assert not leaks, "solution text in the course build:\n" + "\n".join(leaks[:20])


@needs_course
def test_the_course_build_keeps_the_exercises_and_the_course_part():
    for f in CHAPTERS:
        book, course = ((site / f"{f}.html").read_text(encoding="utf-8") for site in (BOOK, COURSE))
        assert 'class="solution' in book, f"{f}: the book's page shows no solution block"
        assert 'class="exercise' in course, f"{f}: the course page lost its exercises"
        assert 'class="solution' not in course, f"{f}: the course page has a solution block"
    assert not (COURSE / "_sources").exists(), "the course build must not copy the pages' sources"
    for page in ("syllabus", "assignments", "grading"):
        assert (COURSE / "course" / f"{page}.html").is_file(), f"course/{page} is missing from the course build"
