"""Local Sphinx extension: small fixes to the website that the theme and its extensions lack.

Loaded from `_config.yml` (`sphinx.local_extensions`). Each fix says why it exists:

- **Duplicate inline scripts.** Sphinx 7 keeps an inline `<script>` that an extension adds
  while reading documents (sphinx-thebe's settings, sphinx-togglebutton's selector) in both
  its registry and the builder's list, so every page declared `const THEBE_JS_URL` twice
  and threw `SyntaxError: Identifier 'THEBE_JS_URL' has already been declared`. We keep
  the first copy of every script on a page.
- **Launch buttons only on lab pages.** sphinx-book-theme puts Colab/Binder buttons on every
  page with a kernelspec, so chapters (MyST notebooks) sent Colab a `.md` file it cannot
  open. Only `labs/*.ipynb` keep them; a chapter links to its lab instead.
- **Labs open with their title.** The set-up cell (tagged `setup` by
  `tools/sync_setup_cell.py`) is dropped from the website, where the package is already
  installed; Colab and Binder ignore the tag and run it. nbval's comment markers
  (`# NBVAL_IGNORE_OUTPUT`), which mean nothing to a reader, are removed from the page
  too (`tools/nbval_tags.py` turns them into cell tags in the notebooks).
- **MathJax only where there is math.** Sphinx counts a page's toctree children, so the
  root page loaded MathJax for the whole book; it now loads only where the page has TeX.
- **A first visit logs no error.** pydata-sphinx-theme needs `default_mode`; unset, it
  logged "Got invalid theme mode" to the console on every first visit.
- **Widgets and math offline.** `_ext/static/` (the Jupyter widgets' HTML manager, see its
  README) is added to the build's `_static/` here rather than kept in `_static/`, because
  Jupyter Book links every `.js` under `_static/` into every page.
- **Chinese text carries `lang="zh-CN"`.** Runs of CJK characters in a page's body are
  wrapped in `<span lang="zh-CN">`, so browsers pick a CJK font (`_static/llminfra.css`
  lists them) and screen readers a Chinese voice, without marking up every chapter.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

# nbval's comment markers (nbval.plugin.comment_markers), removed from the page
NBVAL_MARKER = re.compile(r"^\s*#\s*NBVAL_(IGNORE_OUTPUT|CHECK_OUTPUT|RAISES_EXCEPTION|SKIP)\s*$")
SETUP_TAG = "setup"
STATIC = Path(__file__).resolve().parent / "static"

# CJK ideographs, kana, CJK and full-width punctuation; a run starts and ends on one of them
_CJK = "\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef"
CJK_RUN = re.compile(f"[{_CJK}](?:[{_CJK}\\s·]*[{_CJK}])?")
_TAG = re.compile(r"(<[^>]*>)")
_RAW_ELEMENTS = ("script", "style", "textarea")


def mark_cjk(html: str) -> str:
    """`html` with every run of CJK text (outside tags, scripts and styles) in <span lang="zh-CN">."""
    out, raw = [], None
    for piece in _TAG.split(html):
        if piece.startswith("<"):
            name = re.match(r"</?\s*([a-zA-Z0-9]+)", piece)
            name = name.group(1).lower() if name else ""
            if raw is None and name in _RAW_ELEMENTS and not piece.startswith("</") and not piece.endswith("/>"):
                raw = name
            elif raw == name and piece.startswith("</"):
                raw = None
            out.append(piece)
        elif raw is None and piece:
            out.append(CJK_RUN.sub(lambda m: f'<span lang="zh-CN">{m.group(0)}</span>', piece))
        else:
            out.append(piece)
    return "".join(out)


def prepare_lab(source: str) -> str:
    """A lab's JSON for the website: set-up cell removed, nbval comment markers dropped."""
    nb = json.loads(source)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if SETUP_TAG in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        lines = cell["source"] if isinstance(cell["source"], list) else cell["source"].splitlines(keepends=True)
        kept = [line for line in lines if not NBVAL_MARKER.match(line)]
        if len(kept) != len(lines):
            cell["source"] = kept
    return json.dumps(nb, ensure_ascii=False)


def _source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    if docname.startswith("labs/") and str(app.env.doc2path(docname)).endswith(".ipynb"):
        source[0] = prepare_lab(source[0])


def _dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for js in sorted(scripts, key=lambda js: getattr(js, "priority", 500)):
        # an inline script is registered once with filename None and copied again with ""
        key = (getattr(js, "filename", js) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def _mathjax_only_with_math(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    """Sphinx's MathJax goes on a page whose toctree children have math (the root page
    lists every chapter); keep it only where the page itself has some."""
    if app.env.get_domain("math").data["has_equations"].get(pagename):
        return
    scripts = context.get("script_files")
    if isinstance(scripts, list):
        path = app.config.mathjax_path   # the builder lists it as _static/<mathjax_path>
        scripts[:] = [js for js in scripts if not str(getattr(js, "filename", js) or "").endswith(path)
                      and not getattr(js, "attributes", {}).get("body", "").startswith("window.MathJax")]


def _theme_mode(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    # pydata-sphinx-theme reads the reader's choice from localStorage, falling back on
    # `default_mode`; unset, a first visit logs "Got invalid theme mode" as a console error.
    context.setdefault("default_mode", "auto")


def _launch_buttons_on_labs_only(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    if pagename.startswith("labs/"):
        return
    buttons = context.get("header_buttons")
    if isinstance(buttons, list):
        buttons[:] = [b for b in buttons if b.get("label") != "launch-buttons"]


def _mark_cjk(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree) -> None:
    if isinstance(context.get("body"), str):
        context["body"] = mark_cjk(context["body"])


def _add_static(app: Sphinx, config) -> None:
    config.html_static_path.append(str(STATIC))


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _add_static)
    app.connect("source-read", _source_read)
    # after sphinx-book-theme's add_launch_buttons (priority 501)
    app.connect("html-page-context", _launch_buttons_on_labs_only, priority=900)
    app.connect("html-page-context", _mark_cjk, priority=900)
    app.connect("html-page-context", _theme_mode, priority=900)
    # after sphinx.ext.mathjax's install_mathjax (priority 500)
    app.connect("html-page-context", _mathjax_only_with_math, priority=900)
    # last, after every extension has added its scripts for the page
    app.connect("html-page-context", _dedupe_scripts, priority=1000)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
