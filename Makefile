# The two commands of the README's quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[server,dev]"
	touch $(STAMP)

demo: $(STAMP)  ## a realistic workload into ./llmlens.db, then the dashboard
	$(BIN)/llmlens demo

test: $(STAMP)  ## the whole suite (starts its own PostgreSQL when the binaries are there)
	$(BIN)/python -m pytest

lint: $(STAMP)  ## ruff, and mypy --strict on an installed copy (the folder mapping hides the editable one)
	$(BIN)/ruff check .
	rm -rf build/typecheck && $(BIN)/python -m pip install --quiet --no-deps --target build/typecheck .
	cd build/typecheck && ../../$(BIN)/python -m mypy -p llmlens --config-file ../../pyproject.toml

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
