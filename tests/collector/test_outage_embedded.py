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
