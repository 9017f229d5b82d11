"""A PostgreSQL outage under the embedded exporter: spans are spooled to disk, then all stored once."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import text

import llmlens
from llmlens.collector.store import open_store


def _call(tracer: Any, i: int) -> None:
    with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 100 + i,
        "gen_ai.usage.output_tokens": 10,
    }):
        pass


def _wait_for_rows(url: str, expected: int, timeout: float = 90) -> int:
    store = open_store(url)
    deadline = time.monotonic() + timeout
    count = store.count_rows()
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        count = store.count_rows()
    return count


def test_a_ten_second_postgresql_outage_under_the_embedded_exporter_loses_and_duplicates_nothing(
    own_postgres: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = own_postgres.url
    open_store(url)
    provider = TracerProvider(resource=Resource.create({"service.name": "outage"}))
    llmlens.configure(db_url=url, tracer_provider=provider)
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    made = 0
    stop = threading.Event()

    def app() -> None:  # calls keep coming through the whole outage
        nonlocal made
        while not stop.is_set():
            _call(tracer, made)
            made += 1
            time.sleep(0.004)

    caller = threading.Thread(target=app)
    with caplog.at_level(logging.WARNING, logger="llmlens"):
        caller.start()
        try:
            time.sleep(1.5)
            own_postgres.stop("fast")
            time.sleep(10)
            own_postgres.restart_later()
            own_postgres.wait_ready()
            time.sleep(1.5)
        finally:
            stop.set()
            caller.join()
        assert llmlens.flush(30)
        stored = _wait_for_rows(url, made)

    assert made > 1000
    assert stored == made
    with open_store(url).engine.connect() as conn:
        distinct = conn.execute(text("SELECT count(DISTINCT (trace_id, span_id)) FROM llm_spans")).scalar()
    assert distinct == made
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "the store is unavailable" in messages
    recovered = re.search(r"spooled (\d+) spans during the outage, (\d+) spooled spans now stored", messages)
    assert recovered is not None, messages
    assert int(recovered.group(1)) == int(recovered.group(2)) > 0
    assert "dropped" not in messages


def _spans(n: int, seed: int) -> list[Any]:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "billing"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for i in range(n):
        _call(tracer, seed * 10_000 + i)
    return list(memory.get_finished_spans())


def test_spans_the_full_spool_cannot_take_are_counted_logged_exactly_and_persisted_once_the_store_is_back(
    pg_server_url: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import uuid

    import psycopg

    from llmlens.collector._spool import SpoolSettings
    from llmlens.collector.exporter import StoreSpanExporter
    from llmlens.collector.queries import Filters, drops_by_cause
    from llmlens.collector.store import dispose_engines

    name = f"later_{uuid.uuid4().hex[:12]}"  # a database that does not exist yet: unavailable
    url = pg_server_url.rsplit("/", 1)[0] + "/" + name
    exporter = StoreSpanExporter(url, spool=SpoolSettings(tmp_path / "spool", max_bytes=20_000),
                                 probe_interval=0.1)
    small, large = _spans(5, seed=1), _spans(300, seed=2)
    with caplog.at_level(logging.WARNING, logger="llmlens"):
        assert exporter.export(small).name == "SUCCESS"  # spooled
        assert exporter.export(large).name == "FAILURE"  # past the spool's limit
        assert not exporter.force_flush()  # something was lost since the last flush
        assert exporter.force_flush()
        admin = pg_server_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            assert _wait_for_rows(url, 5) == 5
            deadline = time.monotonic() + 30
            while drops_by_cause(open_store(url).engine, Filters()) == {} and time.monotonic() < deadline:
                time.sleep(0.1)
            assert drops_by_cause(open_store(url).engine, Filters()) == {"spool_full": 300}
            assert drops_by_cause(open_store(url).engine, Filters(services=("billing",))) == {"spool_full": 300}
            exporter.shutdown()
        finally:
            dispose_engines()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("llmlens: dropped 300 spans (spool full)") for m in messages), messages
    assert any("spooled 5 spans during the outage, 5 spooled spans now stored; lost 300 (spool full: 300)" in m
               for m in messages), messages
    assert exporter.drops.totals == {"spool_full": 300}
