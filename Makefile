# The two commands of the quick start: `make demo` and `make test`.  Each creates or refreshes
# the local virtual environment (.venv) from pyproject.toml, so a fresh machine needs only Python 3.11+
# (`make test` also installs and starts the servers its integration tests use: scripts/services.sh).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet -e 'pipelines/xray_ep[test]'
	$(BIN)/python -m pip install --quiet -e 'pipelines/radio_nenufar[test]'
	$(BIN)/python -m pip install --quiet -e 'pipelines/nenufar_bursts[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/skyweave demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench pipelines

typecheck: $(STAMP)
	$(BIN)/mypy

# Servers the integration tests need (scripts/services.sh installs and starts them, stops them after).
TEST_SERVICES ?= postgres

unit: $(STAMP)
	$(BIN)/pytest -q

# the whole suite with its servers: a missing one fails the run (SKYWEAVE_REQUIRE_SERVICES=1);
# PYTEST_ARGS narrows it (make test PYTEST_ARGS=tests/unit/store)
test: lint typecheck
	scripts/services.sh run $(TEST_SERVICES) -- $(BIN)/pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	scripts/services.sh stop
	rm -rf $(VENV) .venv-bench .skyweave .services .pytest_cache .mypy_cache .ruff_cache
