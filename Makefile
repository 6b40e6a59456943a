# Two commands for a newcomer: `make demo` runs the main job, `make test` passes the tests.
# Both create .venv when it is missing and install into it; nothing is installed globally.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo demo-core test lint typecheck unit install dev bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(PIP) install -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(PIP) install -e ".[dev]"
	@touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev

demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash examples/adult-income/demo.sh

demo-core: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash examples/secure-core-demo.sh

lint: dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: dev
	$(VENV)/bin/mypy

unit: dev
	$(VENV)/bin/pytest -q -p no:cacheprovider

test: lint typecheck unit

bench: dev
	$(PY) benchmarks/bench_store.py
	$(PY) benchmarks/bench_audit.py
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_poisoning.py
	$(PY) benchmarks/bench_screen_speed.py
	$(PY) benchmarks/bench_checks.py

clean:
	rm -rf $(VENV) .bastion-demo .bastion-demo.env .pytest_cache .mypy_cache .ruff_cache
