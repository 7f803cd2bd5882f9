# CloudAI developer commands. The README's two commands are `make demo` and `make test`.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
PY := $(VENV)/bin/python
CLOUDAI := $(VENV)/bin/cloudai
RUFF := $(VENV)/bin/ruff

.PHONY: help setup setup-python demo test lint format proto proto-check bench notebooks clean

help:
	@echo "make setup        install the venv, Docker, the sample image and the local registry"
	@echo "make setup-python just the venv (pip install -e '.[dev]'), no Docker"
	@echo "make demo         setup, then run the whole local cluster with the sample task"
	@echo "make test         setup, then run the test suite"
	@echo "make lint         ruff check and ruff format --check"
	@echo "make format       ruff format and ruff check --fix"
	@echo "make proto        regenerate proto/*_pb2*.py from proto/*.proto"
	@echo "make proto-check  fail if the generated protobuf code is stale"
	@echo "make notebooks    run the notebooks and save them with their outputs"
	@echo "make bench        placement benchmark (1000 workers, 10000 tasks)"
	@echo "make clean        remove build and cache files (keeps .venv and Docker images)"

setup:
	bash scripts/setup.sh

# For targets that only need Python (no Docker engine).
setup-python:
	bash scripts/setup.sh --python-only

demo: setup
	$(CLOUDAI) demo

# scripts/run_tests.py runs the suite in two phases: the Docker and worker-process tests
# beside the rest, then the `serial` tests alone. Either failing fails.
test: setup
	$(RUFF) check .
	$(RUFF) format --check .
	$(PY) scripts/run_tests.py

lint: setup-python
	$(RUFF) check .
	$(RUFF) format --check .

format: setup-python
	$(RUFF) format .
	$(RUFF) check --fix .

proto: setup-python
	$(PY) scripts/gen_proto.py

proto-check: setup-python
	$(PY) scripts/gen_proto.py --check

bench: setup-python
	$(CLOUDAI) bench placement --workers 1000 --tasks 10000

notebooks: setup-python
	$(PY) scripts/run_notebooks.py

clean:
	rm -rf build dist .pytest_cache .ruff_cache *.egg-info
	find . -path ./.venv -prune -o -type d -name __pycache__ -exec rm -rf {} +
