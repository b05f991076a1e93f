# livehub: `make run` serves on 0.0.0.0:8088 with an embedded SQLite database; `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed

E2E_DEPS  := tests/e2e/node_modules/.package-lock.json
SDK_DEPS  := sdk/node_modules/.package-lock.json

.PHONY: run test lint check e2e fuzz bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUN_STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEV_STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@ $(RUN_STAMP)

$(E2E_DEPS): tests/e2e/package.json tests/e2e/package-lock.json
	cd tests/e2e && npm ci --no-audit --no-fund --silent

# the SDK's one devDependency, TypeScript, checks its declarations (tests/test_sdk.py)
$(SDK_DEPS): sdk/package.json sdk/package-lock.json
	cd sdk && npm ci --no-audit --no-fund --silent

run: $(RUN_STAMP)  ## serve (LIVEHUB_* variables configure it; see README)
	$(BIN)/livehub

test: $(DEV_STAMP) $(E2E_DEPS) $(SDK_DEPS)  ## the whole suite; browser tests need Chromium (.ci/run installs it)
	$(BIN)/pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check livehub tests
	$(BIN)/ruff format --check livehub tests
	$(BIN)/mypy

check: lint test

e2e: $(DEV_STAMP) $(E2E_DEPS)  ## only the headless-Chromium tests
	$(BIN)/pytest -m e2e tests/e2e

fuzz: $(DEV_STAMP)  ## schemathesis against /api/openapi.json
	$(BIN)/pytest -m fuzz -p no:cacheprovider tests/fuzz

bench: $(DEV_STAMP)  ## livehub vs the seed's Node server, side by side (see docs/benchmarks.md)
	bash benchmarks/run.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
