# The two commands of the quick start: `make demo` and `make test`.  Each creates or refreshes
# the local virtual environment (.venv) from pyproject.toml and constraints.txt, so a fresh
# machine needs only Python 3.11+
# (`make test` also installs and starts the servers its integration tests use: scripts/services.sh).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

NICER  := $(VENV)/test-data/nicer/.fetched

.PHONY: demo test lint typecheck unit bench clean

# pyproject files declare version ranges; constraints.txt pins the exact versions CI tests.
PIP_INSTALL := $(BIN)/python -m pip install --quiet -c constraints.txt

$(STAMP): pyproject.toml constraints.txt pipelines/*/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP_INSTALL) -e '.[dev]'
	$(PIP_INSTALL) -e 'pipelines/xray_ep[test]'
	$(PIP_INSTALL) -e 'pipelines/radio_nenufar[test]'
	$(PIP_INSTALL) -e 'pipelines/nenufar_bursts[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/skyweave demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench pipelines

typecheck: $(STAMP)
	$(BIN)/mypy

# Servers the integration tests need (scripts/services.sh installs and starts them, stops them after).
TEST_SERVICES ?= postgres redis slurm docker podman dask moto

# Real NICER event lists for the X-ray tests: only PINT's source distribution on PyPI ships them
# (tests/pipelines/xray/realdata.py); pip downloads it, three small files are kept.
$(NICER): | $(STAMP)
	rm -rf $(VENV)/test-data/nicer && mkdir -p $(VENV)/test-data/nicer
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: --dest $(VENV)/test-data 'pint-pulsar==1.1.8'
	tar -xzf $(VENV)/test-data/pint_pulsar-1.1.8.tar.gz -C $(VENV)/test-data/nicer --strip-components=3 \
		pint_pulsar-1.1.8/tests/datafile/ngc300nicer_bary.evt \
		pint_pulsar-1.1.8/tests/datafile/J0218_nicer_2070030405_cleanfilt_cut_bary.evt \
		pint_pulsar-1.1.8/tests/datafile/sgr1830kgfilt.evt
	rm -f $(VENV)/test-data/pint_pulsar-1.1.8.tar.gz
	touch $(NICER)

unit: $(STAMP) $(NICER)
	$(BIN)/pytest -q

# the whole suite with its servers: a missing one fails the run (SKYWEAVE_REQUIRE_SERVICES=1);
# PYTEST_ARGS narrows it (make test PYTEST_ARGS=tests/unit/store)
test: lint typecheck $(NICER)
	scripts/browser.sh >/dev/null  # Debian's Chromium for the dashboard's browser tests
	scripts/services.sh run $(TEST_SERVICES) -- $(BIN)/pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	scripts/services.sh stop
	rm -rf $(VENV) .venv-bench .venv-voprov .venv-voprov.lock .skyweave .services .pytest_cache .mypy_cache .ruff_cache
