"""The dashboard's aggregates as they were before rollups: SQL over the raw rows.

Kept only as ``bench_dashboard.py``'s baseline, so its figures are ratios measured in the
same run against the old query path. Not part of the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    func,
    literal_column,
    not_,
    select,
    true,
)

from llmlens.collector.store._filters import Bind, Filters, connect, filtered, rows_of
from llmlens.collector.store._tables import llm_spans
from llmlens.collector.store._time import as_utc, epoch_seconds

__all__ = [
    "BUCKET_LADDER",
    "DIMENSIONS",
    "Measure",
    "breakdown",
    "choose_bucket",
    "count_calls",
    "filter_options",
    "has_rows",
    "latency_percentiles",
    "list_calls",
    "retry_waste",
    "summary",
    "time_extent",
    "timeseries",
]

_t = llm_spans.c
Measure = Literal["call", "request", "ttft"]

# Group-by names the dashboard offers, mapped to columns. "model" is the requested model:
# it is what the caller chose and what the filters select on.
DIMENSIONS: Final[dict[str, ColumnElement[Any]]] = {
    "task": _t.task,
    "model": _t.request_model,
    "response_model": _t.response_model,
    "provider": _t.provider,
    "prompt_name": _t.prompt_name,
    "prompt_version": _t.prompt_version,
    "status": _t.status,
    "failure_reason": _t.failure_reason,
    "service": _t.service_name,
}

# Bucket widths (seconds) a time series may use: minute to day, in steps a reader knows.
BUCKET_LADDER: Final = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)

_IS_FINAL = _t.final.is_(True)
_FINAL_OK = and_(_IS_FINAL, _t.status == "ok")
_TOKEN_COLUMNS: Final = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                         "reasoning_tokens")

def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _sum(column: ColumnElement[Any], condition: ColumnElement[bool] | None = None) -> ColumnElement[Any]:
    # SUM over no (priced) rows is NULL: report 0 and let unpriced_requests tell the rest.
    value = column if condition is None else case((condition, column))
    return func.coalesce(func.sum(value), 0)


def _totals() -> list[ColumnElement[Any]]:
    """The additive measures every summary and breakdown reports, labelled."""
    return [
        _count_if(_IS_FINAL).label("calls"),
        func.count().label("requests"),
        _count_if(and_(_IS_FINAL, _t.attempt > 1)).label("retried_calls"),
        _count_if(and_(_IS_FINAL, _t.status != "ok")).label("failed_calls"),
        _count_if(and_(_IS_FINAL, _t.status == "invalid_output")).label("invalid_output_calls"),
        _sum(_t.cost_usd).label("spend_usd"),
        _sum(_t.cost_usd, not_(_FINAL_OK)).label("wasted_spend_usd"),
        _count_if(_t.cost_usd.is_(None)).label("unpriced_requests"),
        *(_sum(_t[name]).label(name) for name in _TOKEN_COLUMNS),
    ]


def _finish_totals(row: dict[str, Any]) -> dict[str, Any]:
    # Drivers return Decimal/int/float for the same SUM depending on the database.
    for key in ("calls", "requests", "retried_calls", "failed_calls", "invalid_output_calls",
                "unpriced_requests", *_TOKEN_COLUMNS):
        row[key] = int(row[key] or 0)
    for key in ("spend_usd", "wasted_spend_usd"):
        row[key] = float(row[key] or 0.0)
    calls = row["calls"]
    row["failure_rate"] = row["failed_calls"] / calls if calls else None
    row["invalid_output_rate"] = row["invalid_output_calls"] / calls if calls else None
    return row


def _dimension_columns(by: str | Sequence[str] | None) -> list[ColumnElement[Any]]:
    names = [by] if isinstance(by, str) else list(by or ())
    unknown = [name for name in names if name not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown dimension(s) {unknown}; choose from {sorted(DIMENSIONS)}")
    return [DIMENSIONS[name].label(name) for name in names]


# --- Totals --------------------------------------------------------------------------------


def summary(bind: Bind, filters: Filters = Filters()) -> dict[str, Any]:
    """The headline numbers for ``filters``.

    Keys: ``calls``, ``requests``, ``retried_calls``, ``failed_calls``,
    ``invalid_output_calls``, ``spend_usd``, ``wasted_spend_usd``, ``unpriced_requests``,
    the five token sums (``input_tokens`` … ``reasoning_tokens``), ``failure_rate`` and
    ``invalid_output_rate`` (None without calls), and the call latency percentiles
    ``p50_ms``, ``p95_ms``, ``p99_ms`` (None without calls).
    """
    with connect(bind) as conn:
        row = dict(conn.execute(filtered(select(*_totals()), filters)).one()._mapping)
        latency = latency_percentiles(conn, filters)
    result = _finish_totals(row)
    pct = latency[0] if latency else {}
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        result[key] = pct.get(key)
    return result


def has_rows(bind: Bind) -> bool:
    """Whether the store holds any row at all (the dashboard greets an empty store)."""
    with connect(bind) as conn:
        return conn.execute(select(_t.id).limit(1)).first() is not None


def time_extent(bind: Bind, filters: Filters = Filters()) -> tuple[datetime | None, datetime | None]:
    """The first and last ``start_time`` among the rows ``filters`` select (None, None if none)."""
    statement = filtered(select(func.min(_t.start_time), func.max(_t.start_time)), filters)
    with connect(bind) as conn:
        first, last = conn.execute(statement).one()
    return as_utc(first), as_utc(last)


def breakdown(bind: Bind, filters: Filters = Filters(), by: str | Sequence[str] = "task") -> list[dict[str, Any]]:
    """The :func:`summary` totals per group of ``by`` (a name or names from :data:`DIMENSIONS`),
    most expensive first.

    >>> breakdown(engine, Filters(), by=("task", "prompt_version"))  # doctest: +SKIP
    [{'task': 'extract_ticket', 'prompt_version': '4', 'calls': 310, 'spend_usd': 1.92, ...}, ...]
    """
    groups = _dimension_columns(by)
    statement = filtered(select(*groups, *_totals()), filters).group_by(*groups)
    statement = statement.order_by(literal_column("spend_usd").desc(), literal_column("requests").desc())
    with connect(bind) as conn:
        return [_finish_totals(row) for row in rows_of(conn, statement)]


def retry_waste(bind: Bind, filters: Filters = Filters(), by: str | Sequence[str] = "task") -> list[dict[str, Any]]:
    """Where money went without buying a good answer, per group, most wasteful first.

    ``retry_spend_usd`` is the cost of attempts that were retried (not final);
    ``failed_spend_usd`` the cost of final attempts that failed; ``wasted_spend_usd`` their
    sum; ``wasted_requests`` and ``unpriced_wasted_requests`` count those rows. Groups
    without a wasted request are left out.
    """
    groups = _dimension_columns(by)
    wasted = not_(_FINAL_OK)
    statement = filtered(
        select(
            *groups,
            _sum(_t.cost_usd, wasted).label("wasted_spend_usd"),
            _sum(_t.cost_usd, not_(_IS_FINAL)).label("retry_spend_usd"),
            _sum(_t.cost_usd, and_(_IS_FINAL, _t.status != "ok")).label("failed_spend_usd"),
            _count_if(wasted).label("wasted_requests"),
            _count_if(and_(wasted, _t.cost_usd.is_(None))).label("unpriced_wasted_requests"),
        ),
        filters,
    ).where(wasted).group_by(*groups).order_by(literal_column("wasted_spend_usd").desc())
    with connect(bind) as conn:
        rows = rows_of(conn, statement)
    for row in rows:
        for key in ("wasted_spend_usd", "retry_spend_usd", "failed_spend_usd"):
            row[key] = float(row[key] or 0.0)
        row["wasted_requests"] = int(row["wasted_requests"])
        row["unpriced_wasted_requests"] = int(row["unpriced_wasted_requests"])
    return rows


# --- Time series ---------------------------------------------------------------------------


def choose_bucket(start: datetime, end: datetime, *, max_points: int = 200) -> int:
    """The narrowest bucket of :data:`BUCKET_LADDER` giving at most ``max_points`` buckets."""
    seconds = max((end - start).total_seconds(), 1.0)
    for width in BUCKET_LADDER:
        if seconds / width <= max_points:
            return width
    return BUCKET_LADDER[-1]


def _bucket(dialect: str, bucket_seconds: int) -> ColumnElement[Any]:
    if bucket_seconds <= 0:
        raise ValueError("bucket_seconds must be positive")
    # Integer floor division on both databases (epoch seconds are positive).
    return ((epoch_seconds(dialect, _t.start_time) // bucket_seconds) * bucket_seconds).label("bucket")


def timeseries(
    bind: Bind,
    filters: Filters = Filters(),
    *,
    bucket_seconds: int = 3600,
    by: str | Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The :func:`summary` totals per time bucket (and per group of ``by``), oldest first.

    Buckets are aligned to the epoch in UTC, so a day bucket is a UTC day; ``bucket`` is the
    bucket's start as an aware datetime. Empty buckets are absent (charts draw gaps).
    """
    groups = _dimension_columns(by)
    with connect(bind) as conn:
        bucket = _bucket(conn.dialect.name, bucket_seconds)
        statement = filtered(select(bucket, *groups, *_totals()), filters)
        statement = statement.group_by(bucket, *groups).order_by(bucket, *groups)
        rows = rows_of(conn, statement)
    for row in rows:
        row["bucket"] = datetime.fromtimestamp(int(row["bucket"]), UTC)
        _finish_totals(row)
    return rows


