# Two entry points: `make demo` (set up, then run the demo against the bundled Stripe emulator)
# and `make test` (set up, then lint, type-check and run every test). Both create .venv first;
# the demo needs only the pipeline's own dependencies, the tests everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE := $(VENV)/.ready-core
ALL := $(VENV)/.ready-all

.PHONY: demo test lint setup clean

setup: $(ALL)

$(CORE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[emulator]'
	touch $(CORE)

$(ALL): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,orchestration,notebooks]'
	touch $(ALL) $(CORE)

demo: $(CORE)
	$(BIN)/python pipelines/stripe_pipeline.py demo

lint: $(ALL)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
