"""Shared fixtures: store URLs on SQLite and a real PostgreSQL, and a clean llmlens config.

Store tests take the ``db_url`` fixture, which runs each test on a SQLite file and on a
fresh database of the PostgreSQL server named by ``LLMLENS_TEST_PG_URL`` (``.ci/run``
starts one). Without that variable the tests start their own server when the binaries
are on the machine, and otherwise skip the PostgreSQL variants.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Support modules (fake provider, PostgreSQL launcher) are imported by name from tests.
sys.path.insert(0, str(Path(__file__).parent / "support"))

from pgserver import Databases, PostgresServer, databases


def skip_or_fail(reason: str) -> None:
    """Skip on a developer machine; fail in CI (LLMLENS_TEST_STRICT=1), where all must run."""
    if os.environ.get("LLMLENS_TEST_STRICT"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    url = os.environ.get("LLMLENS_TEST_PG_URL")
    if url:
        yield url
        return
    try:
        server = PostgresServer()
        url = server.start()
    except Exception as exc:  # no binaries on a developer machine
        skip_or_fail(f"no PostgreSQL server available: {exc}")
    try:
        yield url
    finally:
        server.stop("immediate")


@pytest.fixture
def pg_databases(pg_server_url: str) -> Iterator[Databases]:
    """Fresh PostgreSQL databases for one test, on the shared server; dropped after it."""
    with databases(pg_server_url) as made:
        yield made


@pytest.fixture
def pg_url(pg_databases: Databases) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return pg_databases.new("t")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test.

    Bound but never listening: a connection is refused at once, and no other test (on this
    or another pytest-xdist worker) can be given the port and start listening on it.
    """
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'llmlens.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on each database llmlens supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'llmlens.db'}"
    return str(request.getfixturevalue("pg_url"))


# Modules whose classes GenAI instrumentations wrap. OpenLLMetry's uninstrument() leaves
# some openai methods wrapped, so a later test would see its spans around every call.
_INSTRUMENTED_MODULES = ("openai.resources.chat.completions.completions", "openai.resources.responses.responses",
                         "openai.resources.embeddings", "openai.resources.completions", "openai._base_client")


@pytest.fixture(autouse=True)
def _no_leftover_instrumentation() -> Iterator[None]:
    """Each test leaves the provider SDKs' classes, and the current OpenTelemetry context, as it found them."""
    from opentelemetry import context

    current = context.get_current()
    saved = []
    for name in _INSTRUMENTED_MODULES if "openai" in sys.modules else ():
        try:  # openai imports its resource modules lazily: load them so they are snapshotted
            module = importlib.import_module(name)
        except ImportError:
            continue
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == name:
                saved.append((value, dict(vars(value))))
    yield
    for klass, attributes in saved:
        for key, value in attributes.items():
            if vars(klass).get(key) is not value and callable(value):
                setattr(klass, key, value)
    if context.get_current() is not current:  # a stream wrapper that never detached its span
        context.attach(current)


@pytest.fixture(autouse=True)
def _fresh_llmlens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test starts unconfigured, with no stray OTLP endpoint from the environment."""
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "LLMLENS_DB_URL",
                 "LLMLENS_ENDPOINT", "LLMLENS_HEADERS", "LLMLENS_CAPTURE", "LLMLENS_HOSTS",
                 "LLMLENS_PRICES", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLMLENS_HOME", str(tmp_path / "llmlens-home"))
    yield
    from llmlens import _config

    _config._reset_for_tests()
