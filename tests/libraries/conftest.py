"""Fixtures for the framework tests: the fake provider, a real SQLite store, and no network.

The frameworks (LangChain, LiteLLM, pydantic-ai, instructor) run unmodified against the
loopback fake provider. Each of them can reach the internet on its own, so their switches
for that are set here before any test module imports them, and every socket a test opens
beyond loopback is refused and fails the test (``loopback_guard``).

``compat/`` holds what needs the second test environment (openai 2.x on ``httpx``, with
instructor); see its conftest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import loopback_guard
import pytest
from fake_hosts import hosts_variable
from fake_provider import FakeProvider, Reply

import llmlens

# Set before the test modules import the libraries, which read them at import time.
os.environ.update({
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # else: the model cost map from the internet, at import
    "LITELLM_OFFLINE_MODE": "true",  # every other catalog LiteLLM would fetch by itself
    "LANGSMITH_TRACING": "false",  # LangChain's tracing client posts runs to its cloud
    "LANGCHAIN_TRACING_V2": "false",
})

# Active while the libraries are imported (collection) and while each test runs.
loopback_guard.install()
loopback_guard.activate()


def pytest_collection_finish(session: pytest.Session) -> None:
    loopback_guard.deactivate()


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    refused_at_import = loopback_guard.take_refused()
    assert not refused_at_import, f"a library reached beyond loopback when imported: {refused_at_import}"
    with loopback_guard.active():
        yield
    refused = loopback_guard.take_refused()
    assert not refused, f"the test reached beyond loopback: {refused}"


@pytest.fixture(scope="session")
def _fake_server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def fake(_fake_server: FakeProvider) -> Iterator[FakeProvider]:
    """The fake provider, with an empty script and no recorded requests."""
    _fake_server._queue.clear()
    _fake_server.requests.clear()
    _fake_server.default = Reply()
    yield _fake_server
    _fake_server._queue.clear()


@pytest.fixture(autouse=True)
def _fake_hosts(_fake_server: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    """llmlens knows the fake provider's names as a user's self-hosted servers (see fake_hosts)."""
    monkeypatch.setenv("LLMLENS_HOSTS", hosts_variable(_fake_server))


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """llmlens configured as an app would: rows into a SQLite file, nothing else."""
    url = f"sqlite:///{tmp_path / 'llmlens.db'}"
    llmlens.configure(db_url=url)
    return url
