"""Fixtures for decorator tests: the fake provider, real SDK clients, and in-memory spans."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_hosts import claude_url, hosts_variable
from fake_provider import FakeProvider, Reply
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmlens
from llmlens.collector.normalize import is_llm_span


@pytest.fixture(scope="session")
def _fake_server() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fake_hosts(_fake_server: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    """llmlens knows the fake provider's names as a user's self-hosted servers (see fake_hosts)."""
    monkeypatch.setenv("LLMLENS_HOSTS", hosts_variable(_fake_server))


@pytest.fixture
def fake(_fake_server: FakeProvider) -> Iterator[FakeProvider]:
    """The fake provider, with an empty script and no recorded requests."""
    _fake_server._queue.clear()
    _fake_server.requests.clear()
    _fake_server.default = Reply()
    yield _fake_server
    _fake_server._queue.clear()


@pytest.fixture
def provider() -> TracerProvider:
    return TracerProvider()


class Spans:
    """Finished spans, flushed on read."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def all(self) -> list[ReadableSpan]:
        llmlens.flush()
        return list(self.exporter.get_finished_spans())

    def llmlens(self) -> list[ReadableSpan]:
        return [s for s in self.all() if s.instrumentation_scope and s.instrumentation_scope.name == "llmlens"]

    def rows(self) -> list[ReadableSpan]:
        """llmlens spans that become rows: captured requests, and attempts that captured none."""
        return [s for s in self.llmlens() if is_llm_span(s.attributes or {}, "llmlens")]

    def one(self) -> ReadableSpan:
        """The one row span (a call that made one request, or none through httpx)."""
        spans = self.rows()
        assert len(spans) == 1, [dict(s.attributes or {}) for s in spans]
        return spans[0]

    def attempts(self) -> list[ReadableSpan]:
        return [s for s in self.llmlens() if (s.attributes or {}).get("llmlens.span_role") == "attempt"]


@pytest.fixture
def spans(provider: TracerProvider) -> Spans:
    """llmlens configured to export into memory through an explicit TracerProvider."""
    exporter = InMemorySpanExporter()
    llmlens.configure(tracer_provider=provider, exporter=exporter)
    return Spans(exporter)


@pytest.fixture
def openai_client(fake: FakeProvider):  # type: ignore[no-untyped-def]
    import openai

    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture
def anthropic_client(fake: FakeProvider):  # type: ignore[no-untyped-def]
    import anthropic

    # Native tracing off: the merge tests turn it on explicitly.
    with anthropic.Anthropic(base_url=claude_url(fake), api_key="test", max_retries=0,
                             open_telemetry=False) as client:
        yield client
