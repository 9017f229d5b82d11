"""Rollups answer every aggregate exactly as the raw rows would, on SQLite and PostgreSQL.

Each test writes seeded random rows through the real write path, then compares every
function of ``llmlens.collector.queries`` with the same aggregate computed in Python from
the raw rows (``tests/support/rollup_oracle.py``), for random filters and groupings:
after duplicates, concurrent writers in several processes, a re-price, a prune, and a
migration of a store that had no rollups.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rollup_oracle as oracle
from sqlalchemy import column, delete, insert, table

from llmlens.collector import migrate, queries
from llmlens.collector.queries import Filters
from llmlens.collector.store import (
    BUCKET_LADDER,
    RELATIVE_ERROR,
    Store,
    get_engine,
    llm_spans,
    open_store,
    prune,
    reprice_rows,
)
from llmlens.collector.store._rollup import HOUR, SIX_HOURS, SUM_COLUMNS, Delta, KeyCache, _upsert_sql, folded_to

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
GROUPINGS: list[tuple[str, ...]] = [(), ("task",), ("model",), ("task", "prompt_version"), ("status", "failure_reason"),
                                    ("service", "provider"), ("response_model",), ("prompt_name", "model")]


def _fill(store: Store, rows: list[dict[str, Any]], batch: int = 97) -> int:
    return sum(store.insert_rows(rows[i:i + batch]) for i in range(0, len(rows), batch))


def _same_totals(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        else:
            assert got[key] == value, key


def _check_totals(store: Store, rows: list[dict[str, Any]], filters: Filters, by: tuple[str, ...]) -> None:
    chosen = oracle.select_rows(rows, filters)
    _same_totals(queries.summary(store.engine, filters), oracle.totals(chosen))
    assert queries.count_calls(store.engine, filters) == oracle.totals(chosen)["calls"]
    if by:
        got = {tuple(r[name] for name in by): r for r in queries.breakdown(store.engine, filters, by=by)}
        want = oracle.group(chosen, by)
        assert set(got) == set(want)
        for key, group_rows in want.items():
            _same_totals(got[key], oracle.totals(group_rows))
        waste = {tuple(r[name] for name in by): r for r in queries.retry_waste(store.engine, filters, by=by)}
        for key, group_rows in want.items():
            wasted = [r for r in group_rows if not (r["final"] and r["status"] == "ok")]
            if not wasted:
                assert key not in waste
                continue
            assert waste[key]["wasted_requests"] == len(wasted)
            assert waste[key]["retry_spend_usd"] == pytest.approx(
                sum(r["cost_usd"] or 0 for r in wasted if not r["final"]), rel=1e-9, abs=1e-12)
            assert waste[key]["unpriced_wasted_requests"] == sum(1 for r in wasted if r["cost_usd"] is None)


def _check_series(store: Store, rows: list[dict[str, Any]], filters: Filters, by: tuple[str, ...],
                  bucket: int) -> None:
    chosen = oracle.select_rows(rows, filters)
    got = {(r["bucket"], *(r[name] for name in by)): r
           for r in queries.timeseries(store.engine, filters, bucket_seconds=bucket, by=by or None)}
    want = oracle.group(chosen, by, bucket)
    assert set(got) == set(want)
    for key, group_rows in want.items():
        _same_totals(got[key], oracle.totals(group_rows))


def _check_percentiles(store: Store, rows: list[dict[str, Any]], filters: Filters, by: tuple[str, ...],
                       measure: str, bucket: int | None = None) -> None:
    chosen = oracle.select_rows(rows, filters)
    quantiles = (0.5, 0.9, 0.95, 0.99)
    got_rows = queries.latency_percentiles(store.engine, filters, by=by or None, measure=measure,  # type: ignore[arg-type]
                                           quantiles=quantiles, bucket_seconds=bucket)
    got = {(*((r["bucket"],) if bucket else ()), *(r[name] for name in by)): r for r in got_rows}
    want = {key: oracle.measure_values(group_rows, measure)
            for key, group_rows in oracle.group(chosen, by, bucket).items()}
    want = {key: values for key, values in want.items() if values}
    assert set(got) == set(want)
    for key, values in want.items():
        assert got[key]["n"] == len(values)
        assert got[key]["mean_ms"] == pytest.approx(sum(values) / len(values), rel=1e-9)
        for q in quantiles:
            exact = oracle.nearest_rank(values, q)
            assert got[key][f"p{q * 100:g}_ms"] == pytest.approx(exact, rel=RELATIVE_ERROR + 1e-9), (key, q)


def _check_everything(store: Store, rows: list[dict[str, Any]], seed: int, rounds: int = 12, *,
                      t0: datetime = T0, days: float = 3.0) -> None:
    rng = random.Random(seed)
    for _ in range(rounds):
        filters = oracle.random_filters(rng, t0, days)
        by = rng.choice(GROUPINGS)
        _check_totals(store, rows, filters, by)
        _check_series(store, rows, filters, by[:1], rng.choice(BUCKET_LADDER))
        _check_percentiles(store, rows, filters, by[:2], rng.choice(["call", "request", "ttft"]))
        _check_percentiles(store, rows, filters, by[:1], "call", rng.choice(BUCKET_LADDER))
        chosen = oracle.select_rows(rows, filters)
        options = queries.filter_options(store.engine, filters)
        in_range = oracle.select_rows(rows, filters.time_only())
        assert options["tasks"] == sorted({r["task"] for r in in_range if r["task"]})
        assert options["models"] == sorted({r["request_model"] for r in in_range if r["request_model"]})
        first, last = queries.time_extent(store.engine, filters)
        if not chosen:
            assert (first, last) == (None, None)
        else:
            minutes = [r["start_time"].replace(second=0, microsecond=0) for r in chosen]
            assert (first, last) == (min(minutes), max(minutes))


def test_every_aggregate_equals_the_raw_rows_for_random_filters_and_groupings(db_url: str) -> None:
    store = open_store(db_url)
    rows = oracle.random_rows(1500, seed=1, start=T0)
    assert _fill(store, rows) == len(rows)
    _check_everything(store, store.fetch_rows(), seed=2)


def test_duplicates_add_nothing_to_the_rollups(db_url: str) -> None:
    store = open_store(db_url)
    rows = oracle.random_rows(800, seed=3, start=T0)
    _fill(store, rows[:500])
    # Re-sent batches, duplicates inside one batch, and new rows mixed with old ones.
    assert store.insert_rows(rows[:200] + rows[:200]) == 0
    assert _fill(store, rows[300:] + rows[450:520], batch=113) == 300
    assert store.count_rows() == 800
    _check_everything(store, store.fetch_rows(), seed=4, rounds=6)


_WRITER = """
import json, sys, time
from datetime import datetime
from llmlens.collector.store import open_store
url, path, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = json.load(open(path))
for row in rows:
    row["start_time"] = datetime.fromisoformat(row["start_time"])
