# Two entry points (see README): `make book` and `make test`.
# The virtual environment lives outside the clone, keyed by a hash of the requirements, so a
# fresh clone reuses it and a change of requirements builds a new one.
SHELL := /bin/bash
PYTHON ?= python3
ENV_KEY := $(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
VENV ?= $(HOME)/.cache/lmcnb/venv-$(ENV_KEY)
BIN := $(VENV)/bin
export LMCNB_DATA ?= $(CURDIR)/data
export PYTHONUNBUFFERED := 1

.PHONY: env book test smoke unit

$(VENV)/.ready: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

env: $(VENV)/.ready
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .

# Execute every chapter at the book profile (cached runs make a re-run quick).
book: env
	$(BIN)/python -m lmcnb.execute --profile book --out _build/executed

# Unit tests, then every chapter at the smoke profile checked by nbval.
test: env
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m lmcnb.execute --profile smoke --out _build/smoke
	LMCNB_RUNS=$(CURDIR)/_build/nbval-runs $(BIN)/python -m pytest -q --nbval-lax -p no:cacheprovider _build/smoke/*.ipynb
