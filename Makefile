# Paywalls: `make run` (local stack), `make test` (whole suite) and `make test-fast` (the unit tier).
# All install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
JS_DIR := tests/js
PORT ?= 8000

.PHONY: run test test-fast test-aws lint bench deps deps-dev clean

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamps re-run pip only when the dependency list changes.
$(VENV)/.deps-local: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[local]'
	@touch $@

$(VENV)/.deps-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.deps-local

# aws-sam-cli pins versions that clash with moto's, so it lives in its own virtualenv.
$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==1.170.0

$(JS_DIR)/node_modules/.package-lock.json: $(JS_DIR)/package.json
	cd $(JS_DIR) && npm install --no-audit --no-fund --silent
	@touch $@

deps: $(VENV)/.deps-local
# The npm client tests exist only once tests/js/package.json does.
JS_DEPS := $(if $(wildcard $(JS_DIR)/package.json),$(JS_DIR)/node_modules/.package-lock.json)

deps-dev: $(VENV)/.deps-dev $(SAM) $(JS_DEPS)

run: deps
	PORT=$(PORT) $(PY) -m devserver

lint: $(VENV)/.deps-dev
	$(VENV)/bin/ruff check .

# The suite spread over pytest-xdist workers, one per CPU (PYTEST_WORKERS=0: one process). loadscope
# keeps a module's tests on one worker, so a module-scoped fixture is built once (`sam build --cached`
# must not run twice at once on .aws-sam/cache; a module's own local stack is not started twice).
# loadgroup would be finer, but pytest-xdist 3.8 does not group on pytest 9.2 (pytest-xdist#1386).
PYTEST_WORKERS ?= auto
test: deps-dev lint
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadscope

# The fast loop: the unit tier (tests/conftest.py: pure code, moto in-process, the apps in-process, the
# in-process stack); no local stack or engine process, no SAM CLI. The ledger's stateful property test
# runs 15 random sequences instead of 60 (`make test` runs them all).
test-fast: $(VENV)/.deps-dev
	$(VENV)/bin/ruff check .
	LEDGER_EXAMPLES=15 $(VENV)/bin/pytest -m unit -n $(PYTEST_WORKERS) --dist loadscope

# Opt-in: the ledger's concurrency suite against a deployed stack's real DynamoDB table, with your AWS
# credentials: make test-aws TABLE=<TableName output>
test-aws: $(VENV)/.deps-dev
	@test -n "$(TABLE)" || (echo "usage: make test-aws TABLE=<TableName output of the stack>"; exit 2)
	PAYWALLS_TEST_DYNAMODB_TABLE=$(TABLE) $(VENV)/bin/pytest tests/test_ledger_concurrency.py

bench: deps
	$(PY) benchmarks/proxy_overhead.py
	$(PY) benchmarks/cold_start.py

clean:
	rm -rf .aws-sam .paywalls .pytest_cache
