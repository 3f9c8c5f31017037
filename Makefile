# The two set-up commands of the README: `make up` and `make test`.
# Each creates or updates the local virtualenv (.venv) from pyproject.toml first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: up demo test lint venv clean

$(STAMP): pyproject.toml
	@echo "installing into $(VENV) (first run takes about a minute)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -qq --upgrade pip
	@$(BIN)/python -m pip install -qq -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

## Run the whole pipeline on this machine (embedded broker, worker, sink, API); Ctrl-C stops it.
up: $(STAMP)
	$(BIN)/cost-ops up $(ARGS)

## The same, with a synthetic usage stream.
demo: $(STAMP)
	$(BIN)/cost-ops up --demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Lint, then every test (unit + integration against a real Tansu broker and chDB).
test: lint
	$(BIN)/python -m pytest $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
