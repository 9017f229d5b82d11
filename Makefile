# The two commands of the README's quick start: `make demo` and `make test`.
# The oldest Python the package supports (requires-python, classifiers) builds .venv ...
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV := $(BIN)/uv
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

# uv, unlike pip, installs no bytecode; where PYTHONDONTWRITEBYTECODE is set (as in many CI
# images) every interpreter the tests start (collectors, dashboards, the CLI, apps, workers)
# then compiled SQLAlchemy, Streamlit, OpenTelemetry and the rest from source, each time:
# 40% of the suite's time on 2 cores. The tests write bytecode once, under build/,
# and leave the tree and the environments as they are.
test test-compat test-newest: export PYTHONDONTWRITEBYTECODE :=
test test-compat test-newest: export PYTHONPYCACHEPREFIX := $(CURDIR)/build/pycache

.PHONY: demo test test-compat test-newest lint bench clean

# uv builds the environments: the three install in about 30 s on a bare machine with empty
# caches, where pip took over five minutes. It comes from PyPI through pip into .venv, the one
# venv that `python -m venv` makes (and so keeps pip); uv installs into .venv and makes the
# other two. Pythons come from the machine only: uv never downloads one in place of a missing
# 3.11 or 3.13. The builds run one after another: side by side they were no faster, and the
# editable builds of one tree all write its llmlens.egg-info, so they would race on its files.
$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.9"

$(STAMP): $(UV) pyproject.toml
	$(UV) pip install --quiet --python $(BIN)/python -e ".[server,dev]"
	touch $(STAMP)

# The other two are made anew (--clear) when their requirements change: nothing stale stays.
$(COMPAT_STAMP): $(UV) pyproject.toml tests/requirements-compat.txt
	$(UV) venv --quiet --clear --no-python-downloads --python $(PYTHON) $(COMPAT_VENV)
	$(UV) pip install --quiet --python $(COMPAT_VENV)/bin/python -e '.[server]' -r tests/requirements-compat.txt
	touch $(COMPAT_STAMP)

$(NEWEST_STAMP): $(UV) pyproject.toml
	@test -n "$(NEWEST_PYTHON)" || { echo "make test needs Python 3.13: set NEWEST_PYTHON=/path/to/python3.13"; exit 1; }
	$(UV) venv --quiet --clear --no-python-downloads --python $(NEWEST_PYTHON) $(NEWEST_VENV)
	$(UV) pip install --quiet --python $(NEWEST_VENV)/bin/python -e ".[server,dev]"
	touch $(NEWEST_STAMP)

demo: $(STAMP)  ## a realistic workload into ./llmlens.db, then the dashboard
	$(BIN)/llmlens demo

test: $(STAMP) test-compat test-newest  ## the whole suite on Python 3.11 and 3.13, and the second environment (starts its own PostgreSQL when the binaries are there)
	$(BIN)/python -m pytest $(XDIST)

test-compat: $(COMPAT_STAMP)  ## the tests of the second environment: instructor, LangChain on openai 2.x over httpx, OpenLIT, Langfuse v3
	$(COMPAT_VENV)/bin/python -m pytest tests/libraries/compat tests/libraries/test_langchain.py

test-newest: $(NEWEST_STAMP)  ## the whole suite on the newest supported Python
	$(NEWEST_VENV)/bin/python -m pytest $(XDIST)

# --refresh-package: mypy checks a wheel built from the tree as it is, never one uv cached.
lint: $(STAMP)  ## ruff, and mypy --strict on an installed copy (the folder mapping hides the editable one)
	$(BIN)/ruff check .
	rm -rf build/typecheck && $(UV) pip install --quiet --python $(BIN)/python --no-deps --refresh-package llmlens --target build/typecheck .
	cd build/typecheck && ../../$(BIN)/python -m mypy -p llmlens --config-file ../../pyproject.toml

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(COMPAT_VENV) $(NEWEST_VENV) build *.egg-info .pytest_cache
