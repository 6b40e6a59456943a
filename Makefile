# Two commands for a newcomer: `make demo` runs the main job, `make test` passes the tests.
# Both create .venv when it is missing and install into it; nothing is installed globally.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo demo-core test lint typecheck unit install dev bench bench-smoke clean

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

# The documentation site (mkdocs.yml) into site/: open site/index.html. --strict turns a
# broken link, a missing reference or a docstring warning into a failure (CI runs it).
.PHONY: docs
$(VENV)/.docs: $(VENV)/.installed
	$(PIP) install -e ".[docs]"
	@touch $@

docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# Every benchmarks/bench_*.py, each to the end; fails when any of them failed (a goal
# missed, or a crash). `bench` measures (minutes; bench_serving needs wrk); `bench-smoke`
# runs each with --smoke: tiny sizes, seconds, goals not judged, so only a crash or a failed
# correctness check fails it (CI runs it). The smoke run pins OpenMP to one thread: its
# timings mean nothing, and on a shared machine oversubscribed threads only slow it down.
BENCHMARKS := $(sort $(wildcard benchmarks/bench_*.py))

define run_benchmarks
	@failed=""; for b in $(BENCHMARKS); do \
	  echo "== $$b $(1)"; t0=$$(date +%s); \
	  $(2) $(PY) $$b $(1) || failed="$$failed $$b"; \
	  echo "== $$b: $$(( $$(date +%s) - t0 )) s"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi; \
	echo "all $(words $(BENCHMARKS)) benchmarks ran"
endef

bench: dev
	$(call run_benchmarks,,)

bench-smoke: dev
	$(call run_benchmarks,--smoke,OMP_NUM_THREADS=1)

# Each demo has its own home and secrets file (examples/adult-income/demo.sh and
# examples/secure-core-demo.sh); clean removes both demos' files, and what a demo-core
# run that stopped half-way leaves (its tampered copy and checkpoint, also under the
# names older versions used).
DEMO_FILES := .bastion-demo .bastion-demo.env .bastion-demo-core .bastion-demo-core.env \
	.bastion-demo-core-tampered .bastion-demo-core-checkpoint.json \
	.bastion-demo-tampered .bastion-demo-checkpoint.json

clean:
	rm -rf $(VENV) $(DEMO_FILES) .pytest_cache .mypy_cache .ruff_cache
