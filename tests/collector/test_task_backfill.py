"""A task named by an ancestor that arrives after its rows: the rollups agree with the raw rows.

Rows whose named ancestor (an agent, a workflow) is exported in a later batch are stored
with no task; when the ancestor arrives, the store gives them its name and moves their
share of the rollups from "no task" to that task in the same transaction. These tests
compare ``queries.breakdown(by="task")`` (rollups) with a GROUP BY over the raw rows after
such backfills: through ingestors as the collector's workers run them, one after the other,
two workers naming the same rows at once on PostgreSQL, and the rows and their ancestor
written by two workers in transactions that overlap, in both orders, on both databases.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from llmlens.collector import queries
from llmlens.collector.ingest import Ingestor
from llmlens.collector.record import STATUS_ERROR, SpanRecord
from llmlens.collector.store import Store, llm_spans, make_engine, open_store

T0_NS = int(datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp() * 1e9)
SECOND = 1_000_000_000


def _chat(trace: str, span: str, parent: str, start_s: float, *, i: int) -> SpanRecord:
    """A provider request of trace ``trace`` under ``parent``: varied statuses, tokens, streams."""
    failed = i % 5 == 4
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
    }
    if failed:
        attributes |= {"error.type": "RateLimitError", "http.response.status_code": 429}
    else:
        attributes |= {"gen_ai.usage.input_tokens": 100 + i, "gen_ai.usage.output_tokens": 10 + i}
        if i % 3 == 0:
            attributes |= {"gen_ai.request.stream": True, "gen_ai.response.time_to_first_chunk": 0.05}
    start = T0_NS + int(start_s * SECOND)
    return SpanRecord(trace, span, "chat gpt-4o-mini", start, start + SECOND // 2, attributes, parent_span_id=parent,
                      status_code=STATUS_ERROR if failed else 0,
                      resource_attributes={"service.name": "support-bot"},
                      scope_name="opentelemetry.instrumentation.openai_v2")


def _agent(trace: str, span: str, parent: str | None, name: str, start_s: float, end_s: float) -> SpanRecord:
    """An application's agent span: names the work beneath it, is not a request."""
    return SpanRecord(trace, span, f"invoke_agent {name}", T0_NS + int(start_s * SECOND),
                      T0_NS + int(end_s * SECOND),
                      {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name}, parent_span_id=parent,
                      resource_attributes={"service.name": "support-bot"}, scope_name="app")


def _trace(n: int) -> str:
    return f"{n:032x}"


def _requests(trace: str, parent: str, first_s: float, count: int) -> list[SpanRecord]:
    # Spread over minutes, so the moved rows fall in several rollup buckets.
    return [_chat(trace, f"{n + 1:04x}{int(first_s):012x}", parent, first_s + 40 * n, i=n) for n in range(count)]


def _raw_by_task(store: Store) -> dict[str | None, tuple[int, int, int]]:
    t = llm_spans.c
    query = select(t.task, func.count(), func.coalesce(func.sum(t.input_tokens), 0),
                   func.coalesce(func.sum(t.output_tokens), 0)).group_by(t.task)
    with store.engine.connect() as conn:
        return {task: (int(n), int(inp), int(out)) for task, n, inp, out in conn.execute(query)}


def _rollups_by_task(store: Store) -> dict[str | None, tuple[int, int, int]]:
    answer = queries.breakdown(store.engine, queries.Filters(), by=("task",))
    return {r["task"]: (r["requests"], r["input_tokens"], r["output_tokens"]) for r in answer}


def _raw_cost_by_task(store: Store) -> dict[str | None, float]:
    t = llm_spans.c
    with store.engine.connect() as conn:
        return {task: float(cost or 0) for task, cost in conn.execute(select(t.task, func.sum(t.cost_usd))
                                                                      .group_by(t.task))}


def _assert_rollups_agree(store: Store) -> None:
    assert _rollups_by_task(store) == _raw_by_task(store)
    rollup_cost = {r["task"]: r["spend_usd"] for r in queries.breakdown(store.engine, queries.Filters(), by=("task",))}
    assert rollup_cost == pytest.approx(_raw_cost_by_task(store), rel=1e-9)


def test_rows_named_by_an_ancestor_from_a_later_batch_move_their_rollups_to_that_task(db_url: str) -> None:
    store = open_store(db_url)
    worker_a, worker_b = Ingestor(store), Ingestor(store)
    # Trace 1: requests under a planner agent inside a triage agent; both names come later,
    # the inner one first (it ends first), to the other worker.
    worker_a.ingest(_requests(_trace(1), "00000000000000a2", 0, 6))
    # Trace 2: requests whose agent arrives with its parent in one later batch.
    worker_a.ingest(_requests(_trace(2), "00000000000000b2", 30, 5))
    # Trace 3: requests under no named work at all: they keep no task.
    worker_b.ingest(_requests(_trace(3), "00000000000000c1", 60, 4))
    assert set(_raw_by_task(store)) == {None}
    _assert_rollups_agree(store)

    worker_b.ingest([_agent(_trace(1), "00000000000000a2", "00000000000000a1", "planner", 0, 400)])
    worker_a.ingest([_agent(_trace(2), "00000000000000b2", "00000000000000b1", "drafting", 30, 400),
                     _agent(_trace(2), "00000000000000b1", None, "triage", 0, 500)])
    worker_b.ingest([_agent(_trace(1), "00000000000000a1", None, "triage", 0, 500)])

    raw = _raw_by_task(store)
    assert {task: n for task, (n, _inp, _out) in raw.items()} == {"planner": 6, "drafting": 5, None: 4}
    _assert_rollups_agree(store)


