# One entry point for people and CI. `make demo` and `make test` work on a fresh machine
# that has Python 3.11: they create .venv and install what they need first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The peers Charter is compared with (DBOS, LangGraph, Temporal) live in their own
# environment, so they never shape the versions Charter itself is tested with.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: install demo test lint format typecheck pytest bench chaos mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	./scripts/ensure-postgres
	touch $(STAMP)

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/charter demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

format: $(STAMP)
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -n 2

test: lint typecheck pytest

# Every benchmark in one run, Charter beside its peers; rewrites BENCHMARKS.md's results.
bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python -m bench all --write

chaos: $(STAMP)
	$(BIN)/python -m bench.chaos --runs 1000

# Small deliberate bugs in the security-critical modules, each run against the tests that must
# catch it; prints the score per module and every survivor (see docs/mutation.md). Slow: hours.
mutation: $(STAMP)
	$(BIN)/python scripts/mutate.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) .charter .pytest_cache .mypy_cache .ruff_cache