now = [0.0]
data_clock = sys.argv[4:] == ["data-clock"]  # the store's clock follows the rows' time
store = open_store(url, clock=(lambda: now[0]) if data_clock else time.time)
for i in range(0, len(rows), size):
    batch = rows[i:i + size]
    if data_clock:
        now[0] = max(r["start_time"].timestamp() for r in batch) + 60
    store.insert_rows(batch)
"""


def _write_in_processes(db_url: str, tmp_path: Path, slices: list[list[dict[str, Any]]], *args: str) -> None:
    # One writer process per slice, all started before any finishes; _WRITER's argv after
    # the rows file: batch size, "data-clock".
    processes = []
    for n, mine in enumerate(slices):
        path = tmp_path / f"rows{n}.json"
        path.write_text(json.dumps([{**r, "start_time": r["start_time"].isoformat()} for r in mine]))
        processes.append(subprocess.Popen([sys.executable, "-c", _WRITER, db_url, str(path), *args]))
    assert [p.wait(timeout=300) for p in processes] == [0] * len(slices)


def test_concurrent_writers_in_several_processes_never_lose_or_double_an_increment(
        db_url: str, tmp_path: Path) -> None:
    open_store(db_url)  # the schema exists before the writers race
    rows = oracle.random_rows(1200, seed=5, start=T0, days=0.2)  # few keys and buckets: contended rows
    slices = []
    for n in range(4):
        # Overlapping slices: every row is sent by two writers, in different orders.
        mine = (rows[n * 300:] + rows[: n * 300])[:600]
        random.Random(n).shuffle(mine)
        slices.append(mine)
    _write_in_processes(db_url, tmp_path, slices, "40")
    store = open_store(db_url)
    assert store.count_rows() == 1200
    _check_everything(store, store.fetch_rows(), seed=6, rounds=8)


class _Clock:
    """A store's clock that the test moves: when folds are due follows the data's time."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _mark(store: Store) -> int | None:
    with store.engine.connect() as conn:
        return folded_to(conn)


