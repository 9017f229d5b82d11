"""Several processes opening one brand-new store at once: every one succeeds, no span is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pgserver import Databases

from llmlens.collector.store import dispose_engines, open_store

PROCESSES = 4
SPANS = 500
RUNS = 5

# A worker, through every run in turn: point llmlens at the run's new store, say it is
# ready, wait for the start signal, write its spans and shut down (which flushes); exit 0
# only when llmlens says nothing was lost. The store opens at the first export, so the
# workers open it together; one process serves every run, as importing costs seconds here.
_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from opentelemetry.sdk.trace import TracerProvider
    import llmlens

    folder, index, count, urls = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    provider = TracerProvider()
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for run, url in enumerate(urls):
        llmlens.configure(db_url=url, tracer_provider=provider)
        (folder / f"ready{run}.{index}").touch()
        go = folder / f"go{run}"
        while not go.exists():
            time.sleep(0.001)
        for i in range(count):
            with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 10 + i,
                "gen_ai.usage.output_tokens": 3,
            }):
                pass
        if not llmlens.shutdown(60):
            print(f"run {run}: llmlens lost spans", flush=True)
            sys.exit(3)
""")


def _race(urls: list[str], folder: Path) -> list[tuple[int, str]]:
    """Run the workers over ``urls``, one new store a run; their exit codes and output."""
    workers = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(folder), str(index), str(SPANS), *urls],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for index in range(PROCESSES)
    ]
    for run in range(len(urls)):
        # A run starts when every worker is ready for it (or one has given up: its output says why).
        deadline = time.monotonic() + 120
        while not all((folder / f"ready{run}.{index}").exists() for index in range(PROCESSES)):
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                break
            time.sleep(0.005)
        (folder / f"go{run}").touch()
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    return [(w.returncode, out) for w, out in zip(workers, outputs, strict=True)]


def _assert_every_span_stored(urls: list[str], outcomes: list[tuple[int, str]]) -> None:
    assert [code for code, _ in outcomes] == [0] * PROCESSES, outcomes
    # The workers' output tells a lost batch (spooled after a lock wait, say) from a lost row.
    assert not any("outdated" in out or "upgrade" in out or "dropped" in out for _, out in outcomes)
    for url in urls:
        assert open_store(url).count_rows() == PROCESSES * SPANS, (url, outcomes)
    dispose_engines()


def test_four_processes_opening_one_new_sqlite_store_at_once_all_store_every_span(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / f'run{run}' / 'llmlens.db'}" for run in range(RUNS)]
    _assert_every_span_stored(urls, _race(urls, tmp_path))


def test_four_processes_opening_one_new_postgresql_store_at_once_all_store_every_span(
    pg_databases: Databases, tmp_path: Path
) -> None:
    urls = [pg_databases.new("race") for _ in range(RUNS)]
    _assert_every_span_stored(urls, _race(urls, tmp_path))


def test_a_store_that_has_tables_but_no_revision_is_not_called_outdated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE llm_spans (id INTEGER PRIMARY KEY)")
    conn.close()
    from llmlens.collector.store import StoreOutdated

    with pytest.raises(StoreOutdated) as refused:
        open_store(f"sqlite:///{path}")
    assert "upgrade" not in str(refused.value) and "no llmlens schema revision" in str(refused.value)
    dispose_engines()
    assert os.path.exists(path)
