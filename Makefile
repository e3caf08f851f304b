# The two quickstart commands (`make serve`, `make test`) install what they need into
# .venv first; re-running them reinstalls only when pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint ci bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,s3,faces,jxl]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/imgpipe serve

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

ci: lint test

bench: $(STAMP)
	$(BIN)/python bench/process_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