def test_minutes_folded_hourly_into_coarse_rollups_keep_every_aggregate_exact(db_url: str) -> None:
    # Live traffic: rows arrive seconds after their time, a few hours late (past the fold
    # of their hour). Aggregates are exact before, during and after the folds, and a prune
    # never takes minutes that are not folded yet.
    clock = _Clock(T0.timestamp())
    store = open_store(db_url, clock=clock)
    rows = sorted(oracle.random_rows(1500, seed=21, start=T0, days=0.5), key=lambda r: r["start_time"])
    rng = random.Random(22)
    late_until = (T0 + timedelta(hours=8)).timestamp()
    arrival = [r["start_time"].timestamp() + (rng.uniform(2 * HOUR, 4 * HOUR)
                                              if r["start_time"].timestamp() < late_until and rng.random() < 0.1
                                              else rng.uniform(0, 30)) for r in rows]
    order = sorted(range(len(rows)), key=arrival.__getitem__)
    marks = []
    late_after_fold = 0
    written: list[dict[str, Any]] = []
    for n, i in enumerate(range(0, len(order), 50)):
        batch = [rows[j] for j in order[i:i + 50]]
        mark = _mark(store)
        late_after_fold += sum(1 for r in batch if mark is not None and r["start_time"].timestamp() < mark)
        clock.now = max(arrival[j] for j in order[i:i + 50])
        assert store.insert_rows(batch) == len(batch)
        written += batch
        marks.append(_mark(store))
        if n % 6 == 5:
            _check_everything(store, store.fetch_rows(), seed=n, rounds=3, days=0.5)
    assert len(set(marks)) >= 8  # folded hour by hour, as the data's time went on
    assert late_after_fold > 20  # and late rows went straight to the folded hours
    assert marks[-1] is not None and any(r["start_time"].timestamp() >= marks[-1] for r in rows)  # the last hour
    rows = store.fetch_rows()
    _check_everything(store, rows, seed=23, rounds=8, days=0.5)
    # A prune past the mark keeps the minutes that are not folded yet.
    prune(store.engine, raw_before=T0 + timedelta(days=1))
    assert store.count_rows() == 0
    everything = oracle.totals(rows)
    _same_totals(queries.summary(store.engine, Filters()), everything)
    # Folding the rest moves every minute into the coarse grains, once.
    assert store.fold_rollups(now=(T0 + timedelta(days=2)).timestamp()) > max(arrival)
    _same_totals(queries.summary(store.engine, Filters()), everything)
    for measure in ("call", "request", "ttft"):
        _check_percentiles(store, rows, Filters(), ("task",), measure)
    _check_series(store, rows, Filters(), ("model",), HOUR)


def test_folds_racing_writers_in_several_processes_lose_and_double_nothing(db_url: str, tmp_path: Path) -> None:
    # Four processes write live traffic, every row twice, and each folds when its clock
    # says so: folds race each other and the other processes' batches.
    open_store(db_url)
    rows = sorted(oracle.random_rows(1200, seed=24, start=T0, days=0.3), key=lambda r: r["start_time"])
    slices = [[r for i, r in enumerate(rows) if (i - n * 300) % 1200 < 600] for n in range(4)]
    _write_in_processes(db_url, tmp_path, slices, "25", "data-clock")
    store = open_store(db_url)
    assert store.count_rows() == 1200
    mark = _mark(store)
    # The writers folded hour by hour as their data's time went on: the mark is inside the
    # data's range (a clock far past the data would have set it beyond, in one go).
    assert mark is not None and (T0 + timedelta(hours=5)).timestamp() <= mark < (T0 + timedelta(days=0.3)).timestamp()
    rows = store.fetch_rows()
    _check_everything(store, rows, seed=25, rounds=8, days=0.3)
    store.fold_rollups(now=(T0 + timedelta(days=1)).timestamp())
    _check_everything(store, rows, seed=26, rounds=4, days=0.3)


def test_a_reprice_keeps_the_rollups_equal_to_the_rows(db_url: str) -> None:
    store = open_store(db_url)
    _fill(store, oracle.random_rows(900, seed=7, start=T0))

    def new_price(row: dict[str, Any]) -> float | None:
        # Some rows change price, some become unpriced, unpriced ones get a price.
        if row["request_model"] == "llama":
            return 0.001
        if row["request_model"] == "gpt-4o":
            return None
        return (row["output_tokens"] or 0) * 2e-6

    result = reprice_rows(store.engine, new_price, since=T0 + timedelta(hours=20), chunk=128)
    assert result.changed > 0
    rows = store.fetch_rows()
    assert any(r["cost_usd"] == 0.001 for r in rows)
    _check_everything(store, rows, seed=8, rounds=8)


