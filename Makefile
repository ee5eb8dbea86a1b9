# Two commands on a fresh machine (Python 3.11+ and make):
#   make serve   set up, migrate a local SQLite file, seed the demo, serve GraphiQL on :8000
#   make test    set up with dev extras, then lint, types and the whole suite (SQLite + PostgreSQL)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test lint types pytest bench schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	CASELOAD_DEBUG=true $(BIN)/caseload serve --demo

test: lint types pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy .

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/pytest tests/benchmarks -p no:cacheprovider -o addopts="" -s

schema: $(STAMP)
	$(BIN)/caseload schema export > schema/schema.graphql

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
