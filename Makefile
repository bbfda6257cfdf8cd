# Paywalls: `make run` (local stack) and `make test` (whole suite). Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
JS_DIR := tests/js
PORT ?= 8000

.PHONY: run test test-aws lint bench deps deps-dev clean openapi

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

test: deps-dev lint
	$(VENV)/bin/pytest

# docs/openapi.json from the user and admin apps (tests/test_openapi_doc.py fails when it drifts).
openapi: deps
	$(PY) -m paywalls.openapi_doc --output docs/openapi.json

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
