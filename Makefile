# The two commands a new user runs: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen

.PHONY: demo test env lint bench browser-deps airflow-ui clean

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools && .tools/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	touch $@

env: .venv/.synced

## demo: generate multi-site demo data, run the pipeline as an Airflow DAG run, publish the reports
demo: env
	$(RUN) poem-registry demo

## test: the whole test suite (unit, integration with DuckDB/PostgreSQL/Airflow, end-to-end, browser)
test: env browser-deps
	$(RUN) ruff check .
	$(RUN) pytest -n 2 --dist loadgroup

browser-deps:
	@bash scripts/ensure-chromium.sh

lint: env
	$(RUN) ruff check . && $(RUN) ruff format --check .

## bench: the performance harness (benchmarks/README.md)
bench: env
	$(RUN) python -m benchmarks.harness

## airflow-ui: the Airflow UI on the demo settings (airflow standalone)
airflow-ui: env
	$(RUN) python -m poem_registry.orchestration.standalone

clean:
	rm -rf var .pytest_cache dbt_project/target dbt_project/logs
