# Two commands a reader needs:  make book  and  make test.
# Both create .venv with python3 (>= 3.11) and install everything pinned:
# torch first from TORCH_SPEC, so nothing else can pull another build, then the package
# and its extras at the exact versions of constraints.txt (refresh: make constraints).
# Override the torch spec, e.g. for the CPU wheel on a Linux laptop:
#   make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Triton matching that torch, for the chapter 3 kernels (interpreted on CPU); skipped off Linux x86-64.
TRITON_SPEC ?= triton==3.7.1; platform_system == "Linux" and platform_machine == "x86_64"
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Every install after torch's: the pinned versions, and the torch already installed, so
# that no package can pull another torch. (A `-c` given here adds to any `constraint` in
# pip's configuration files; it does not replace it.)
PINNED := -c constraints.txt -c $(VENV)/torch-pin.txt
NBVAL := --nbval --nbval-sanitize-with labs/sanitize.cfg
# Developers' loop: what `make fast` leaves out (both markers are registered in pyproject.toml).
FAST_MARKERS := not slow and not distributed

.PHONY: book book-course site-test test unit fast labs labs-portable lint serve sync-setup nbval-tags constraints clean

# The environment: torch from TORCH_SPEC, then triton, then the package, all pinned.
$(VENV)/.base: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed (constraints.txt pins packages that need it), found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	$(PY) -c 'import importlib.metadata as m; print("torch==" + m.version("torch"))' > $(VENV)/torch-pin.txt
	$(PIP) install -q $(PINNED) '$(TRITON_SPEC)'
	$(PIP) install -q $(PINNED) -e .
	touch $@

$(VENV)/.book: $(VENV)/.base
	$(PIP) install -q $(PINNED) -e ".[book]"
	touch $@

# The book extra too: tests/test_site_files.py tests the site's Sphinx extension.
$(VENV)/.test: $(VENV)/.base
	$(PIP) install -q $(PINNED) -e ".[book,test,peers,rag,serve,browser]"
	touch $@

## make book: build the website into _build/html (warnings are errors)
book: $(VENV)/.book
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "The book is in $(CURDIR)/_build/html/index.html  (preview: make serve)"

## make book-course: the book for a graded course, without solutions, into
## _build/course/_build/html: sphinx-exercise's hide_solutions on and no page sources copied
## (config from tools/course_config.py), reusing the notebooks `make book` executed and cached
## (after it, a few minutes); then tests/site/test_course_build.py checks that no chapter's
## solution text is anywhere in that build and that _build/html shows every one.
book-course: $(VENV)/.book $(VENV)/.test
	@test -f _build/html/intro.html || $(MAKE) book
	$(PY) tools/course_config.py _config.yml _build/course/_config.yml
	$(VENV)/bin/jupyter-book build . --config _build/course/_config.yml --path-output _build/course -W -n --keep-going
	LLMINFRA_COURSE_SITE=_build/course/_build/html $(PY) -m pytest tests/site/test_course_build.py
	@echo "The course site is in $(CURDIR)/_build/course/_build/html/index.html"

## make site-test: the built website in headless Chromium with every other host blocked
## (tests/site/: console errors, failed requests, links, images, math, widgets, search,
## launch buttons, a 390 px phone); builds the book first if _build/html is missing.
## Needs Debian's chromium on PATH (apt-get install -y chromium); never `playwright install`.
## Screenshots of key pages, light and dark, go to _build/site-screenshots/.
site-test: $(VENV)/.test
	@test -f _build/html/intro.html || $(MAKE) book
	LLMINFRA_SITE=_build/html $(PY) -m pytest tests/site

## make test: every unit test, then every lab re-executed and compared under nbval
test: $(VENV)/.test
	$(PY) -m pytest --durations=15 $(NBVAL) tests labs

## make unit: every unit test (slow and distributed ones included)
unit: $(VENV)/.test
	$(PY) -m pytest tests

## make fast: the unit tests without those marked slow or distributed, for development
fast: $(VENV)/.test
	$(PY) -m pytest -m "$(FAST_MARKERS)" tests

## make labs: every lab re-executed and compared with its stored outputs
labs: $(VENV)/.test
	$(PY) -m pytest $(NBVAL) labs

## make labs-portable: the labs again, with torch's portable CPU kernels (no AVX2/AVX-512),
## so an output that depends on the CPU's kernels fails here as on another machine
labs-portable: $(VENV)/.test
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest $(NBVAL) labs

## make lint: ruff, configured in pyproject.toml, over the package, tests, tools and labs
lint: $(VENV)/.lint
	$(VENV)/bin/ruff check .

# ruff alone, at its pinned version, so that lint runs before the full environment exists
$(VENV)/.lint: constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt ruff
	touch $@

## make serve: preview the built book at http://localhost:8000
serve:
	$(PYTHON) -m http.server 8000 --directory _build/html

## make sync-setup: write every lab's set-up cell from tools/sync_setup_cell.py
## (repository URL from _config.yml, torch range from pyproject.toml and TORCH_SPEC)
sync-setup: $(VENV)/.base
	$(PY) tools/sync_setup_cell.py

## make nbval-tags: move nbval's comment markers (# NBVAL_IGNORE_OUTPUT) of every lab into
## cell tags (nbval-ignore-output), which the website does not show
nbval-tags: $(VENV)/.base
	$(PY) tools/nbval_tags.py

## make constraints: resolve the newest versions pyproject.toml allows beside TORCH_SPEC in
## a scratch environment and write them to constraints.txt; then run make test and make
## book, and commit constraints.txt if both pass
constraints:
	rm -rf $(VENV)-constraints
	$(PYTHON) -m venv $(VENV)-constraints
	$(VENV)-constraints/bin/python -m pip install -q --upgrade pip
	$(VENV)-constraints/bin/python -m pip install -q $(TORCH_SPEC)
	$(VENV)-constraints/bin/python -c 'import importlib.metadata as m; print("torch==" + m.version("torch"))' \
		> $(VENV)-constraints/torch-pin.txt
	$(VENV)-constraints/bin/python -m pip install -q -c $(VENV)-constraints/torch-pin.txt '$(TRITON_SPEC)'
	$(VENV)-constraints/bin/python -m pip install -q -c $(VENV)-constraints/torch-pin.txt -e ".[book,test,peers,rag,serve,browser]"
	$(VENV)-constraints/bin/python tools/write_constraints.py constraints.txt
	rm -rf $(VENV)-constraints
	@echo "constraints.txt rewritten; now run: make test book   (then commit constraints.txt)"

clean:
	rm -rf _build .pytest_cache
