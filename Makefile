# Medihaven — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
GATEWAY_URL ?= http://127.0.0.1:8000
NPM ?= npm
WEB := frontend
WEB_MODULES := $(WEB)/node_modules/.package-lock.json
WEB_BUILD := $(WEB)/dist/index.html
WEB_SOURCES := $(shell find $(WEB)/src -type f 2>/dev/null) $(WEB)/index.html $(WEB)/package.json \
	$(WEB)/vite.config.ts $(WEB)/tsconfig.json $(WEB)/tsconfig.test.json

.PHONY: install run test lint pytest webtest web bench contracts clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

## web: build the browser app into frontend/dist (npm ci only when the lock file changed)
web: $(WEB_BUILD)

$(WEB_MODULES): $(WEB)/package-lock.json
	@command -v $(NPM) >/dev/null || { echo "npm is missing: the web app needs Node.js 20.19+ and npm" >&2; exit 1; }
	cd $(WEB) && $(NPM) ci --no-audit --no-fund

$(WEB_BUILD): $(WEB_MODULES) $(WEB_SOURCES)
	cd $(WEB) && $(NPM) run build

## run: build the web app, start every service and the gateway (development mode); Ctrl-C stops them all
run: install web
	@$(BIN)/python -m mesh.preflight
	@echo ""
	@echo "  Medihaven web app: open $(GATEWAY_URL)/ in your browser"
	@echo "  (API: $(GATEWAY_URL)/api/v1, mesh health: $(GATEWAY_URL)/api/v1/health/mesh)"
	@echo "  First run: '$(BIN)/medihaven admin bootstrap' in another terminal gives the first"
	@echo "  administrator's registration token; register with it in the web app."
	@echo ""
	@PATH="$(CURDIR)/$(BIN):$$PATH" MEDIHAVEN_DEV_MODE=$${MEDIHAVEN_DEV_MODE:-true} \
		MEDIHAVEN_LOG_FORMAT=$${MEDIHAVEN_LOG_FORMAT:-console} \
		exec $(BIN)/honcho -f deploy/Procfile -d . start

## test: lint, type-check, the web app's unit tests, and the whole test suite (browser
## tests included) against real RabbitMQ/MariaDB/Redis
test: lint webtest pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

## webtest: type-check the web app and run its Vitest suite (vectors shared with pytest)
webtest: $(WEB_MODULES)
	cd $(WEB) && $(NPM) run typecheck && $(NPM) test

pytest: install web
	$(BIN)/pytest

## bench: performance benchmarks (not tests); prints tables, writes bench/results/*.json
bench: install
	$(BIN)/python -m bench

## contracts: write the AsyncAPI document of every queue, method and event
contracts: install
	$(BIN)/python -m contracts.asyncapi > contracts/asyncapi.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(WEB)/node_modules $(WEB)/dist
