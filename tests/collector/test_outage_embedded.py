"""A PostgreSQL outage under the embedded exporter: spans are spooled to disk, then all stored once,
by the process itself (in the background, or as it exits) or by the next one.

Short jobs (a cron task, a pool worker) often end right after their last calls: when those
calls met an outage that was over by exit time, the spans reach the store then, not wait
on disk for whichever process next writes to that database.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from pgserver import Databases
from sqlalchemy import text

import llmlens
from llmlens.collector._spool import SpoolSettings, has_segments
from llmlens.collector.exporter import StoreSpanExporter
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
    messages = " | ".join(caplog.messages)
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


@pytest.fixture
def later_database(pg_databases: Databases) -> tuple[str, Callable[[], object]]:
    """The URL of a PostgreSQL database that does not exist yet (the store is unavailable),
    and a function that creates it (the store is back). Dropped after the test."""
    name = pg_databases.reserve("later")
    return pg_databases.url_of(name), lambda: pg_databases.create(name)


def test_spans_the_full_spool_cannot_take_are_counted_logged_exactly_and_persisted_once_the_store_is_back(
    later_database: tuple[str, Callable[[], object]], tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from llmlens.collector.queries import Filters, drops_by_cause

    url, create = later_database
    exporter = StoreSpanExporter(url, spool=SpoolSettings(tmp_path / "spool", max_bytes=20_000),
                                 probe_interval=0.1)
    small, large = _spans(5, seed=1), _spans(300, seed=2)
    with caplog.at_level(logging.WARNING, logger="llmlens"):
        assert exporter.export(small).name == "SUCCESS"  # spooled
        assert exporter.export(large).name == "FAILURE"  # past the spool's limit
        assert not exporter.force_flush()  # something was lost since the last flush
        assert exporter.force_flush()
        create()
        assert _wait_for_rows(url, 5) == 5
        deadline = time.monotonic() + 30
        while drops_by_cause(open_store(url).engine, Filters()) == {} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert drops_by_cause(open_store(url).engine, Filters()) == {"spool_full": 300}
        assert drops_by_cause(open_store(url).engine, Filters(services=("billing",))) == {"spool_full": 300}
        exporter.shutdown()
    messages = caplog.messages
    assert any(m.startswith("llmlens: dropped 300 spans (spool full)") for m in messages), messages
    assert any("spooled 5 spans during the outage, 5 spooled spans now stored; lost 300 (spool full: 300)" in m
               for m in messages), messages
    assert exporter.drops.totals == {"spool_full": 300}


class _Spooled(NamedTuple):
    exporter: StoreSpanExporter
    spool: SpoolSettings
    url: str
    create: Callable[[], object]


@pytest.fixture
def spooled(later_database: tuple[str, Callable[[], object]], tmp_path: Path,
            caplog: pytest.LogCaptureFixture) -> _Spooled:
    """An exporter that spooled 40 spans, the store being unavailable (``create`` brings it
    back), with llmlens' warnings captured. Its probe interval is longer than any test:
    only its shutdown can store them."""
    caplog.set_level(logging.WARNING, logger="llmlens")
    url, create = later_database
    spool = SpoolSettings(tmp_path / "spool")
    exporter = StoreSpanExporter(url, spool=spool, probe_interval=3600)
    assert exporter.export(_spans(40, seed=3)).name == "SUCCESS"
    assert exporter.spooled == 40 and has_segments(spool.directory)
    return _Spooled(exporter, spool, url, create)


def test_spans_spooled_before_the_store_came_back_are_stored_at_shutdown(
    spooled: _Spooled, caplog: pytest.LogCaptureFixture
) -> None:
    exporter, spool, url, create = spooled
    create()
    exporter.shutdown()
    assert open_store(url).count_rows() == 40
    assert not has_segments(spool.directory)
    assert exporter.replayed == 40 and exporter.dropped == 0
    messages = " | ".join(caplog.messages)
    assert "spooled 40 spans during the outage, 40 spooled spans now stored" in messages, messages


def test_spans_of_an_outage_that_outlasts_the_process_stay_spooled_for_the_next_one(
    spooled: _Spooled, caplog: pytest.LogCaptureFixture
) -> None:
    exporter, spool, url, create = spooled
    exporter.shutdown()  # the store is still down
    assert has_segments(spool.directory) and exporter.dropped == 0
    messages = " | ".join(caplog.messages)
    assert f"stored 0 spooled spans at exit; the rest stay in {spool.directory}" in messages, messages

    create()
    following = StoreSpanExporter(url, spool=spool, probe_interval=0.05)
    assert following.export(_spans(1, seed=4)).name == "SUCCESS"
    # Its first batch finds the leftovers and replays them in the background; its
    # shutdown stores whatever that has not reached yet.
    following.shutdown()
    assert open_store(url).count_rows() == 41
    assert not has_segments(spool.directory)


# A short job: configured through the public API, its calls spooled, the store back only
# once its work is done, and then it exits through llmlens.shutdown().
_JOB = textwrap.dedent("""
    import sys
    from opentelemetry.sdk.trace import TracerProvider
    import llmlens

    url = sys.argv[1]
    provider = TracerProvider()
    llmlens.configure(db_url=url, tracer_provider=provider)
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for i in range(25):
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 10 + i,
            "gen_ai.usage.output_tokens": 3,
        }):
            pass
    assert llmlens.flush(30)  # spooled: the store is unavailable
    print("spooled", flush=True)
    sys.stdin.readline()  # until the store is back
    sys.exit(0 if llmlens.shutdown(30) else 3)
""")


def test_a_short_job_whose_store_comes_back_before_it_exits_leaves_nothing_on_disk(
    later_database: tuple[str, Callable[[], object]], tmp_path: Path
) -> None:
    url, create = later_database
    env = {**os.environ, "LLMLENS_SPOOL_DIR": str(tmp_path / "spool")}
    job = subprocess.Popen([sys.executable, "-c", _JOB, url], env=env, text=True,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert job.stdout is not None
    line = job.stdout.readline().strip()
    if line != "spooled":
        job.kill()
        raise AssertionError(f"expected 'spooled', got {line!r}: {job.communicate()[1]}")
    create()
    _, stderr = job.communicate("\n", timeout=120)
    assert job.returncode == 0, stderr
    assert open_store(url).count_rows() == 25, stderr
    assert not list((tmp_path / "spool").glob("*/*.seg")), stderr
    assert "25 spooled spans now stored" in stderr, stderr