def _waiting_on_locks(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).scalar_one())


def test_two_workers_naming_the_same_rows_at_once_move_each_row_once(pg_url: str) -> None:
    # Two workers receive two named spans of one trace at the same moment (an agent and
    # the agent above it): both see the rows with no task, and both would name them.
    store = open_store(pg_url)
    Ingestor(store).ingest(_requests(_trace(7), "00000000000000d2", 0, 8))
    errors: list[BaseException] = []

    def name(record: SpanRecord) -> None:
        try:
            Ingestor(store).ingest([record])
        except BaseException as exc:
            errors.append(exc)

    workers = [
        threading.Thread(target=name, args=(_agent(_trace(7), "00000000000000d2", "00000000000000d1", "planner",
                                                   0, 400),)),
        threading.Thread(target=name, args=(_agent(_trace(7), "00000000000000d1", None, "triage", 0, 500),)),
    ]
    # Hold the rows' locks until both workers have read the unnamed rows and wait to update
    # them, so their transactions overlap on every run.
    with store.engine.connect() as holder:
        holder.exec_driver_sql("SELECT id FROM llm_spans FOR UPDATE")
        for worker in workers:
            worker.start()
        while _waiting_on_locks(store) < 2:
            assert all(w.is_alive() for w in workers), errors
            time.sleep(0.01)
        holder.rollback()
    for worker in workers:
        worker.join(30)
    assert not errors
    raw = _raw_by_task(store)
    assert sum(n for n, _inp, _out in raw.values()) == 8
    assert None not in raw and set(raw) <= {"planner", "triage"}
    _assert_rollups_agree(store)


def _held_at_commit(engine: Engine) -> tuple[threading.Event, threading.Event]:
    """Make each transaction of ``engine`` wait, all its statements run, until released."""
    at_commit, release = threading.Event(), threading.Event()

    def hold(_conn: Any) -> None:
        at_commit.set()
        release.wait(60)

    event.listen(engine, "commit", hold)
    return at_commit, release


def _writes_issued(engine: Engine) -> list[str]:
    """The statements ``engine`` issued that write, or take the database's write lock."""
    issued: list[str] = []

    def log(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "BEGIN", "SELECT PG_ADVISORY")):
            issued.append(statement)

    event.listen(engine, "before_cursor_execute", log)
    return issued


@pytest.mark.parametrize("first", ["rows", "ancestor"])
def test_rows_and_their_named_ancestor_written_by_two_workers_at_once_get_its_name(db_url: str, first: str) -> None:
    # Two collector workers: one writes requests whose parent it never saw, the other the
    # agent above them. Each transaction runs while the other is open, uncommitted: under
    # READ COMMITTED neither sees the other's writes unless they take turns, and a row
    # written with no task after its name's backfill ran would keep no task for good.
    open_store(db_url)
    trace = _trace(11)
    rows = _requests(trace, "00000000000000e2", 0, 3)
    ancestor = [_agent(trace, "00000000000000e2", "00000000000000e1", "planner", 0, 400)]
    first_batch, second_batch = (rows, ancestor) if first == "rows" else (ancestor, rows)
    engines = make_engine(db_url), make_engine(db_url)
    at_commit, release = _held_at_commit(engines[0])
    second_writes = _writes_issued(engines[1])
    errors: list[BaseException] = []

    def ingest(engine: Engine, batch: list[SpanRecord]) -> None:
        try:
            Ingestor(Store(engine)).ingest(batch)
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=ingest, args=(engine, batch))
               for engine, batch in zip(engines, (first_batch, second_batch), strict=True)]
    try:
        writers[0].start()
        assert at_commit.wait(60), errors
        writers[1].start()
        # Let the second transaction run as far as it can while the first is uncommitted:
        # to its end, or until it waits for the first (on PostgreSQL a lock wait; SQLite
        # has a single writer, so the second waits at its first write).
        store = Store(engines[1])
        while writers[1].is_alive() and not (second_writes if store.dialect == "sqlite"
                                             else _waiting_on_locks(store)):
            time.sleep(0.01)
        release.set()
        for writer in writers:
            writer.join(60)
        assert not errors
        tasks = [row["task"] for row in store.fetch_rows()]
        assert tasks == ["planner"] * 3
        _assert_rollups_agree(store)
    finally:
        release.set()
        for engine in engines:
            engine.dispose()