# --- Percentiles ---------------------------------------------------------------------------


def _measure(measure: Measure) -> tuple[ColumnElement[Any], ColumnElement[bool]]:
    if measure == "call":
        # What the caller waited: the whole call with retries and backoff, on the final row.
        return func.coalesce(_t.call_duration_ms, _t.duration_ms), _IS_FINAL
    if measure == "request":
        return _t.duration_ms, true()
    if measure == "ttft":
        return _t.time_to_first_token_ms, and_(_t.streaming.is_(True), _t.time_to_first_token_ms.is_not(None))
    raise ValueError(f"measure must be 'call', 'request' or 'ttft', not {measure!r}")


def latency_percentiles(
    bind: Bind,
    filters: Filters = Filters(),
    *,
    by: str | Sequence[str] | None = None,
    measure: Measure = "call",
    quantiles: Sequence[float] = (0.5, 0.95, 0.99),
    bucket_seconds: int | None = None,
) -> list[dict[str, Any]]:
    """Nearest-rank latency percentiles in milliseconds, per group of ``by``, slowest p95 first.

    With ``bucket_seconds`` they are computed per time bucket too (as in :func:`timeseries`),
    oldest bucket first.

    ``measure`` is ``"call"`` (final rows, the call's total time including retries),
    ``"request"`` (every provider request) or ``"ttft"`` (time to first token of streamed
    requests). Keys per group: the group columns, ``n``, ``mean_ms`` and ``p50_ms``-style
    keys for each quantile (``0.999`` → ``p99.9_ms``). Computed with ``ROW_NUMBER`` and
    ``COUNT`` windows so it runs on SQLite and PostgreSQL alike: the q-th percentile is the
    smallest value whose rank ``rn`` satisfies ``rn >= q * n``.
    """
    value, condition = _measure(measure)
    groups = _dimension_columns(by)
    with connect(bind) as conn:
        if bucket_seconds is not None:
            groups.insert(0, _bucket(conn.dialect.name, bucket_seconds))
        rows = _percentile_rows(conn, filters, value, condition, groups, quantiles)
    if bucket_seconds is not None:
        for row in rows:
            row["bucket"] = datetime.fromtimestamp(int(row["bucket"]), UTC)
        rows.sort(key=lambda r: r["bucket"])
    elif rows and "p95_ms" in rows[0]:
        rows.sort(key=lambda r: -(r["p95_ms"] or 0.0))
    return rows


