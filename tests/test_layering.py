"""The package's layering and size rules (CONTRIBUTING.md, "Module").

- A chapter's module imports only the spine and the modules of earlier chapters, in the
  order of `llminfra_lab/assets/chapters.yml`; the spine imports no chapter.
- `llminfra_lab/exercises/<module>.py` imports no chapter later than `<module>`'s.
- Imports of the package and of the standard library sit at the top of a module, not
  inside functions (optional third-party packages may be imported where used).
- No file of the package is longer than about 500 lines.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from llminfra_lab import book

PACKAGE = Path(__file__).resolve().parents[1] / "llminfra_lab"
SPINE = {"__init__", "checks", "hardware", "catalog", "data", "tokenizer", "model", "precision",
         "memory", "launch", "labkit", "book", "figures", "shipped"}
# Modules that belong to a chapter without being its `module` in chapters.yml.
# `cli` (and `python -m llminfra_lab`, its `__main__`) is the command-line companion: it sits
# after the last chapter, so it may import any chapter, and no chapter imports it.
COMPANION = max(c.n for c in book.chapters()) + 1
EXTRA = {"attention": 3, "cli": COMPANION, "__main__": COMPANION}
CHAPTER_OF = {**{c.module: c.n for c in book.chapters()}, **EXTRA}
MAX_LINES = 520
FILES = sorted(p for p in PACKAGE.rglob("*.py"))


def _owner(path: Path) -> tuple[str, int | None]:
    """(top-level module, chapter number or None for the spine) of a file of the package."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[0] == "exercises":
        if len(parts) == 1 or parts[1] == "__init__":
            return "exercises", None
        return parts[1], CHAPTER_OF[parts[1]]
    top = parts[0]
    if top in SPINE:
        return top, None
    if top not in CHAPTER_OF:
        raise AssertionError(f"{path}: module {top!r} is neither spine nor a chapter's (chapters.yml or EXTRA)")
    return top, CHAPTER_OF[top]


def _imported_modules(node: ast.AST, path: Path) -> list[str]:
    """Top-level llminfra_lab modules an import statement names."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if isinstance(node, ast.Import):
        return [a.name.split(".")[1] for a in node.names if a.name.startswith("llminfra_lab.")]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:                                   # relative: resolve against this file's package
        base = list(parts[:-1])[: len(parts) - node.level] if node.level > 1 else list(parts[:-1])
        target = base + (node.module.split(".") if node.module else [])
    elif node.module and (node.module == "llminfra_lab" or node.module.startswith("llminfra_lab.")):
        target = node.module.split(".")[1:]
    else:
        return []
    if target:
        return [target[0]] if target[0] != "exercises" else [target[1]] if len(target) > 1 else []
    return [a.name for a in node.names]              # from llminfra_lab import x, y


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_respect_the_chapter_order(path):
    top, chapter = _owner(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        for name in _imported_modules(node, path):
            if name == top or name in SPINE or name == "exercises":
                continue
            assert name in CHAPTER_OF, f"{path.name} imports unknown module llminfra_lab.{name}"
            if chapter is None:
                raise AssertionError(f"spine module {top} imports chapter {CHAPTER_OF[name]}'s {name}")
            assert CHAPTER_OF[name] <= chapter, (
                f"{top} (chapter {chapter}) imports {name} from a later chapter ({CHAPTER_OF[name]})")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_package_and_stdlib_imports_are_at_the_top(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["llminfra_lab" if node.level else (node.module or "")]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                assert root != "llminfra_lab" and root not in sys.stdlib_module_names, (
                    f"{path.name}:{node.lineno} imports {name} inside {func.name}(); move it to the top")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_files_stay_readable_in_one_sitting(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines; split it (CONTRIBUTING.md)"
