# The two commands of the README's quick start: `make demo` and `make test`.
# The oldest Python the package supports (requires-python, classifiers) builds .venv ...
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The second test environment: openai 2.x on httpx, with instructor (tests/requirements-compat.txt).
COMPAT_VENV ?= .venv-compat
COMPAT_STAMP := $(COMPAT_VENV)/.installed

# ... and `make test` runs the suite again on the newest: python3.13 on PATH, else pyenv's
# 3.13 (its shim refuses a version that is not selected).
ifndef NEWEST_PYTHON
NEWEST_PYTHON := $(firstword $(foreach p,python3.13 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13),\
	$(shell $(p) -c "" >/dev/null 2>&1 && echo $(p))))
endif
NEWEST_VENV ?= .venv-3.13
NEWEST_STAMP := $(NEWEST_VENV)/.installed

# The suite runs on pytest-xdist workers. Most tests wait on subprocesses, servers and
# sockets rather than compute, so more workers than cores pay. On a 2-core machine, 3:
# with 4, a fork-and-exit test once ran past its 120 s timeout under the load of the
# others. Any test must pass on any worker: each takes its own ports, temp dirs, databases.
TEST_WORKERS ?= 3
XDIST := -n $(TEST_WORKERS)

.PHONY: demo test test-compat test-newest lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[server,dev]"
	touch $(STAMP)

$(COMPAT_STAMP): pyproject.toml tests/requirements-compat.txt
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install --quiet -e '.[server]' -r tests/requirements-compat.txt
	touch $(COMPAT_STAMP)

$(NEWEST_STAMP): pyproject.toml
	@test -n "$(NEWEST_PYTHON)" || { echo "make test needs Python 3.13: set NEWEST_PYTHON=/path/to/python3.13"; exit 1; }
	$(NEWEST_PYTHON) -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(NEWEST_VENV)/bin/python -m pip install --quiet -e ".[server,dev]"
	touch $(NEWEST_STAMP)

demo: $(STAMP)  ## a realistic workload into ./llmlens.db, then the dashboard
	$(BIN)/llmlens demo

test: $(STAMP) test-compat test-newest  ## the whole suite on Python 3.11 and 3.13, and the second environment (starts its own PostgreSQL when the binaries are there)
	$(BIN)/python -m pytest $(XDIST)

test-compat: $(COMPAT_STAMP)  ## the tests of the second environment: instructor, LangChain on openai 2.x over httpx, OpenLIT, Langfuse v3
	$(COMPAT_VENV)/bin/python -m pytest tests/libraries/compat tests/libraries/test_langchain.py

test-newest: $(NEWEST_STAMP)  ## the whole suite on the newest supported Python
	$(NEWEST_VENV)/bin/python -m pytest $(XDIST)

lint: $(STAMP)  ## ruff, and mypy --strict on an installed copy (the folder mapping hides the editable one)
	$(BIN)/ruff check .
	rm -rf build/typecheck && $(BIN)/python -m pip install --quiet --no-deps --target build/typecheck .
	cd build/typecheck && ../../$(BIN)/python -m mypy -p llmlens --config-file ../../pyproject.toml

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(COMPAT_VENV) $(NEWEST_VENV) build *.egg-info .pytest_cache
