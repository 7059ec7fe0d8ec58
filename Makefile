# Set-up and everyday commands. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Extra flags for the benchmark, e.g. BENCH_ARGS="--quick" (or BENCH_QUICK=1).
BENCH_ARGS ?=

.PHONY: dev serve test bench bench-peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

$(VENV)/.installed: $(BIN)/python setup.cfg setup.py
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

dev: $(VENV)/.installed

serve: dev
	$(BIN)/python -m frontauth serve

test: dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(VENV)/.bench-installed: $(VENV)/.installed setup.cfg
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

# frontauth alone, on the memory, Redis and SQLite drivers; see bench/README.md.
bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

# The same beside node-oidc-provider, FastMCP and a bare aiohttp handler,
# which the benchmark installs into bench/.cache on first use.
bench-peers: $(VENV)/.bench-installed
	$(BIN)/python -m bench --peers $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
