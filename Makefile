# The two quickstart commands install what they need into .venv first, each only once:
# `make serve` the package and what serving needs; `make test` (and lint, bench) adds the
# test and bench tools. Each step has its own stamp, re-made only when pyproject.toml
# changed, so `make serve` then `make test` installs the second half only.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `imgpipe serve` binds these; another address needs an API key first (README).
HOST ?= 127.0.0.1
PORT ?= 8000
# Serving: the package alone. OpenCV (the faces extra, 160 MB, for crop=face; without it
# face crops are attention crops) is opt-in: `make serve SERVE_EXTRAS=faces`. Each set of
# extras has its own stamp, so changing it installs what it adds.
SERVE_EXTRAS ?=
comma := ,
SERVE_STAMP := $(VENV)/.serve$(if $(SERVE_EXTRAS),-$(subst $(comma),-,$(SERVE_EXTRAS)))-installed
# Everything: tests, linters, benchmarks, the S3 test server, the NudeNet model (the AGPL
# `moderation` extra: tests run the real model; serving never installs it unasked). The
# name predates the split.
DEV_STAMP := $(VENV)/.installed

.PHONY: serve test lint ci bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Byte-compiled at install (pip does the packages; compileall does our editable src):
# where PYTHONDONTWRITEBYTECODE is set (CI, containers) Python never writes a .pyc, so an
# uncompiled install recompiles ~230 modules on every start: `import imgpipe.cli.main`
# takes 0.3 s of CPU with .pyc files and 1.0-1.5 s without, on every `imgpipe` command
# and worker process. A stale .pyc after an edit is ignored, never wrong.
$(SERVE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-e '.$(if $(SERVE_EXTRAS),[$(SERVE_EXTRAS)])'
	$(BIN)/python -m compileall -q src
	touch $@

$(DEV_STAMP): pyproject.toml $(SERVE_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench,s3,faces,jxl,moderation]'
	touch $@

serve: $(SERVE_STAMP)
	$(BIN)/imgpipe serve --host $(HOST) --port $(PORT)

test: $(DEV_STAMP)
	$(BIN)/python -m pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy bench tests
	$(BIN)/lint-imports

ci: lint test

# Every performance target, each beside its baseline in the same run (bench/all.py).
bench: $(DEV_STAMP)
	$(BIN)/python bench/all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
