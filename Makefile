# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Both build their own virtual environment and install the CPU build of torch *first*, pinned:
# an unpinned torch pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: venv demo test lint clean

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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
