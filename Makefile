# AgriMarket: `make run` starts the embedded service, `make test` runs every test. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run worker test lint format typecheck migrate migration openapi bench lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## make the virtual environment with every dependency, pinned

run: $(STAMP)  ## start the service on the embedded default (SQLite in ./data, worker in-process)
	$(BIN)/agrimarket serve

worker: $(STAMP)  ## run a standalone worker (for PostgreSQL deployments)
	$(BIN)/agrimarket worker

test: $(STAMP)  ## run the whole test suite (SQLite; PostgreSQL too when AGRIMARKET_TEST_DATABASE_URL is set)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## ruff: fix what can be fixed and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)  ## mypy, strict
	$(BIN)/mypy

migrate: $(STAMP)  ## migrate the configured database to the latest schema
	$(BIN)/agrimarket db upgrade

migration: $(STAMP)  ## new migration from model changes: make migration m="add harvest region"
	@test -n "$(m)" || { echo 'usage: make migration m="what changed"'; exit 2; }
	$(BIN)/agrimarket db upgrade
	$(BIN)/agrimarket db revision --message "$(m)"

openapi: $(STAMP)  ## regenerate openapi/openapi.json from the app
	$(BIN)/agrimarket openapi --output openapi/openapi.json

bench: $(STAMP)  ## run every benchmark in bench/ (each ends with one JSON line of figures)
	@for module in $$(ls bench/*.py | xargs -n1 basename | sed 's/\.py$$//' | grep -v '^__'); do \
		echo "== python -m bench.$$module"; $(BIN)/python -m bench.$$module || exit 1; done

lock: $(STAMP)  ## re-pin requirements/constraints.txt from the current environment
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check | grep -v '^agrimarket' > requirements/constraints.txt

clean:  ## remove the virtual environment and caches (not ./data)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
