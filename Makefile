# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Both build their own virtual environment and install the CPU build of torch *first*, pinned:
# an unpinned torch pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: venv demo test lint check-docs clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e ".[dev,ray]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/influcoder demo

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports --no-cache

test: venv lint
	$(BIN)/python -m pytest -q

# Every figure table of docs/results (and benchmarks/results) recomputed from its committed JSON; fails on a
# mismatch, naming the page, the cell, the printed value and the recomputed one (scripts/check_docs.py).
check-docs: venv
	$(BIN)/python scripts/check_docs.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
