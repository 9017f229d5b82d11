"""Fixtures for collector tests: OTLP request builders and a collector in a subprocess."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_process import CollectorProcess, module_collector, start_collector
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

# LiteLLM fetches its model price map from the internet when imported, unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

BASE_NS = 1_780_000_000_000_000_000  # 2026-05-28, inside genai-prices' data


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, (list, tuple)):
        return KeyValue(key=key, value=AnyValue(array_value={"values": [_kv("", v).value for v in value]}))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def build_request(
    n: int = 3,
    *,
    seed: int = 1,
    service: str = "billing",
    scope: str = "opentelemetry.instrumentation.openai_v2",
    attributes: dict[str, Any] | None = None,
) -> ExportTraceServiceRequest:
    """``n`` OpenAI chat spans (GenAI conventions) with ids derived from ``seed``."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(_kv("service.name", service))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = scope
    for i in range(n):
        span = scope_spans.spans.add()
        span.trace_id = seed.to_bytes(8, "big") + (i + 1).to_bytes(8, "big")
        span.span_id = (seed * 1_000_003 + i + 1).to_bytes(8, "big")
        span.name = "chat gpt-4o-mini"
        span.kind = 3
        span.start_time_unix_nano = BASE_NS + i * 1_000_000
        span.end_time_unix_nano = span.start_time_unix_nano + 850_000_000
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 200,
            "gen_ai.response.finish_reasons": ("stop",),
            **(attributes or {}),
        }
        span.attributes.extend(_kv(k, v) for k, v in attrs.items())
    return request


@pytest.fixture
def span_request() -> Callable[..., ExportTraceServiceRequest]:
    """Build OTLP requests of GenAI spans: ``span_request(n, seed=..., attributes={...})``."""
    return build_request


@pytest.fixture
def run_collector(tmp_path: Path) -> Iterator[Callable[..., CollectorProcess]]:
    """Start collectors in subprocesses (``run_collector(db_url, "--token", "t")``); stopped after the test.

    ``grpc=True`` also starts the OTLP/gRPC receiver, on ``collector.grpc_port``.
    """
    started: list[CollectorProcess] = []

    def run(
        db_url: str, *args: str, env: dict[str, str] | None = None, wait_healthy: bool = True, grpc: bool = False
    ) -> CollectorProcess:
        collector = start_collector(
            db_url, tmp_path / f"collector-{len(started)}.log", *args, env=env, wait_healthy=wait_healthy,
            grpc=grpc,
        )
        started.append(collector)
        return collector

    yield run
    for collector in started:
        collector.shut_down()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared_collector(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CollectorProcess]:
    """One collector process (two workers, HTTP and gRPC) per database for a whole test module.

    Tests tell their rows apart by service name; ``collector.extra["db_url"]`` is the store.
    """
    with module_collector(request, tmp_path_factory) as collector:
        yield collector


@pytest.fixture
def ingest_spans(sqlite_url: str) -> Callable[..., list[dict[str, Any]]]:
    """Send finished SDK spans through the collector's path: OTLP protobuf, decode, ingest, store.

    ``ingest_spans(spans, capture_content=False)`` returns the stored rows, oldest first.
    """
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from llmlens.collector.ingest import Ingestor
    from llmlens.collector.otlp import decode_protobuf
    from llmlens.collector.pricing import Pricer
    from llmlens.collector.store import open_store

    store = open_store(sqlite_url)

    def ingest(spans: Any, capture_content: bool = False) -> list[dict[str, Any]]:
        body = encode_spans(list(spans)).SerializeToString()
        batch = decode_protobuf(body)
        assert batch.rejected == 0, batch.message
        Ingestor(store, Pricer(), capture_content=capture_content).ingest(batch.records)
        return store.fetch_rows()

    return ingest


@pytest.fixture
def own_postgres() -> Iterator[Any]:
    """A PostgreSQL server of this test's own, so stopping it disturbs no other test."""
    from pgserver import PostgresServer  # type: ignore[import-not-found]

    from llmlens.collector.store import dispose_engines

    try:
        server = PostgresServer()
        server.start()
    except Exception as exc:
        if os.environ.get("LLMLENS_TEST_STRICT"):  # in CI every test must run
            pytest.fail(f"no PostgreSQL server binaries: {exc}")
        pytest.skip(f"no PostgreSQL server binaries: {exc}")
    try:
        yield server
    finally:
        dispose_engines()
        server.stop("immediate")


@pytest.fixture
def fake_provider() -> Iterator[Any]:
    """The fake OpenAI/Anthropic HTTP server from tests/support, on loopback."""
    from fake_provider import FakeProvider  # type: ignore[import-not-found]

    with FakeProvider() as fake:
        yield fake
