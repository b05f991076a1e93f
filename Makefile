# livehub: `make run` serves on 0.0.0.0:8088 with an embedded SQLite database; `make test`.
# Every install comes from the lock files in requirements/ (exact versions with hashes, made by
# `make lock` from setup.cfg's ranges): a new release upstream changes nothing here until a
# commit refreshes the lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BUILD_STAMP := $(VENV)/.build-installed
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed
LOCKS := requirements/build.txt requirements/runtime.txt requirements/dev.txt
PIP_LOCKED := $(BIN)/python -m pip install -q --require-hashes --no-deps
# livehub itself, from this checkout: no build isolation, so the locked setuptools builds it
PIP_SELF := $(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
UV_COMPILE := $(BIN)/uv pip compile --universal --python-version 3.11 --generate-hashes \
	--quiet --custom-compile-command "make lock"

E2E_DEPS  := tests/e2e/node_modules/.package-lock.json
SDK_DEPS  := sdk/node_modules/.package-lock.json

.PHONY: run migrate-db cluster test lint lint-latest check e2e fuzz bench lock clean

ARGS    ?=
WORKERS ?= 2

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BUILD_STAMP): requirements/build.txt | $(BIN)/python
	$(PIP_LOCKED) -r requirements/build.txt
	touch $@

$(RUN_STAMP): setup.cfg pyproject.toml requirements/runtime.txt $(BUILD_STAMP)
	$(PIP_LOCKED) -r requirements/runtime.txt
	$(PIP_SELF)
	touch $@

$(DEV_STAMP): setup.cfg pyproject.toml requirements/dev.txt $(BUILD_STAMP)
	$(PIP_LOCKED) -r requirements/dev.txt
	$(PIP_SELF)
	touch $@ $(RUN_STAMP)

$(E2E_DEPS): tests/e2e/package.json tests/e2e/package-lock.json
	cd tests/e2e && npm ci --no-audit --no-fund --silent

# the SDK's one devDependency, TypeScript, checks its declarations (tests/test_sdk.py)
$(SDK_DEPS): sdk/package.json sdk/package-lock.json
	cd sdk && npm ci --no-audit --no-fund --silent

run: $(RUN_STAMP)  ## serve (LIVEHUB_* variables configure it; see README); flags: make run ARGS="--port 9000"
	$(BIN)/livehub $(ARGS)

# the CLI as the docs show it, from a checkout (livehub is in .venv/bin, not on PATH)
migrate-db: $(RUN_STAMP)  ## copy an embedded database into PostgreSQL: make migrate-db ARGS="--from livehub.db"
	$(BIN)/livehub migrate-db $(ARGS)

cluster: $(RUN_STAMP)  ## cluster mode, WORKERS processes on one port (needs LIVEHUB_DATABASE_URL and LIVEHUB_REDIS_URL)
	$(BIN)/livehub --workers $(WORKERS) $(ARGS)

test: $(DEV_STAMP) $(E2E_DEPS) $(SDK_DEPS)  ## the whole suite; browser tests need Chromium (.ci/run installs it)
	$(BIN)/pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check livehub tests
	$(BIN)/ruff format --check livehub tests
	$(BIN)/mypy

check: lint test

# Informative, not part of .ci/run: the same lint against the newest releases setup.cfg allows
# (unlocked, in a virtualenv of its own), to see what the next `make lock` would bring.
lint-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip
	.venv-latest/bin/pip install -q -e ".[test,lint]"
	.venv-latest/bin/ruff check livehub tests
	.venv-latest/bin/mypy

# Upgrading is a deliberate step: refresh every lock to the newest versions setup.cfg allows,
# then review the diff, run `make check` and commit (tests/test_lock.py checks the locks
# against setup.cfg). runtime.txt is resolved within dev.txt, so both pin the same versions.
lock: $(DEV_STAMP)
	$(UV_COMPILE) --upgrade setup.cfg --extra dev -o requirements/dev.txt
	$(UV_COMPILE) --upgrade setup.cfg -c requirements/dev.txt -o requirements/runtime.txt
	$(UV_COMPILE) --upgrade requirements/build.in -o requirements/build.txt

e2e: $(DEV_STAMP) $(E2E_DEPS)  ## only the headless-Chromium tests
	$(BIN)/pytest -m e2e tests/e2e

fuzz: $(DEV_STAMP)  ## schemathesis against /api/openapi.json
	$(BIN)/pytest -m fuzz -p no:cacheprovider tests/fuzz

bench: $(DEV_STAMP)  ## livehub vs the seed's Node server, side by side (see docs/benchmarks.md)
	bash benchmarks/run.sh

clean:
	rm -rf $(VENV) .venv-latest .pytest_cache .mypy_cache .ruff_cache