def _percentile_rows(conn: Connection, filters: Filters, value: ColumnElement[Any],
                     condition: ColumnElement[bool], groups: list[Any],
                     quantiles: Sequence[float]) -> list[dict[str, Any]]:
    partition = [g.element for g in groups] or None
    ranked = filtered(
        select(
            *groups,
            value.label("v"),
            func.row_number().over(partition_by=partition, order_by=value).label("rn"),
            func.count().over(partition_by=partition).label("n"),
        ),
        filters,
    ).where(condition, value.is_not(None)).subquery("ranked")
    outer_groups = [ranked.c[g.name] for g in groups]
    keys = [_quantile_key(q) for q in quantiles]
    # Integer arithmetic (q in parts per ten thousand) so 0.07 * 100 never rounds up to rank 8.
    columns = [
        func.min(case((ranked.c.rn * 10000 >= ranked.c.n * round(q * 10000), ranked.c.v))).label(key)
        for q, key in zip(quantiles, keys, strict=True)
    ]
    statement = select(*outer_groups, func.max(ranked.c.n).label("n"), func.avg(ranked.c.v).label("mean_ms"),
                       *columns).group_by(*outer_groups).order_by(*outer_groups)
    # Without groups, no matching rows still aggregate to one row of NULLs: drop it.
    rows = [row for row in rows_of(conn, statement) if row["n"] is not None]
    for row in rows:
        row["n"] = int(row["n"])
        for key in ("mean_ms", *keys):
            row[key] = float(row[key]) if row[key] is not None else None
    return rows


