"""A process that spooled spans through a brief outage stores them as it exits, if it can.

Short jobs (a cron task, a worker of a pool) often end right after their last calls. When
those calls met an outage that was over by exit time, the spans must reach the store then,
not wait on disk for whichever process next writes to that database.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmlens.collector._spool import SpoolSettings, has_segments
from llmlens.collector.exporter import StoreSpanExporter
from llmlens.collector.store import dispose_engines, open_store


def _spans(n: int) -> list[Any]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "nightly"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for i in range(n):
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 100 + i,
            "gen_ai.usage.output_tokens": 10,
        }):
            pass
    return list(memory.get_finished_spans())


@pytest.fixture
def later_database(pg_server_url: str) -> Iterator[tuple[str, Callable[[], None]]]:
    """The URL of a PostgreSQL database that does not exist yet (the store is unavailable),
    and a function that creates it (the store is back)."""
    import psycopg

    admin = pg_server_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"exit_{uuid.uuid4().hex[:12]}"

    def create() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    yield pg_server_url.rsplit("/", 1)[0] + "/" + name, create
    dispose_engines()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_spans_spooled_before_the_store_came_back_are_stored_at_shutdown(
    later_database: tuple[str, Callable[[], None]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, create = later_database
    spool = SpoolSettings(tmp_path / "spool")
    # A probe interval longer than the test: only the shutdown can store what was spooled.
    exporter = StoreSpanExporter(url, spool=spool, probe_interval=3600)
    with caplog.at_level(logging.WARNING, logger="llmlens"):
        assert exporter.export(_spans(40)).name == "SUCCESS"
        assert exporter.spooled == 40 and has_segments(spool.directory)
        create()
        exporter.shutdown()
    assert open_store(url).count_rows() == 40
    assert not has_segments(spool.directory)
    assert exporter.replayed == 40 and exporter.dropped == 0
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "spooled 40 spans during the outage, 40 spooled spans now stored" in messages, messages


def test_spans_of_an_outage_that_outlasts_the_process_stay_spooled_for_the_next_one(
    later_database: tuple[str, Callable[[], None]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, create = later_database
    spool = SpoolSettings(tmp_path / "spool")
    exporter = StoreSpanExporter(url, spool=spool, probe_interval=3600)
    with caplog.at_level(logging.WARNING, logger="llmlens"):
        assert exporter.export(_spans(40)).name == "SUCCESS"
        exporter.shutdown()  # the store is still down
    assert has_segments(spool.directory) and exporter.dropped == 0
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert f"stored 0 spooled spans at exit; the rest stay in {spool.directory}" in messages, messages

    create()
    following = StoreSpanExporter(url, spool=spool, probe_interval=0.05)
    assert following.export(_spans(1)).name == "SUCCESS"
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
    later_database: tuple[str, Callable[[], None]], tmp_path: Path
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
