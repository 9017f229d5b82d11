"""Task names across batches: the statements behind ``Store.insert_rows(names=, unresolved=)``.

A span that names the work beneath it (a workflow, chain, agent or trace; see
``collector/_lineage.py``) is kept in ``llm_trace_names``. Rows whose ancestry the ingest
path could not walk take the innermost stored name of their trace whose time span holds
their start; a name that arrives after its rows fills their NULL task. All of it runs in
the transaction that writes the batch's rows, so a batch is all or nothing.

Two such transactions on one trace take turns (:func:`take_turns`): one writing rows
whose ancestry is unknown, the other the name above them, each unable to see what the
other has not committed, would otherwise leave the rows with no task for good.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from llmlens.collector.store._tables import SpanRow, llm_spans, llm_trace_names
from llmlens.collector.store._time import as_utc
from llmlens.collector.store._write import take_write_lock

__all__ = ["NameLike", "fill_tasks", "name_rows", "save_names", "take_turns"]

_n = llm_trace_names.c
_t = llm_spans.c


class NameLike(Protocol):
    """A named span (``collector._lineage.NamedSpan``): read-only fields."""

    @property
    def trace_id(self) -> str: ...
    @property
    def span_id(self) -> str: ...
    @property
    def parent_span_id(self) -> str | None: ...
    @property
    def name(self) -> str: ...
    @property
    def start_time(self) -> datetime: ...
    @property
    def end_time(self) -> datetime: ...


# Locks acquired in the order of the array (a function scan): sorted keys, so two
# transactions locking overlapping sets of traces never wait on each other in a cycle.
_PG_LOCK = text("SELECT pg_advisory_xact_lock(k) FROM unnest(:keys) AS k").bindparams(
    bindparam("keys", type_=postgresql.ARRAY(postgresql.BIGINT)))


def take_turns(conn: Connection, trace_ids: Iterable[str]) -> None:
    """Wait until no other transaction names or writes the unnamed rows of these traces.

    The first statement of the transaction. A batch's rows with no known ancestor read the
    stored names (``name_rows``), and a batch's names update the stored rows with no task
    (``fill_tasks``); under READ COMMITTED each misses what the other has not committed
    yet, so when two collector workers write the rows and their ancestor at once, the rows
    would keep no task. Taking turns, the later transaction sees the earlier one's commit.

    PostgreSQL: one transaction-scoped advisory lock per trace (a hash of its id; a
    collision only makes two traces take turns). SQLite: the database's write lock, taken
    at ``BEGIN IMMEDIATE``; pysqlite would begin the transaction only at its first write,
    after ``name_rows`` had read outside it.
    """
    if conn.dialect.name == "postgresql":
        keys = sorted({_lock_key(trace_id) for trace_id in trace_ids})
        if keys:
            conn.execute(_PG_LOCK, {"keys": keys})
    else:
        take_write_lock(conn)


def _lock_key(trace_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(trace_id.encode(), digest_size=8).digest(), "big", signed=True)


def save_names(conn: Connection, names: Sequence[NameLike]) -> None:
    """Keep named spans; one already stored (an exporter's retry) is left as it is."""
    if not names:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(llm_trace_names).on_conflict_do_nothing(
        index_elements=["trace_id", "span_id"])
    conn.execute(statement, [
        {"trace_id": n.trace_id, "span_id": n.span_id, "parent_span_id": n.parent_span_id,
         "name": n.name[:255], "start_time": n.start_time, "end_time": n.end_time}
        for n in names
    ])


def fill_tasks(conn: Connection, names: Sequence[NameLike]) -> list[tuple[dict[str, Any], str]]:
    """Give stored rows with no task the name of a named span of their trace that holds their start.

    Innermost first: a nearer ancestor ends before a farther one, so when both arrive in
    one batch the nearer one must win. Returns each changed row as it was, with its new
    task, so the rollups can move it from "no task" to its task in this same transaction.

    One ``UPDATE … WHERE task IS NULL … RETURNING`` per name, not a read then a write:
    two collector workers naming the same rows at once (an agent and the agent above it,
    received together) both read them as unnamed, and the second write, once the first
    commits, re-checks ``task IS NULL`` on PostgreSQL and skips them. Only the rows a
    statement changed are returned, so each row leaves "no task" in the rollups once.
    """
    if not names:
        return []
    changed: list[tuple[dict[str, Any], str]] = []
    for n in sorted(names, key=lambda n: n.end_time - n.start_time):
        task = n.name[:255]
        statement = (update(llm_spans)
                     .where(_t.trace_id == n.trace_id, _t.task.is_(None),
                            _t.start_time >= n.start_time, _t.start_time <= n.end_time)
                     .values(task=task).returning(*llm_spans.c))
        # Only the task changed, and it was NULL: the row as it was is the row returned
        # with no task (read after the update, so a concurrent re-price is seen too).
        changed += [({**row._mapping, "task": None}, task) for row in conn.execute(statement)]
    return changed


def name_rows(conn: Connection, rows: Iterable[SpanRow]) -> None:
    """Set each row's task from the innermost stored name of its trace holding its start."""
    pending = [row for row in rows if row["task"] is None]
    if not pending:
        return
    trace_ids = sorted({row["trace_id"] for row in pending})
    by_trace: dict[str, list[tuple[datetime, datetime, str]]] = {}
    found = conn.execute(select(_n.trace_id, _n.start_time, _n.end_time, _n.name)
                         .where(_n.trace_id.in_(trace_ids)))
    for trace_id, start, end, name in found:
        by_trace.setdefault(trace_id, []).append((as_utc(start) or start, as_utc(end) or end, name))
    for row in pending:
        candidates = by_trace.get(row["trace_id"])
        if not candidates:
            continue
        when = as_utc(row["start_time"]) or row["start_time"]
        holding = [(start, name) for start, end, name in candidates if start <= when <= end]
        if holding:
            row["task"] = max(holding)[1]
