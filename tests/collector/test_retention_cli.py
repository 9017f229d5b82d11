"""Retention from the command line: `llmlens db prune` and `llmlens collector --retention-days`."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rollup_oracle as oracle

from llmlens._cli import main
from llmlens.collector import queries
from llmlens.collector.queries import Filters
from llmlens.collector.store import Store, open_store


def _store_over_five_days(db_url: str) -> tuple[Store, list[dict[str, Any]], datetime]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(days=5)
    store = open_store(db_url)
    rows = oracle.random_rows(400, seed=21, start=start, days=4.9)
    assert store.insert_rows(rows) == len(rows)
    return store, rows, start


def _llmlens(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmlens", *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_db_prune_deletes_raw_rows_older_than_n_days_and_charts_keep_their_history(db_url: str) -> None:
    store, rows, start = _store_over_five_days(db_url)
    before = queries.summary(store.engine, Filters(start=start))
    cut = datetime.now(UTC) - timedelta(days=2)
    old = sum(1 for row in rows if row["start_time"] < cut - timedelta(minutes=5))

    done = _llmlens("db", "prune", "--db", db_url, "--raw-days", "2", "--batch", "50")

    assert done.returncode == 0, done.stderr
    left = store.fetch_rows()
    assert all(row["start_time"] >= cut - timedelta(minutes=5) for row in left)
    assert len(rows) - old >= len(left) >= len(rows) - old - sum(
        1 for row in rows if abs(row["start_time"] - cut) <= timedelta(minutes=5))
    assert f"deleted {len(rows) - len(left)} raw rows" in done.stdout
    after = queries.summary(store.engine, Filters(start=start))
    assert (after["requests"], after["calls"], after["spend_usd"]) == (before["requests"], before["calls"],
                                                                       before["spend_usd"])
    first_raw, _ = queries.raw_time_extent(store.engine)
    assert first_raw is not None and first_raw >= cut - timedelta(minutes=5)


def test_db_prune_with_rollup_days_also_deletes_old_rollups(db_url: str) -> None:
    store, _rows, start = _store_over_five_days(db_url)

    done = _llmlens("db", "prune", "--db", db_url, "--raw-days", "1", "--rollup-days", "3")

    assert done.returncode == 0, done.stderr
    assert queries.summary(store.engine, Filters(end=start + timedelta(days=1)))["requests"] == 0
    assert queries.summary(store.engine, Filters(start=datetime.now(UTC) - timedelta(hours=20)))["requests"] > 0


def test_db_prune_refuses_nonsense_retention_in_one_line_and_deletes_nothing(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store, rows, _ = _store_over_five_days(db_url)
    for args in (["--raw-days", "0"], ["--raw-days", "-3"], ["--raw-days", "3", "--rollup-days", "1"]):
        # In this process: what is tested is the refusal, and a process of its own costs seconds.
        try:
            code = main(["db", "prune", "--db", db_url, *args])
        except SystemExit as exited:
            code = exited.code
        err = capsys.readouterr().err
        assert code not in (0, None), args
        assert "--raw-days" in err and "Traceback" not in err
    assert store.count_rows() == len(rows)


def test_the_collector_prunes_at_start_with_retention_days(db_url: str,
                                                            run_collector: Callable[..., Any]) -> None:
    store, rows, _ = _store_over_five_days(db_url)
    cut = datetime.now(UTC) - timedelta(days=3)

    collector = run_collector(db_url, "--retention-days", "3")

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(row["start_time"] < cut - timedelta(minutes=5)
                                              for row in store.fetch_rows()):
        time.sleep(0.2)
    left = store.fetch_rows()
    assert left and all(row["start_time"] >= cut - timedelta(minutes=5) for row in left)
    assert len(left) < len(rows)
    assert collector.stop() == 0
    assert "pruning failed" not in collector.output()