def _quantile_key(q: float) -> str:
    if not 0 < q <= 1:
        raise ValueError(f"quantiles must be in (0, 1], got {q}")
    return f"p{q * 100:g}_ms"


# --- Filter values --------------------------------------------------------------

_OPTION_COLUMNS: Final = {"tasks": _t.task, "models": _t.request_model, "prompt_versions": _t.prompt_version,
                          "statuses": _t.status, "services": _t.service_name}


def filter_options(bind: Bind, filters: Filters = Filters()) -> dict[str, list[str]]:
    """Distinct non-NULL values of each filterable column within ``filters``' time range.

    Keys: ``tasks``, ``models``, ``prompt_versions``, ``statuses``, ``services``; sorted.
    Only the time range applies, so picking a task never hides the other tasks' options.
    One grouped scan yields every combination (a few thousand at most), where five
    ``DISTINCT`` queries would read the range five times.
    """
    columns = list(_OPTION_COLUMNS.values())
    statement = filtered(select(*columns).group_by(*columns), filters.time_only())
    values: dict[str, set[str]] = {key: set() for key in _OPTION_COLUMNS}
    with connect(bind) as conn:
        for row in conn.execute(statement):
            for key, value in zip(_OPTION_COLUMNS, row, strict=True):
                if value is not None:
                    values[key].add(value)
    return {key: sorted(found) for key, found in values.items()}


# --- Trace explorer (OFFSET pagination, as before) ---

_CALL_COLUMNS: Final = (
    _t.trace_id, _t.span_id, _t.call_id, _t.start_time, _t.service_name, _t.task, _t.provider,
    _t.request_model, _t.response_model, _t.prompt_name, _t.prompt_version, _t.status,
    _t.failure_reason, _t.attempt, _t.streaming, _t.finish_reason,
)


def count_calls(bind: Bind, filters: Filters = Filters()) -> int:
    """How many calls (final rows) match ``filters``: the trace explorer's page count."""
    with connect(bind) as conn:
        return int(conn.execute(filtered(select(func.count()).where(_IS_FINAL), filters)).scalar_one())


def list_calls(bind: Bind, filters: Filters = Filters(), *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """One page of calls, newest first: the final row of each, with totals over its attempts.

    Per call: ``trace_id``/``span_id`` (of the final row; give them to :func:`call_detail`),
    ``call_id``, ``start_time``, the task/model/prompt/status columns, ``attempts``,
    ``latency_ms`` (the whole call), and over all its attempts ``cost_usd`` (None when any
    attempt is unpriced), ``input_tokens`` and ``output_tokens``.
    """
    if limit <= 0 or offset < 0:
        raise ValueError("limit must be positive and offset non-negative")
    page = filtered(
        select(*_CALL_COLUMNS, func.coalesce(_t.call_duration_ms, _t.duration_ms).label("latency_ms"),
               _t.cost_usd, _t.input_tokens, _t.output_tokens).where(_IS_FINAL),
        filters,
    ).order_by(_t.start_time.desc(), _t.id.desc()).limit(limit).offset(offset)
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
        call["attempts"] = call.pop("attempt")
        total = totals.get((call["trace_id"], call["call_id"]))
        if total is not None:
            call["attempts"] = max(call["attempts"], int(total["attempts"]))
            call["cost_usd"] = None if total["unpriced"] else float(total["cost_usd"] or 0.0)
            call["input_tokens"] = int(total["input_tokens"] or 0)
            call["output_tokens"] = int(total["output_tokens"] or 0)
    return calls
