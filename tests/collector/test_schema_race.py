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

# A worker: configure the embedded exporter, wait for the start signal, write its spans,
# shut down (which flushes); exit 0 only when llmlens says nothing was lost.
_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from opentelemetry.sdk.trace import TracerProvider
    import llmlens

    url, go, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    provider = TracerProvider()
    llmlens.configure(db_url=url, tracer_provider=provider)
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    while not go.exists():
        time.sleep(0.001)
    for i in range(count):
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 10 + i,
            "gen_ai.usage.output_tokens": 3,
        }):
            pass
    sys.exit(0 if llmlens.shutdown(60) else 3)
""")


def _race(url: str, go: Path) -> list[tuple[int, str]]:
    workers = [
        subprocess.Popen([sys.executable, "-c", _WORKER, url, str(go), str(SPANS)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(PROCESSES)
    ]
    time.sleep(0.5)  # let them import and configure, so they start together
    go.touch()
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    return [(w.returncode, out) for w, out in zip(workers, outputs, strict=True)]


def test_four_processes_opening_one_new_sqlite_store_at_once_all_store_every_span(tmp_path: Path) -> None:
    for run in range(RUNS):
        url = f"sqlite:///{tmp_path / f'run{run}' / 'llmlens.db'}"
        outcomes = _race(url, tmp_path / f"go{run}")
        assert [code for code, _ in outcomes] == [0] * PROCESSES, outcomes
        # The workers' output tells a lost batch (spooled after a lock wait, say) from a lost row.
        assert open_store(url).count_rows() == PROCESSES * SPANS, outcomes
        assert not any("outdated" in out or "upgrade" in out or "dropped" in out for _, out in outcomes)
    dispose_engines()


def test_four_processes_opening_one_new_postgresql_store_at_once_all_store_every_span(
    pg_databases: Databases, tmp_path: Path
) -> None:
    for run in range(RUNS):
        url = pg_databases.new("race")
        outcomes = _race(url, tmp_path / f"go{run}")
        assert [code for code, _ in outcomes] == [0] * PROCESSES, outcomes
        # The workers' output tells a lost batch (spooled after a lock wait, say) from a lost row.
        assert open_store(url).count_rows() == PROCESSES * SPANS, outcomes
        assert not any("outdated" in out or "upgrade" in out or "dropped" in out for _, out in outcomes)
        dispose_engines()


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
