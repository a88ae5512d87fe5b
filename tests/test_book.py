"""The book's structure: table of contents, citations, labs' set-up cells, chapter map."""
from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from llminfra_lab.book import chapter, chapter_map_markdown, chapters

ROOT = Path(__file__).resolve().parent.parent
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
TOC_FILES = [c["file"] for part in TOC["parts"] for c in part["chapters"]]
CHAPTER_FILES = [f for f in TOC_FILES if f.startswith("chapters/")]


def test_contract_has_25_chapters_with_unique_slugs_and_modules():
    chs = chapters()
    assert [c.n for c in chs] == list(range(1, 26))
    assert len({c.slug for c in chs}) == 25
    assert len({c.module for c in chs}) == 25


def test_toc_lists_only_files_that_exist_and_each_lab_follows_its_chapter():
    for f in TOC_FILES:
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb")), f
    for f in CHAPTER_FILES:
        lab = f.replace("chapters/", "labs/")
        assert TOC_FILES[TOC_FILES.index(f) + 1] == lab, f"{lab} must follow {f} in _toc.yml"


def test_published_chapters_are_whole():
    """A chapter in the table of contents has its prose, lab, module (a file, or a package of
    the same name once it outgrows one file) and tests."""
    by_stem = {c.stem: c for c in chapters()}
    for f in CHAPTER_FILES:
        c = by_stem[Path(f).name]
        assert (ROOT / "labs" / f"{c.stem}.ipynb").exists()
        package = ROOT / "llminfra_lab"
        assert (package / f"{c.module}.py").exists() != (package / c.module / "__init__.py").exists(), (
            f"llminfra_lab.{c.module} must be one file or one package")
        assert (ROOT / "tests" / f"test_{c.module}.py").exists()


def test_every_citation_key_is_in_references_bib():
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    keys = re.findall(r"^@\w+\{([^,\s]+),", bib, re.M)
    assert len(keys) == len(set(keys)), "a key is defined twice in references.bib"
    for md in list(ROOT.glob("chapters/*.md")) + [ROOT / "intro.md"]:
        for group in re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", md.read_text(encoding="utf-8")):
            for key in group.split(","):
                assert key.strip() in keys, f"{md.name} cites unknown key {key.strip()!r}"


@pytest.mark.parametrize("lab", sorted(ROOT.glob("labs/*.ipynb")), ids=lambda p: p.name)
def test_lab_opens_with_its_title_then_the_shared_setup_cell(lab):
    """Cell 1 is the title; cell 2 is the set-up cell of tools/sync_setup_cell.py (repository URL
    from _config.yml, torch range from pyproject.toml and the Makefile), folded on the website."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import sync_setup_cell
    finally:
        sys.path.pop(0)
    cells = json.loads(lab.read_text(encoding="utf-8"))["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# Lab ")
    setup = cells[1]
    assert setup["cell_type"] == "code", f"{lab.name}: the set-up cell must follow the title"
    assert "".join(setup["source"]) == sync_setup_cell.setup_cell_source(lab.stem), f"{lab.name}: run `make sync-setup`"
    assert setup["metadata"].get("tags") == sync_setup_cell.TAGS
    assert "torch>=" + sync_setup_cell.settings()["torch_min"] in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize("lab", sorted(ROOT.glob("labs/*.ipynb")), ids=lambda p: p.name)
def test_lab_uses_nbval_cell_tags_not_comment_markers(lab):
    """CONTRIBUTING, Lab: nbval's options are cell tags, which readers do not see."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import nbval_tags
    finally:
        sys.path.pop(0)
    assert nbval_tags.markers_left(lab) == 0, f"{lab.name}: run `make nbval-tags`"


def _code_cells(lab: Path) -> list[tuple[str, str]]:
    """(source, stored text output) of each code cell of a lab."""
    cells = json.loads(lab.read_text(encoding="utf-8"))["cells"]
    out = []
    for c in cells:
        if c["cell_type"] == "code":
            text = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                           for o in c.get("outputs", []))
            out.append(("".join(c["source"]), text))
    return out


@pytest.mark.parametrize("lab", sorted(ROOT.glob("labs/*.ipynb")), ids=lambda p: p.name)
def test_lab_is_stored_for_the_reader_to_do_the_work(lab):
    """CONTRIBUTING, Lab: at least two implement-it cells, each a stub (`raise NotImplementedError`)
    followed by `labkit.check_function`, stored as "not implemented yet"; every exercise cell
    checked by `labkit.check_answer` starts from `answer = None`, stored as "not answered yet"."""
    cells = _code_cells(lab)
    checks = [i for i, (src, _) in enumerate(cells) if "labkit.check_function(" in src]
    assert len(checks) >= 2, f"{lab.name}: {len(checks)} implement-it cells, at least 2 expected"
    for i in checks:
        assert i > 0 and "raise NotImplementedError" in cells[i - 1][0], (
            f"{lab.name}: the cell before {cells[i][0]!r} must hold the stub (raise NotImplementedError)")
        assert "not implemented yet" in cells[i][1], f"{lab.name}: {cells[i][0]!r} must be stored unsolved"
    for src, text in cells:
        if "labkit.check_answer(" in src:
            assert re.search(r"^answer = None\b", src, re.M), f"{lab.name}: an answer cell is pre-filled: {src!r}"
            assert "not answered yet" in text, f"{lab.name}: {src!r} must be stored unanswered"


def test_chapter_map_links_published_chapters_and_marks_the_rest():
    table = chapter_map_markdown(ROOT)
    for c in chapters():
        assert c.title_zh in table
        published = f"chapters/{c.stem}" in CHAPTER_FILES
        assert (f"(chapters/{c.stem}.md)" in table) == published


def test_chapter_lookup_rejects_bad_numbers():
    assert chapter(2).slug == "gpu-mental-model"
    with pytest.raises(ValueError, match="between 1 and 25"):
        chapter(26)


def test_chapter_map_needs_a_book_root(tmp_path):
    with pytest.raises(ValueError, match="_toc.yml"):
        chapter_map_markdown(tmp_path)


@pytest.mark.parametrize("test_file", sorted((ROOT / "tests").glob("test_*.py")), ids=lambda p: p.name)
def test_every_pytest_raises_says_which_error_it_expects(test_file):
    """CONTRIBUTING, Tests: every `pytest.raises` has a `match=`, so a test of one error
    cannot pass on another (a TypeError from a typo, a different ValueError)."""
    bare = [node.lineno for node in ast.walk(ast.parse(test_file.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "raises"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "pytest"
            and not any(k.arg == "match" for k in node.keywords)]
    assert not bare, f"{test_file.name}: pytest.raises without match= on lines {bare}"


def test_describe_environment_names_versions_and_device():
    import llminfra_lab

    line = llminfra_lab.describe_environment()
    assert llminfra_lab.__version__ in line and "torch" in line
    assert llminfra_lab.default_device() in ("cpu", "cuda")
    assert f"device: {llminfra_lab.default_device()}" in line
