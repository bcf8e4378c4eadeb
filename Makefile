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

.PHONY: env book test smoke unit accepted js publish

$(VENV)/.ready: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

env: $(VENV)/.ready
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .

# Datasets whose files differ from the official checksums on purpose are accepted explicitly,
# by their exact bytes as they are now: make test ACCEPT_DATA=cifar10 (the shared CIFAR-10 is
# re-decoded from JPEG). Nothing is accepted unless named here.
ACCEPT_DATA ?=
ACCEPT_REASON ?= named in ACCEPT_DATA on the make command line
accepted: env
	@for name in $(ACCEPT_DATA); do $(BIN)/lmcnb data accept $$name --reason "$(ACCEPT_REASON)"; done

# The book's JavaScript comes from npm (package.json); the browser check needs Debian's chromium.
NPM_CHECK := command -v npm >/dev/null || (apt-get update && apt-get install -y npm)
CHROMIUM_CHECK := command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

# The book's JavaScript and the workflow linter, from package-lock.json.
node_modules/.package-lock.json: package-lock.json package.json
	$(NPM_CHECK)
	npm ci --no-audit --no-fund --ignore-scripts
js: node_modules/.package-lock.json

# Execute every chapter at the book profile (cached runs make a re-run quick), build _build/html.
# Runs train on a local Dask cluster, one single-threaded worker per core: 1.86x the serial wall
# time on 2 cores with the same bytes (benchmarks/executors.py); smoke stays serial, as a
# cluster's start-up outweighs its 12-step runs.
book: env accepted js
	$(BIN)/python -m lmcnb.book.execute --profile book --out _build/executed --build \
	  --executor local

# Unit tests, every chapter at the smoke profile (whose run and study folders must keep their
# pinned names: tests/test_identity.py), then the executed copies re-run under nbval
# against the runs the first execution left (a resumed chapter must print the same checked
# outputs; fresh training's reproducibility is the unit tests' job), the book built from those
# copies with warnings as errors, then the built pages in headless Chromium.
SMOKE_RUNS := $(CURDIR)/_build/smoke-runs
test: env accepted js
	$(CHROMIUM_CHECK)
	$(BIN)/ruff check lmcnb tests benchmarks notebooks
	$(BIN)/python -m pytest -q tests --ignore=tests/test_browser.py --ignore=tests/test_identity.py
	LMCNB_RUNS=$(SMOKE_RUNS) $(BIN)/python -m lmcnb.book.execute --profile smoke --out _build/smoke
	LMCNB_IDENTITY_RUNS=$(SMOKE_RUNS) $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_identity.py
	LMCNB_RUNS=$(SMOKE_RUNS) $(BIN)/python -m pytest -q --nbval-lax -p no:cacheprovider _build/smoke/*.ipynb
	$(BIN)/python -m lmcnb.book.execute --out _build/smoke --no-execute --build
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_browser.py

# Publish a book built locally (make book) to the gh-pages branch of the repository's origin, as
# the GitHub Pages workflow (.github/workflows/book.yml) does from CI.
publish: env
	test -f _build/html/index.html || { echo "no built book: run make book first"; exit 1; }
	$(BIN)/ghp-import --no-jekyll --push --force _build/html
