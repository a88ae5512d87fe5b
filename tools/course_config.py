"""Write the configuration of the course build (`make book-course`) from _config.yml.

The course build is the book without solutions, for a graded course: sphinx-exercise's
`hide_solutions` is switched on, Sphinx copies no page sources into the site (the copied
Markdown and notebooks would carry the solutions), the download buttons that point at those
sources are switched off, and the chapters' executed notebooks come from the cache that
`make book` filled (`execute.cache`), so nothing is executed again.

    python tools/course_config.py _config.yml _build/course/_config.yml
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from jupyter_book.config import yaml_to_sphinx

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "_build" / ".jupyter_cache"   # where `make book` keeps its executed notebooks


def course_config(config: dict) -> dict:
    """The book's configuration, changed for the course build."""
    config = dict(config)
    config["execute"] = {**config.get("execute", {}), "cache": str(CACHE)}
    sphinx = dict(config.get("sphinx", {}))
    # Jupyter Book 1 has no key for the theme's download button: give the theme options it
    # would derive from _config.yml, plus that one switch.
    theme = json.loads(json.dumps(yaml_to_sphinx(config)[0].get("html_theme_options", {})))
    theme["use_download_button"] = False
    # The course configuration lives elsewhere: local extensions by absolute path.
    sphinx["local_extensions"] = {name: str((ROOT / path).resolve())
                                  for name, path in sphinx.get("local_extensions", {}).items()}
    sphinx["config"] = {**sphinx.get("config", {}), "hide_solutions": True, "html_copy_source": False,
                        "html_theme_options": theme}
    config["sphinx"] = sphinx
    return config


def main(source: str, target: str) -> None:
    config = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_text(yaml.safe_dump(course_config(config), allow_unicode=True, sort_keys=False),
                            encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
