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

.PHONY: run test test-fast test-deps browser test-aws lint bench docs docs-serve deps deps-dev clean sam-events verify-deploy openapi

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

# The browser tests of the hosted pages (tests/test_pages_browser.py) drive Debian's Chromium through
# its chromedriver. Installed only when either is missing, so running this again changes nothing.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser:
	@if [ ! -x $(CHROMIUM) ] || [ ! -x $(CHROMEDRIVER) ]; then \
		echo "installing chromium and chromium-driver (browser tests)"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver; \
	fi

# Everything `make test` needs: the dev virtualenv, the SAM CLI, the npm client tests, the browser.
test-deps: deps-dev browser

run: deps
	PORT=$(PORT) $(PY) -m devserver

# ruff, then the package's layer contracts (pyproject.toml [tool.importlinter], docs/DESIGN.md "Layout").
lint: $(VENV)/.deps-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# The suite spread over pytest-xdist workers, one per CPU (PYTEST_WORKERS=0: one process). loadscope
# keeps a module's tests on one worker, so a module-scoped fixture is built once (`sam build --cached`
# must not run twice at once on .aws-sam/cache; a module's own local stack is not started twice).
# loadgroup would be finer, but pytest-xdist 3.8 does not group on pytest 9.2 (pytest-xdist#1386).
PYTEST_WORKERS ?= auto
# Schemathesis runs in a pytest of its own, without xdist: under pytest-xdist only one of its
# generated tests (one per API operation) reports, the others are silently lost (tests/conftest.py
# refuses that combination).
test: test-deps lint
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadscope --ignore=tests/test_api_schema.py
	$(VENV)/bin/pytest -p no:xdist tests/test_api_schema.py

# The fast loop: the unit tier (tests/conftest.py: pure code, moto in-process, the apps in-process, the
# in-process stack); no local stack or engine process, no SAM CLI. The ledger's stateful property test
# runs 15 random sequences instead of 60 (`make test` runs them all).
test-fast: lint
	LEDGER_EXAMPLES=15 $(VENV)/bin/pytest -m unit -n $(PYTEST_WORKERS) --dist loadscope

# The documentation site (mkdocs.yml, docs/): --strict fails on a broken link, page or snippet, as
# tests/test_docs.py does. docs-serve: http://127.0.0.1:8001 with live reload.
docs: $(VENV)/.deps-dev
	$(VENV)/bin/mkdocs build --strict

docs-serve: $(VENV)/.deps-dev
	$(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8001

# docs/openapi.json from the user and admin apps (tests/test_openapi_doc.py fails when it drifts).
openapi: deps
	$(PY) -m paywalls.http.openapi_doc --output docs/openapi.json

# Opt-in: the ledger's concurrency suite against a deployed stack's real DynamoDB table, with your AWS
# credentials: make test-aws TABLE=<TableName output>
test-aws: $(VENV)/.deps-dev
	@test -n "$(TABLE)" || (echo "usage: make test-aws TABLE=<TableName output of the stack>"; exit 2)
	PAYWALLS_TEST_DYNAMODB_TABLE=$(TABLE) $(VENV)/bin/pytest tests/test_ledger_concurrency.py

# `sam local invoke` against `make run` (README "sam local invoke"): start the stack with
# PAYWALLS_ENGINE_PORT=4566 first; this writes the sample events, filled in, to .paywalls/sam-events/.
sam-events: deps
	$(PY) -m devserver.sam_events

# After `sam deploy`: a throwaway paywall, key, deposit and two chats through the OpenAI SDK against the
# deployed stack, checked against its ledger, then cleaned up (README "Operate"). Your AWS credentials.
verify-deploy: $(VENV)/.deps-dev
	@test -n "$(STACK)" || (echo "usage: make verify-deploy STACK=<stack name> [REGION=...]"; exit 2)
	$(PY) -m ops.verify_deploy --stack "$(STACK)" $(if $(REGION),--region "$(REGION)")

bench: deps
	$(PY) benchmarks/proxy_overhead.py
	$(PY) benchmarks/cold_start.py
	$(PY) benchmarks/local_engine.py
	$(PY) benchmarks/analytics.py --quick

clean:
	rm -rf .aws-sam .paywalls .pytest_cache site .artifacts
