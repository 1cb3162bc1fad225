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
FHIR_VALIDATOR := tests/fhir/node_modules/.package-lock.json
WEB_SOURCES := $(shell find $(WEB)/src -type f 2>/dev/null) $(WEB)/index.html $(WEB)/package.json \
	$(WEB)/vite.config.ts $(WEB)/tsconfig.json $(WEB)/tsconfig.test.json

API_TYPES := $(WEB)/src/shared/api/schema.ts
OPENAPI_TS := $(NPM) exec --prefix $(WEB) -- openapi-typescript

.PHONY: install upgrade run stop-servers test lint weblint api-types api-check pytest webtest web bench fuzz contracts clean \
	cluster cluster-down cluster-rabbitmq cluster-rabbitmq-down

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

## upgrade: resolve pyproject.toml's ranges afresh into requirements.lock (then: make test)
upgrade:
	rm -rf .venv-upgrade
	$(PYTHON) -m venv .venv-upgrade
	.venv-upgrade/bin/python -m pip install -q --upgrade pip
	.venv-upgrade/bin/python -m pip install -q -e '.[dev]'
	{ sed -n '/^#/p' requirements.lock; .venv-upgrade/bin/python -m pip freeze --exclude-editable; } \
		> requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf .venv-upgrade
	$(MAKE) install

## web: build the browser app into frontend/dist (npm ci only when the lock file changed)
web: $(WEB_BUILD)

$(WEB_MODULES): $(WEB)/package-lock.json
	@command -v $(NPM) >/dev/null || { echo "npm is missing: the web app needs Node.js 20.19+ and npm" >&2; exit 1; }
	cd $(WEB) && $(NPM) ci --no-audit --no-fund

$(WEB_BUILD): $(WEB_MODULES) $(WEB_SOURCES)
	cd $(WEB) && $(NPM) run build

## api-types: regenerate the web app's API types and client shapes (frontend/src/shared/api/schema.ts)
## from the gateway's OpenAPI document; nothing is started (the FastAPI app is only built)
api-types: install $(WEB_MODULES)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		$(BIN)/python $(WEB)/scripts/openapi.py > "$$tmp/openapi.json" && \
		$(OPENAPI_TS) "$$tmp/openapi.json" -o "$(CURDIR)/$(API_TYPES)"

## api-check: fail when the generated API types are not what the contracts give now (part of
## `make lint`): a contract change must be regenerated, and the app must type-check with it
api-check: install $(WEB_MODULES)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		$(BIN)/python $(WEB)/scripts/openapi.py > "$$tmp/openapi.json" && \
		$(OPENAPI_TS) "$$tmp/openapi.json" -o "$$tmp/schema.ts" >/dev/null 2>&1 && \
		if diff -u $(API_TYPES) "$$tmp/schema.ts" > "$$tmp/diff"; then \
			echo "$(API_TYPES) matches the gateway's OpenAPI document"; \
		else \
			head -60 "$$tmp/diff"; \
			echo "$(API_TYPES) is out of date with contracts/: run 'make api-types'," \
				"then 'cd $(WEB) && npm run typecheck' and fix the screens it names" >&2; \
			exit 1; \
		fi

## weblint: ESLint (typescript-eslint, React hooks rules, lines up to 120) and Prettier
weblint: $(WEB_MODULES)
	cd $(WEB) && $(NPM) run lint

## run: build the web app, start every service and the gateway (development mode); Ctrl-C stops them all.
## RabbitMQ, MariaDB or Redis not running here: the preflight starts them (mesh/servers.py)
run: install web
	@MEDIHAVEN_DEV_MODE=$${MEDIHAVEN_DEV_MODE:-true} $(BIN)/python -m mesh.preflight
	@echo ""
	@echo "  Medihaven web app: open $(GATEWAY_URL)/ in your browser"
	@echo "  (API: $(GATEWAY_URL)/api/v1, mesh health: $(GATEWAY_URL)/api/v1/health/mesh)"
	@echo "  First run: '$(BIN)/medihaven admin bootstrap' in another terminal gives the first"
	@echo "  administrator's registration token; register with it in the web app."
	@echo ""
	@PATH="$(CURDIR)/$(BIN):$$PATH" MEDIHAVEN_DEV_MODE=$${MEDIHAVEN_DEV_MODE:-true} \
		MEDIHAVEN_LOG_FORMAT=$${MEDIHAVEN_LOG_FORMAT:-console} \
		exec $(BIN)/honcho -f deploy/Procfile -d . start

