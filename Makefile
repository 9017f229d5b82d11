# The two commands of the README's quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The second test environment: openai 2.x on httpx, with instructor (tests/requirements-compat.txt).
COMPAT_VENV ?= .venv-compat
COMPAT_STAMP := $(COMPAT_VENV)/.installed

.PHONY: demo test test-compat lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[server,dev]"
	touch $(STAMP)

$(COMPAT_STAMP): pyproject.toml tests/requirements-compat.txt
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install --quiet -e . -r tests/requirements-compat.txt
	touch $(COMPAT_STAMP)

demo: $(STAMP)  ## a realistic workload into ./llmlens.db, then the dashboard
	$(BIN)/llmlens demo

test: $(STAMP) test-compat  ## both environments: the whole suite (starts its own PostgreSQL when the binaries are there)
	$(BIN)/python -m pytest

test-compat: $(COMPAT_STAMP)  ## the tests of the second environment: instructor, LangChain on openai 2.x over httpx
	$(COMPAT_VENV)/bin/python -m pytest tests/libraries/compat tests/libraries/test_langchain.py

lint: $(STAMP)  ## ruff, and mypy --strict on an installed copy (the folder mapping hides the editable one)
	$(BIN)/ruff check .
	rm -rf build/typecheck && $(BIN)/python -m pip install --quiet --no-deps --target build/typecheck .
	cd build/typecheck && ../../$(BIN)/python -m mypy -p llmlens --config-file ../../pyproject.toml

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(COMPAT_VENV) build *.egg-info .pytest_cache
