# orbitwatch: everything installs into .venv from this project's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test pytest lint typecheck unit bench bench-smoke clean

$(STAMP): pyproject.toml deploy/system-packages.sh
	bash deploy/system-packages.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make demo: embedded broker, simulated fleet, the daemon, a first query (about 1-2 minutes)
demo: $(STAMP)
	$(BIN)/orbitwatch demo

## make test: ruff, the import layering (lint-imports), mypy --strict and the whole pytest suite (integration tests start their own broker; two
## pytest-xdist workers, one broker each; includes the packaging test: the wheel in a clean venv runs the daemon)
test: lint typecheck pytest

pytest: $(STAMP)
	$(BIN)/pytest -n 2 --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

## make bench: throughput, memory and latency figures (prints medians; takes several minutes)
bench: $(STAMP)
	$(BIN)/python -m tests.bench.run_all

## make bench-smoke: every benchmark on a tiny backlog (seconds each): each must run to its end and print figures
bench-smoke: $(STAMP)
	$(BIN)/python -m tests.bench.run_all --smoke

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