## stop-servers: stop the RabbitMQ, MariaDB and Redis that `make run` started (only those)
stop-servers:
	@$(PYTHON) mesh/servers.py down

## test: lint, type-check, the web app's unit tests, and the whole test suite (browser
## tests included) against real RabbitMQ/MariaDB/Redis
test: lint webtest pytest

lint: install api-check weblint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

## webtest: type-check the web app and run its Vitest suite (vectors shared with pytest)
webtest: $(WEB_MODULES)
	cd $(WEB) && $(NPM) run typecheck && $(NPM) test

pytest: install web $(FHIR_VALIDATOR)
	$(BIN)/pytest

## the npm FHIR validator the FHIR tests run against the gateway's JSON (tests/fhir)
$(FHIR_VALIDATOR): tests/fhir/package-lock.json
	cd tests/fhir && $(NPM) ci --no-audit --no-fund

## fuzz: every gateway operation with signed, malformed values, a large budget (CI runs a few
## examples per operation in `make test`); prints the answers' counts
fuzz: install
	MEDIHAVEN_FUZZ_EXAMPLES=$${MEDIHAVEN_FUZZ_EXAMPLES:-150} $(BIN)/pytest -p no:randomly -s \
		--timeout 3600 tests/gateway/test_malformed.py -k every_operation

## bench: performance benchmarks (not tests); prints tables, writes bench/results/*.json
bench: install
	$(BIN)/python -m bench

## contracts: write the AsyncAPI document of every queue, method and event
contracts: install
	$(BIN)/python -m contracts.asyncapi > contracts/asyncapi.json

## cluster: every engine clustered locally beside the machine's own single nodes: three
## RabbitMQ nodes, three Galera nodes, a Redis master, two replicas and three Sentinels
## (each prints the settings that point the mesh at it). `make cluster-down` removes them.
CLUSTER_DIR ?= /tmp/medihaven-cluster
cluster:
	$(PYTHON) -m mesh.cluster.rabbitmq up --dir $(CLUSTER_DIR)/rabbitmq
	$(PYTHON) -m mesh.cluster.galera up --dir $(CLUSTER_DIR)/galera
	$(PYTHON) -m mesh.cluster.sentinel up --dir $(CLUSTER_DIR)/sentinel

cluster-down:
	-$(PYTHON) -m mesh.cluster.sentinel down --dir $(CLUSTER_DIR)/sentinel
	-$(PYTHON) -m mesh.cluster.galera down --dir $(CLUSTER_DIR)/galera
	-$(PYTHON) -m mesh.cluster.rabbitmq down --dir $(CLUSTER_DIR)/rabbitmq

## cluster-rabbitmq: three local RabbitMQ nodes, clustered, beside the machine's own broker
## (needs root or the rabbitmq user); prints the settings that point the mesh at them.
## `make cluster-rabbitmq-down` stops and removes them. RABBITMQ_CLUSTER_DIR: their folder.
RABBITMQ_CLUSTER_DIR ?= /tmp/medihaven-rabbitmq-cluster
cluster-rabbitmq:
	$(PYTHON) -m mesh.cluster.rabbitmq up --dir $(RABBITMQ_CLUSTER_DIR)

cluster-rabbitmq-down:
	$(PYTHON) -m mesh.cluster.rabbitmq down --dir $(RABBITMQ_CLUSTER_DIR)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(WEB)/node_modules $(WEB)/dist
