"""The trace explorer's reads: raw rows, one page of calls at a time, and one call's attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, case, func, or_, select

from llmlens.collector.store._filters import Bind, Filters, connect, filtered, rows_of
from llmlens.collector.store._queries import summary_calls
from llmlens.collector.store._tables import llm_spans
from llmlens.collector.store._time import as_utc, bind_time

__all__ = ["Cursor", "call_detail", "count_calls", "list_calls", "raw_time_extent"]

# Where a page of calls ends: (start_time, id) of its last call. The next page starts
# after it in the (start_time, id) order, found through the start_time index.
Cursor = tuple[datetime, int]

_t = llm_spans.c
_IS_FINAL = _t.final.is_(True)
_CALL_COLUMNS: Final = (
    _t.trace_id, _t.span_id, _t.call_id, _t.start_time, _t.service_name, _t.task, _t.provider,
    _t.request_model, _t.response_model, _t.prompt_name, _t.prompt_version, _t.status,
    _t.failure_reason, _t.attempt, _t.streaming, _t.finish_reason,
)


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def count_calls(bind: Bind, filters: Filters = Filters()) -> int:
    """How many calls (final rows) match ``filters``, counted in the rollups (so calls
    whose raw rows were pruned count too)."""
    return summary_calls(bind, filters)


def raw_time_extent(bind: Bind) -> tuple[datetime | None, datetime | None]:
    """The oldest and newest raw row's ``start_time``: how far back calls can be opened."""
    # Two subqueries: SQLite answers a lone min() or max() from the index, both in one
    # SELECT by scanning the table.
    oldest = select(func.min(_t.start_time)).scalar_subquery()
    newest = select(func.max(_t.start_time)).scalar_subquery()
    with connect(bind) as conn:
        first, last = conn.execute(select(oldest, newest)).one()
    return as_utc(first), as_utc(last)


def list_calls(bind: Bind, filters: Filters = Filters(), *, limit: int = 50,
               before: Cursor | None = None) -> list[dict[str, Any]]:
    """One page of calls, newest first: the final row of each, with totals over its attempts.

    ``before`` is the cursor of the previous page (``(start_time, id)`` of its last call):
    the page continues after it. Keyset pagination reads one page through the index
    however deep it is, where ``OFFSET`` would read and skip every row before it.

    Per call: ``trace_id``/``span_id`` (of the final row; give them to :func:`call_detail`),
    ``call_id``, ``start_time``, the task/model/prompt/status columns, ``attempts``,
    ``latency_ms`` (the whole call), and over all its attempts ``cost_usd`` (None when any
    attempt is unpriced), ``input_tokens`` and ``output_tokens``; ``id`` and ``cursor``
    (give the last call's to the next page's ``before``).
    """
    if limit <= 0:
        raise ValueError("limit must be positive")
    page = filtered(
        select(_t.id, *_CALL_COLUMNS, func.coalesce(_t.call_duration_ms, _t.duration_ms).label("latency_ms"),
               _t.cost_usd, _t.input_tokens, _t.output_tokens).where(_IS_FINAL),
        filters,
    ).order_by(_t.start_time.desc(), _t.id.desc()).limit(limit)
    if before is not None:
        at = bind_time(before[0])
        page = page.where(or_(_t.start_time < at, and_(_t.start_time == at, _t.id < before[1])))
    with connect(bind) as conn:
        calls = rows_of(conn, page)
        call_ids = sorted({c["call_id"] for c in calls if c["call_id"]})
        totals: dict[tuple[str, str], dict[str, Any]] = {}
        if call_ids:
            # Attempts of the page's calls only: a second small indexed query, not a join over
            # the whole table. Retried attempts may fall outside the time filter; they count.
            per_call = select(
                _t.trace_id, _t.call_id, func.count().label("attempts"),
                func.sum(_t.cost_usd).label("cost_usd"),
                _count_if(_t.cost_usd.is_(None)).label("unpriced"),
                func.sum(_t.input_tokens).label("input_tokens"),
                func.sum(_t.output_tokens).label("output_tokens"),
            ).where(
                # The trace ids let the (trace_id, span_id) unique index find the attempts:
                # an index on call_id alone would cost every insert a random B-tree write.
                _t.trace_id.in_(sorted({c["trace_id"] for c in calls if c["call_id"]})),
                _t.call_id.in_(call_ids),
            ).group_by(_t.trace_id, _t.call_id)
            totals = {(r["trace_id"], r["call_id"]): r for r in rows_of(conn, per_call)}
    for call in calls:
        call["start_time"] = as_utc(call["start_time"])
        call["cursor"] = (call["start_time"], call["id"])
        call["attempts"] = call.pop("attempt")
        total = totals.get((call["trace_id"], call["call_id"]))
        if total is not None:
            call["attempts"] = max(call["attempts"], int(total["attempts"]))
            call["cost_usd"] = None if total["unpriced"] else float(total["cost_usd"] or 0.0)
            call["input_tokens"] = int(total["input_tokens"] or 0)
            call["output_tokens"] = int(total["output_tokens"] or 0)
    return calls


def call_detail(bind: Bind, trace_id: str, span_id: str) -> list[dict[str, Any]]:
    """Every attempt of the call whose row is (``trace_id``, ``span_id``), first attempt first.

    Each attempt is a full row (all columns, ``attributes`` decoded to a dict). Empty when
    no such row exists. A row without ``call_id`` (from another instrumentation) is a call
    of one attempt.
    """
    with connect(bind) as conn:
        row = conn.execute(select(_t.call_id).where(_t.trace_id == trace_id, _t.span_id == span_id)).first()
        if row is None:
            return []
        if row.call_id is None:
            statement = select(llm_spans).where(_t.trace_id == trace_id, _t.span_id == span_id)
        else:
            statement = select(llm_spans).where(_t.call_id == row.call_id, _t.trace_id == trace_id)
        rows = rows_of(conn, statement.order_by(_t.attempt, _t.start_time, _t.id))
    for attempt in rows:
        attempt["start_time"] = as_utc(attempt["start_time"])
        attempt["attributes"] = attempt["attributes"] or {}
    return rows
