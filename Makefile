# Medihaven — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
GATEWAY_URL ?= http://127.0.0.1:8000

.PHONY: install run test lint pytest bench contracts clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

## run: start every service and the gateway (development mode); Ctrl-C stops them all
run: install
	@$(BIN)/python -m mesh.preflight
	@echo ""
	@echo "  Medihaven gateway: $(GATEWAY_URL)   (mesh health: $(GATEWAY_URL)/api/v1/health/mesh)"
	@echo ""
	@PATH="$(CURDIR)/$(BIN):$$PATH" MEDIHAVEN_DEV_MODE=$${MEDIHAVEN_DEV_MODE:-true} \
		MEDIHAVEN_LOG_FORMAT=$${MEDIHAVEN_LOG_FORMAT:-console} \
		exec $(BIN)/honcho -f deploy/Procfile -d . start

## test: lint, type-check and run the whole test suite against real RabbitMQ/MariaDB/Redis
test: lint pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

pytest: install
	$(BIN)/pytest

## bench: performance benchmarks (not tests); prints tables, writes bench/results/*.json
bench: install
	$(BIN)/python -m bench

## contracts: write the AsyncAPI document of every queue, method and event
contracts: install
	$(BIN)/python -m contracts.asyncapi > contracts/asyncapi.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
