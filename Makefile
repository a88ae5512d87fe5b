# Two commands a reader needs:  make book  and  make test.
# Both create .venv with python3 (>= 3.10) and install everything pinned.
# torch is installed first from TORCH_SPEC, so nothing else can pull another build;
# override it, e.g. for the CPU wheel on a Linux laptop:
#   make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Triton matching that torch, for the chapter 3 kernels (interpreted on CPU); skipped off Linux x86-64.
TRITON_SPEC ?= triton==3.7.1; platform_system == "Linux" and platform_machine == "x86_64"
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: book test unit labs serve audit clean sync-setup

$(VENV)/.base: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is needed, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q '$(TRITON_SPEC)'
	$(PIP) install -q -e .
	touch $@

$(VENV)/.book: $(VENV)/.base pyproject.toml
	$(PIP) install -q -e ".[book]"
	touch $@

$(VENV)/.test: $(VENV)/.base pyproject.toml
	$(PIP) install -q -e ".[test,peers]"
	touch $@

## make book: build the website into _build/html (warnings are errors)
book: $(VENV)/.book
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "The book is in $(CURDIR)/_build/html/index.html  (preview: make serve)"

## make test: unit tests, then every lab re-executed and compared under nbval
test: $(VENV)/.test
	$(PY) -m pytest --nbval --nbval-sanitize-with labs/sanitize.cfg tests labs

unit: $(VENV)/.test
	$(PY) -m pytest tests

labs: $(VENV)/.test
	$(PY) -m pytest --nbval labs --nbval-sanitize-with labs/sanitize.cfg

## make serve: preview the built book at http://localhost:8000
serve:
	$(PYTHON) -m http.server 8000 --directory _build/html

## make sync-setup: write every lab's set-up cell from tools/sync_setup_cell.py
## (repository URL from _config.yml, torch range from pyproject.toml and TORCH_SPEC)
sync-setup: $(VENV)/.base
	$(PY) tools/sync_setup_cell.py

clean:
	rm -rf _build .pytest_cache
