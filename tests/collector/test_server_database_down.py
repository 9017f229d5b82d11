"""With its PostgreSQL stopped, the collector answers 503 and loses nothing it accepted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pgserver import PostgresServer  # type: ignore[import-not-found]

from llmlens.collector.store import dispose_engines, open_store

PROTOBUF = {"content-type": "application/x-protobuf"}


def _chat_spans(n: int) -> list[Any]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "outage"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for i in range(n):
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 10 + i,
                "gen_ai.usage.output_tokens": 5,
            },
        ):
            pass
    return list(memory.get_finished_spans())


def test_with_the_database_stopped_exports_get_503_and_nothing_accepted_is_lost_once_it_is_back(
    own_postgres: PostgresServer, run_collector: Callable[..., Any], span_request: Callable[..., Any]
) -> None:
    url = own_postgres.url
    collector = run_collector(url)
    before = span_request(4, seed=1).SerializeToString()
    assert httpx.post(collector.traces_url, content=before, headers=PROTOBUF).status_code == 200
    stored_before = open_store(url).fetch_rows()
    assert len(stored_before) == 4
    dispose_engines()

    own_postgres.stop("fast")
    during = span_request(3, seed=2).SerializeToString()
    refused = httpx.post(collector.traces_url, content=during, headers=PROTOBUF, timeout=30)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    health = httpx.get(collector.url + "/healthz", timeout=10)
    assert health.status_code == 503 and health.json()["database"] == "down"

    # A real exporter meanwhile: it gets 503s, waits Retry-After, and retries until the
    # database is back (it is restarted while the exporter is still retrying).
    spans = _chat_spans(5)
    results: list[SpanExportResult] = []
    exporter = OTLPSpanExporter(endpoint=collector.traces_url, timeout=40)
    sender = threading.Thread(target=lambda: results.append(exporter.export(spans)))
    sender.start()
    time.sleep(2.5)
    own_postgres.restart_later()
    own_postgres.wait_ready()
    sender.join(60)
    exporter.shutdown()
    assert results == [SpanExportResult.SUCCESS]

    # The batch refused during the outage is sent again, as its exporter would.
    assert httpx.post(collector.traces_url, content=during, headers=PROTOBUF, timeout=30).status_code == 200
    assert httpx.get(collector.url + "/healthz", timeout=10).status_code == 200

    rows = open_store(url).fetch_rows()
    assert len(rows) == 4 + 3 + 5
    ids = {row["span_id"] for row in rows}
    assert {row["span_id"] for row in stored_before} <= ids
    assert {format(span.context.span_id, "016x") for span in spans} <= ids
    assert "Traceback" not in collector.output()
    metrics = httpx.get(collector.url + "/metrics").text
    assert 'llmlens_collector_responses_total{code="503"}' in metrics
    assert collector.stop() == 0
