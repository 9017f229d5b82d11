"""The compat environment's tests: openai 2.x on ``httpx``, instructor, and the sources that need it.

instructor caps ``jiter`` below what openai 3.x needs, so these tests live in a second
environment, ``.venv-compat`` (``tests/requirements-compat.txt``), which ``make test`` builds
and runs after the main suite. OpenLIT and Langfuse's v3 SDK are source-matrix tests here,
with a collector process of this environment. It also runs ``../test_langchain.py`` there,
so the LangChain flows are checked on both HTTP stacks. In the main environment (openai
3.x) this folder is not collected, and the report header says so; in the compat
environment a missing library is an import error, never a skip.
"""

from __future__ import annotations

import openai
import pytest

COMPAT_ENV = int(openai.__version__.split(".", 1)[0]) < 3

if not COMPAT_ENV:
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header(config: pytest.Config) -> str:
    if COMPAT_ENV:
        return f"compat environment: openai {openai.__version__} on httpx"
    return "tests/libraries/compat: not collected on openai 3.x; `make test` runs them in .venv-compat"
