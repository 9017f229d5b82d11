"""With its PostgreSQL stopped, the collector spools what it acknowledges and loses nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from llmlens.collector.store import dispose_engines, open_store

PROTOBUF = {"content-type": "application/x-protobuf"}


def _rows(url: str, expected: int, timeout: float = 90) -> int:
    """The stored row count, once it reaches ``expected`` or the time is up (replay is async)."""
    store = open_store(url)
    deadline = time.monotonic() + timeout
    count = store.count_rows()
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        count = store.count_rows()
    with store.engine.connect() as conn:
        distinct = conn.execute(text("SELECT count(DISTINCT (trace_id, span_id)) FROM llm_spans")).scalar()
    assert distinct == count
    dispose_engines()
    return count


def _metric(text: str, name: str) -> int:
    values = [sample.value for family in text_string_to_metric_families(text) for sample in family.samples
              if sample.name == name and not sample.labels]
    assert len(values) == 1, text
    return int(values[0])


def test_a_ten_second_postgresql_outage_behind_the_collector_loses_and_duplicates_nothing(
    own_postgres: Any, run_collector: Callable[..., Any]
) -> None:
    url = own_postgres.url
    collector = run_collector(url)
    # The stock OpenTelemetry pipeline of an application, sending throughout the outage.
    provider = TracerProvider(resource=Resource.create({"service.name": "outage"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=collector.traces_url),
                                                   schedule_delay_millis=200))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    made = 0
    stop = threading.Event()

    def app() -> None:
        nonlocal made
        while not stop.is_set():
            with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 10 + made,
                "gen_ai.usage.output_tokens": 5,
            }):
                pass
            made += 1
            time.sleep(0.004)

    caller = threading.Thread(target=app)
    caller.start()
    try:
        time.sleep(1.5)
        own_postgres.stop("fast")
        time.sleep(5)
        health = httpx.get(collector.url + "/healthz", timeout=10)
        assert health.status_code == 200  # still taking batches: into the spool
        assert health.json()["status"] == "degraded" and health.json()["database"] == "down"
        assert health.json()["spool_records"] > 0
        time.sleep(5)
        own_postgres.restart_later()
        own_postgres.wait_ready()
        time.sleep(1.5)
    finally:
        stop.set()
        caller.join()
    assert provider.force_flush(30_000)
    provider.shutdown()

    assert made > 1000
    assert _rows(url, made) == made
    metrics = httpx.get(collector.url + "/metrics").text
    spooled = _metric(metrics, "llmlens_collector_spans_spooled_total")
    replayed = _metric(metrics, "llmlens_collector_spans_replayed_total")
    assert spooled == replayed > 0
    assert 'llmlens_collector_responses_total{code="503"}' not in metrics
    assert "Traceback" not in collector.output()
    assert collector.stop() == 0


def test_a_collector_restarted_mid_outage_loses_nothing_it_spooled(
    own_postgres: Any, run_collector: Callable[..., Any], span_request: Callable[..., Any]
) -> None:
    url = own_postgres.url
    first = run_collector(url)
    assert httpx.post(first.traces_url, content=span_request(4, seed=1).SerializeToString(),
                      headers=PROTOBUF).status_code == 200
    own_postgres.stop("fast")
    for seed in range(2, 12):  # acknowledged while the database is down: spooled
        answer = httpx.post(first.traces_url, content=span_request(50, seed=seed).SerializeToString(),
                            headers=PROTOBUF, timeout=30)
        assert answer.status_code == 200, answer.text
    assert first.stop() == 0  # SIGTERM during the outage

    second = run_collector(url)  # starts although its database is still down
    assert httpx.get(second.url + "/healthz").json()["spool_records"] >= 10
    answer = httpx.post(second.traces_url, content=span_request(7, seed=99).SerializeToString(),
                        headers=PROTOBUF, timeout=30)
    assert answer.status_code == 200
    own_postgres.restart_later()
    own_postgres.wait_ready()

    assert _rows(url, 4 + 10 * 50 + 7) == 4 + 10 * 50 + 7
    assert "Traceback" not in first.output() + second.output()
    assert second.stop() == 0


def test_with_the_database_down_and_the_spool_full_retry_after_grows_with_the_outage(
    own_postgres: Any, run_collector: Callable[..., Any], span_request: Callable[..., Any]
) -> None:
    url = own_postgres.url
    collector = run_collector(url, "--spool-max-mb", "0.01")  # room for one small batch
    own_postgres.stop("fast")
    body = span_request(3, seed=1).SerializeToString()
    assert httpx.post(collector.traces_url, content=body, headers=PROTOBUF, timeout=30).status_code == 200
    big = span_request(100, seed=2).SerializeToString()
    waits = []
    for _ in range(4):
        refused = httpx.post(collector.traces_url, content=big, headers=PROTOBUF, timeout=30)
        assert refused.status_code == 503
        waits.append(int(refused.headers["retry-after"]))
        time.sleep(2)
    assert waits == sorted(waits) and waits[-1] > waits[0]
    assert httpx.get(collector.url + "/healthz").status_code == 503

    own_postgres.restart_later()
    own_postgres.wait_ready()
    deadline = time.monotonic() + 60
    answer = httpx.post(collector.traces_url, content=big, headers=PROTOBUF, timeout=30)
    while answer.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        answer = httpx.post(collector.traces_url, content=big, headers=PROTOBUF, timeout=30)
    assert answer.status_code == 200
    assert _rows(url, 103) == 103
    assert 'llmlens_collector_retry_after_seconds 1' in httpx.get(collector.url + "/metrics").text
    assert collector.stop() == 0