def test_a_prune_deletes_old_raw_rows_and_charts_of_older_ranges_still_work(db_url: str) -> None:
    store = open_store(db_url)
    rows = oracle.random_rows(1000, seed=9, start=T0)
    _fill(store, rows)
    before = store.fetch_rows()
    cut = T0 + timedelta(days=1, hours=7, minutes=13)
    result = prune(store.engine, raw_before=cut, batch=64)
    assert result.raw_rows == sum(1 for r in before if r["start_time"] < cut) > 0
    assert result.minute_rollups > 0
    assert min(r["start_time"] for r in store.fetch_rows()) >= cut
    first_raw, _ = queries.raw_time_extent(store.engine)
    assert first_raw is not None and first_raw >= cut
    # Ranges after the cut are exact to the minute; older ones to the hour.
    rng = random.Random(10)
    for _ in range(8):
        filters = oracle.random_filters(rng, T0)
        if filters.start is None or filters.start < cut:
            def hour(at: datetime | None) -> datetime | None:
                return None if at is None else at.replace(minute=0, second=0, microsecond=0)

            filters = Filters(start=hour(filters.start), end=hour(filters.end), tasks=filters.tasks,
                              models=filters.models, statuses=filters.statuses)
            if filters.start is not None and filters.end is not None and filters.end <= filters.start:
                continue
        by = rng.choice(GROUPINGS)
        _check_totals(store, before, filters, by)
        _check_series(store, before, filters, by[:1], rng.choice([3600, 3 * 3600, 86400]))
        _check_percentiles(store, before, filters, by[:1], "request")


def test_rollups_can_be_pruned_too_but_never_before_the_raw_rows(db_url: str) -> None:
    store = open_store(db_url)
    _fill(store, oracle.random_rows(300, seed=11, start=T0))
    with pytest.raises(ValueError, match="at least as long"):
        prune(store.engine, raw_before=T0 + timedelta(days=1), rollups_before=T0 + timedelta(days=2))
    result = prune(store.engine, raw_before=T0 + timedelta(days=2), rollups_before=T0 + timedelta(days=2))
    assert result.rollups > 0
    assert queries.summary(store.engine, Filters(end=T0 + timedelta(days=2)))["requests"] == 0
    assert queries.summary(store.engine, Filters(start=T0 + timedelta(days=2)))["requests"] == store.count_rows()


def test_migrations_backfill_rollups_of_a_store_written_without_them(db_url: str) -> None:
    migrate.upgrade(db_url, "0001")
    rows = oracle.random_rows(700, seed=12, start=T0)
    with get_engine(db_url).begin() as conn:
        conn.execute(insert(llm_spans), rows)
    before, after = migrate.upgrade(db_url)
    assert (before, after) == ("0001", migrate.SCHEMA_REVISION)  # through 0002 and what follows it
    store = open_store(db_url)
    _check_everything(store, store.fetch_rows(), seed=13, rounds=8)


def test_migration_0005_packs_latency_bins_into_histograms_and_keeps_pruned_history(db_url: str) -> None:
    # A store at 0004 whose rollups (a latency row per bin) were written before 0005, and
    # whose oldest raw rows were pruned since: the histograms must hold what the bins held.
    migrate.upgrade(db_url, "0004")
    rows = oracle.random_rows(600, seed=14, start=T0)
    with get_engine(db_url).begin() as conn:
        conn.execute(insert(llm_spans), rows)
        delta = Delta.of(rows)
        ids = KeyCache().resolve(conn, delta.keys())
        conn.exec_driver_sql(_upsert_sql("rollups", ("grain", "bucket", "key_id"), SUM_COLUMNS, conn.dialect.name),
                             [r for r in delta.sum_rows(ids, ordered=True) if r[0] != SIX_HOURS])  # 0005's grain
        old = table("rollup_latency", *(column(name) for name in ("grain", "measure", "bucket", "key_id", "bin", "n")))
        conn.execute(insert(old), [{"grain": g, "measure": m, "bucket": b, "key_id": k, "bin": index, "n": n}
                                   for (g, m, b, k), hist in delta.histograms(ids).items() for index, n in hist.items()
                                   if g != SIX_HOURS])
        cut = T0 + timedelta(days=1)
        conn.execute(delete(llm_spans).where(llm_spans.c.start_time < cut))
    assert migrate.upgrade(db_url) == ("0004", migrate.SCHEMA_REVISION)
    store = open_store(db_url)
    assert store.count_rows() < len(rows)  # the pruned rows live on in the rollups only
    everything = [dict(row, id=i) for i, row in enumerate(rows)]
    for measure in ("call", "request", "ttft"):
        _check_percentiles(store, everything, Filters(), ("task",), measure)
    _check_percentiles(store, everything, Filters(), ("model",), "call", SIX_HOURS)  # the grain 0005 adds
    _check_series(store, everything, Filters(), ("task",), SIX_HOURS)
    _same_totals(queries.summary(store.engine, Filters()), oracle.totals(everything))
