# AgentHub: two commands for a new machine.
#   make run    create .venv, install, start the demo upstream and the hub on 127.0.0.1:8787
#   make test   create .venv, install (with test tools), lint, type-check, run the test suite with branch coverage
#               (fails under the floor in pyproject.toml; processes the tests start are measured too)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= examples/quickstart.toml
PYTEST_ARGS ?=

export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test lint typecheck install test-tools bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@# `agenthub serve` runs under -OO: its bytecode (*.opt-2.pyc) is compiled once here, not at every start
	$(BIN)/python -m compileall -q -o 2 -j 0 $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') hub connectors llm sandbox http1 >/dev/null
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@scripts/quickstart $(CONFIG)

test-tools:
	@scripts/install-test-tools

lint: $(STAMP)
	$(BIN)/ruff check .
	@# ASYNC119 (a yield inside a context manager of an async generator) is a preview rule: it runs only when
	@# selected by name with --preview. A cancel scope open across a yield cancels the stream's reader.
	$(BIN)/ruff check --preview --select ASYNC119 hub/executors
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/basedpyright

test: $(STAMP) test-tools lint typecheck
	$(BIN)/pytest -n 2 --dist loadgroup --cov --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

bench: $(STAMP) test-tools
	$(BIN)/python bench/mcp_bench.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache .coverage .coverage.*
