"""The website's helpers, without a browser: the local Sphinx extension (_ext/llminfra_site.py),
tools/nbval_tags.py, the shared figure style and the Binder environment.
(tests/site/ checks the built site itself in Chromium.)"""
from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
from pathlib import Path

import matplotlib
import pytest

from llminfra_lab import figures

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


site = _load(ROOT / "_ext" / "llminfra_site.py")
nbval_tags = _load(ROOT / "tools" / "nbval_tags.py")


def _notebook() -> dict:
    code = lambda src, tags=None: {"cell_type": "code", "execution_count": None, "outputs": [],
                                   "metadata": {"tags": tags} if tags else {}, "source": src}
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Lab 1: x"]},
        code(["import os\n"], ["hide-input", "setup"]),
        code(["# NBVAL_IGNORE_OUTPUT\n", "print(1)\n", "x = 2"]),
        code(["y = 3\n", "  #  NBVAL_SKIP\n"], ["keep"]),
        code(["print('# NBVAL_IGNORE_OUTPUT is only text here')"]),
    ]}


def test_nbval_tags_moves_markers_into_tags_and_is_idempotent(tmp_path):
    path = tmp_path / "lab.ipynb"
    path.write_text(json.dumps(_notebook(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert nbval_tags.markers_left(path) == 2
    assert nbval_tags.convert(path)
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    assert cells[2]["source"] == ["print(1)\n", "x = 2"]
    assert cells[2]["metadata"]["tags"] == ["nbval-ignore-output"]
    assert cells[3]["source"] == ["y = 3"] and cells[3]["metadata"]["tags"] == ["keep", "nbval-skip"]
    assert cells[4]["source"] == _notebook()["cells"][4]["source"] and "tags" not in cells[4]["metadata"]
    before = path.read_bytes()
    assert not nbval_tags.convert(path) and path.read_bytes() == before
    assert nbval_tags.markers_left(path) == 0
    assert nbval_tags.main(["--check", str(path)]) == 0


def test_nbval_tags_are_the_ones_nbval_reads():
    from nbval.plugin import comment_markers, metadata_tags

    assert set(nbval_tags.TAGS) == {m for m in comment_markers if m.startswith("NBVAL_")}
    for marker, tag in nbval_tags.TAGS.items():
        assert metadata_tags[tag] == comment_markers[marker]


def test_website_drops_the_setup_cell_and_the_markers_but_keeps_the_rest():
    nb = _notebook()
    out = json.loads(site.prepare_lab(json.dumps(nb)))
    assert "remove-cell" in out["cells"][1]["metadata"]["tags"]
    assert out["cells"][2]["source"] == ["print(1)\n", "x = 2"]
    assert out["cells"][3]["source"] == ["y = 3\n"]
    stripped = copy.deepcopy(out)
    for c in stripped["cells"]:
        c.get("metadata", {}).pop("tags", None)
    assert [c["cell_type"] for c in stripped["cells"]] == [c["cell_type"] for c in nb["cells"]]


def test_cjk_runs_are_marked_outside_tags_scripts_and_attributes():
    html = ('<p title="中文">大模型基础设施：工程师的交互式教科书 · LLM</p>'
            '<script>var s = "中文";</script><code>KV 缓存</code>')
    out = site.mark_cjk(html)
    assert '<p title="中文"><span lang="zh-CN">大模型基础设施：工程师的交互式教科书</span> · LLM</p>' in out
    assert '<script>var s = "中文";</script>' in out
    assert '<code>KV <span lang="zh-CN">缓存</span></code>' in out
    assert site.mark_cjk("plain English, no CJK") == "plain English, no CJK"


def test_duplicate_inline_scripts_are_dropped():
    class JS(str):
        def __new__(cls, filename, priority, **attributes):
            obj = super().__new__(cls, filename or "")
            obj.filename, obj.priority, obj.attributes = filename, priority, attributes
            return obj

    body = 'const THEBE_JS_URL = "x"'
    context = {"script_files": [JS(None, 500, body=body), JS("a.js", 200), JS("", 500, body=body), JS("a.js", 200)]}
    site._dedupe_scripts(None, "p", "page.html", context, None)
    assert [(s.filename, s.attributes.get("body")) for s in context["script_files"]] == [("a.js", None), (None, body)]


def test_launch_buttons_are_removed_from_pages_other_than_labs():
    def context():
        return {"header_buttons": [{"label": "launch-buttons"}, {"label": "download-buttons"}]}

    chapter, lab = context(), context()
    site._launch_buttons_on_labs_only(None, "chapters/02-gpu-mental-model", "page.html", chapter, None)
    site._launch_buttons_on_labs_only(None, "labs/02-gpu-mental-model", "page.html", lab, None)
    assert [b["label"] for b in chapter["header_buttons"]] == ["download-buttons"]
    assert len(lab["header_buttons"]) == 2


def test_the_package_applies_the_shared_figure_style():
    import llminfra_lab  # noqa: F401  (importing it applies the style)

    for key, value in figures.STYLE.items():
        assert matplotlib.rcParams[key] == value, key
    assert matplotlib.rcParams["font.size"] >= 11 and figures.SAVE_DPI >= 200 and figures.DISPLAY_SCALE == 2


def test_binder_installs_the_torch_the_labs_are_tested_with():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    tested = re.search(r"^TORCH_SPEC \?= torch==([\d.]+)", makefile, re.M).group(1)
    binder = (ROOT / "binder" / "requirements.txt").read_text(encoding="utf-8")
    assert f"torch=={tested}\n" in binder
    assert "-c ../constraints.txt" in binder and "-e .[peers]" in binder
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"


@pytest.mark.parametrize("name", ["embed.js", "README.md"])
def test_widget_manager_is_served_from_the_build(name):
    assert (ROOT / "_ext" / "static" / "jupyter-widgets" / name).is_file()
