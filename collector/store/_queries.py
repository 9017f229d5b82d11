"""Aggregates for the dashboard and the alert evaluator, read from the rollups.

Every function takes an ``Engine`` or ``Connection`` and a :class:`Filters`, lets the
database sum pre-aggregated rows (never fetching rows to aggregate in Python), and
returns small results: a dict or a list of dicts, ready for a table or a chart. Ranges
resolve to the minute and are covered by day, hour and minute rollups (``_plan``), so a
30-day page reads about as many rows at 10M calls as at 10k.

Counting follows DESIGN.md "What a row is": a row is one provider request. *Calls* and
outcome rates count ``final`` rows (the attempt whose outcome the caller saw); *requests*,
spend and tokens count every row; *wasted spend* is the cost of every row that is not a
final ``ok`` (retried attempts and failed calls). ``cost_usd`` is NULL for unpriced
models: sums skip those rows and ``unpriced_requests`` says how many there were.

Percentiles come from summed latency histograms (log-spaced bins, see ``_rollup``): the
nearest-rank percentile's bin, reported as the value that bin stands for, within 1.7% of
the exact value.

>>> from llmlens.collector.store import open_store
>>> engine = open_store("sqlite:///llmlens.db").engine  # doctest: +SKIP
>>> summary(engine, Filters.last(timedelta(hours=24)))["spend_usd"]  # doctest: +SKIP
12.75
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import ColumnElement, Connection, Select, and_, case, func, literal_column, not_, select

from llmlens.collector.store._filters import Bind, Filters, connect, rows_of
from llmlens.collector.store._histogram import add_blob, new_histogram, percentile_bins
from llmlens.collector.store._plan import cover, epoch_range, keyed, rollup_source, timeseries_grain
from llmlens.collector.store._rollup import DAY, HOUR, MEASURES, MINUTE, SUM_COLUMNS, bin_value
from llmlens.collector.store._tables import rollup_keys, rollup_latency, rollups

__all__ = [
    "BUCKET_LADDER",
    "DIMENSIONS",
    "Measure",
    "breakdown",
    "choose_bucket",
    "filter_options",
    "has_rows",
    "latency_percentiles",
    "retry_waste",
    "summary",
    "summary_calls",
    "time_extent",
    "timeseries",
]

_k = rollup_keys.c
Measure = Literal["call", "request", "ttft"]

# Group-by names the dashboard offers, mapped to columns. "model" is the requested model:
# it is what the caller chose and what the filters select on.
DIMENSIONS: Final[dict[str, ColumnElement[Any]]] = {
    "task": _k.task,
    "model": _k.request_model,
    "response_model": _k.response_model,
    "provider": _k.provider,
    "prompt_name": _k.prompt_name,
    "prompt_version": _k.prompt_version,
    "status": _k.status,
    "failure_reason": _k.failure_reason,
    "service": _k.service_name,
}

# Bucket widths (seconds) a time series may use: minute to day, in steps a reader knows.
BUCKET_LADDER: Final = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)

_IS_FINAL = _k.final.is_(True)
_FINAL_OK = and_(_IS_FINAL, _k.status == "ok")
_TOKEN_COLUMNS: Final = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                         "reasoning_tokens")
_INT_KEYS: Final = ("calls", "requests", "retried_calls", "failed_calls", "invalid_output_calls",
                    "unpriced_requests", *_TOKEN_COLUMNS)


def _total(column: ColumnElement[Any], condition: ColumnElement[bool] | None = None) -> ColumnElement[Any]:
    # SUM over no rows is NULL: report 0.
    value = column if condition is None else case((condition, column), else_=0)
    return func.coalesce(func.sum(value), 0)


def _rollup_rows(conn: Connection, filters: Filters, columns: Sequence[str] = SUM_COLUMNS,
                 coarsest: int = DAY) -> Any:
    start, end = epoch_range(filters)
    return rollup_source(rollups, columns, cover(conn, start, end, coarsest=coarsest))


def _totals(src: Any) -> list[ColumnElement[Any]]:
    """The additive measures every summary and breakdown reports, labelled."""
    s = src.c
    return [
        _total(s.requests, _IS_FINAL).label("calls"),
        _total(s.requests).label("requests"),
        _total(s.retried_calls).label("retried_calls"),
        _total(s.requests, and_(_IS_FINAL, _k.status != "ok")).label("failed_calls"),
        _total(s.requests, and_(_IS_FINAL, _k.status == "invalid_output")).label("invalid_output_calls"),
        _total(s.cost_usd).label("spend_usd"),
        _total(s.cost_usd, not_(_FINAL_OK)).label("wasted_spend_usd"),
        _total(s.unpriced_requests).label("unpriced_requests"),
        *(_total(s[name]).label(name) for name in _TOKEN_COLUMNS),
    ]


def _finish_totals(row: dict[str, Any]) -> dict[str, Any]:
    # Drivers return Decimal/int/float for the same SUM depending on the database.
    for key in _INT_KEYS:
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


def _keyed(statement: Select[Any], src: Any, filters: Filters) -> Select[Any]:
    conditions = filters.where(rollup_keys, time_column=None)
    statement = statement.select_from(keyed(src))
    return statement.where(*conditions) if conditions else statement


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
        src = _rollup_rows(conn, filters)
        row = dict(conn.execute(_keyed(select(*_totals(src)), src, filters)).one()._mapping)
        latency = latency_percentiles(conn, filters)
    result = _finish_totals(row)
    pct = latency[0] if latency else {}
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        result[key] = pct.get(key)
    return result


def summary_calls(bind: Bind, filters: Filters = Filters()) -> int:
    """How many calls (final rows) match ``filters``."""
    with connect(bind) as conn:
        src = _rollup_rows(conn, filters, ("requests",))
        return int(conn.execute(_keyed(select(_total(src.c.requests, _IS_FINAL)), src, filters)).scalar_one())


def has_rows(bind: Bind) -> bool:
    """Whether the store holds any call at all (the dashboard greets an empty store)."""
    with connect(bind) as conn:
        # Any grain: recent rows are in minute rollups only until they are folded.
        return conn.execute(select(rollups.c.bucket).limit(1)).first() is not None


def time_extent(bind: Bind, filters: Filters = Filters()) -> tuple[datetime | None, datetime | None]:
    """The first and last minute holding a row that ``filters`` select (None, None if none).

    Where minute rollups were pruned, the first and last hour.
    """
    with connect(bind) as conn:
        start, end = epoch_range(filters)
        pieces = cover(conn, start, end)
        src = rollup_source(rollups, (), pieces)
        first, last = conn.execute(_keyed(select(func.min(src.c.bucket), func.max(src.c.bucket)), src,
                                          filters)).one()
        if first is None:
            return None, None
        # The coarse bucket found, refined through the finer grains inside it.
        first, last = int(first), int(last)
        first = _refine(conn, filters, first, start, end, func.min)
        last = _refine(conn, filters, last, start, end, func.max)
    return datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC)


def _refine(conn: Connection, filters: Filters, bucket: int, start: int | None, end: int | None,
            pick: Any) -> int:
    # The row ``pick`` (min or max) finds lies within a day of the coarse bucket: look
    # there in hours, then within that hour in minutes.
    for width, coarsest in ((DAY, HOUR), (HOUR, MINUTE)):
        lo = bucket if start is None else max(bucket, start)
        hi = bucket + width if end is None else min(bucket + width, end)
        src = rollup_source(rollups, (), cover(conn, lo, hi, coarsest=coarsest))
        found = conn.execute(_keyed(select(pick(src.c.bucket)), src, filters)).scalar()
        if found is None:
            break
        bucket = int(found)
    return bucket


def breakdown(bind: Bind, filters: Filters = Filters(), by: str | Sequence[str] = "task") -> list[dict[str, Any]]:
    """The :func:`summary` totals per group of ``by`` (a name or names from :data:`DIMENSIONS`),
    most expensive first.

    >>> breakdown(engine, Filters(), by=("task", "prompt_version"))  # doctest: +SKIP
    [{'task': 'extract_ticket', 'prompt_version': '4', 'calls': 310, 'spend_usd': 1.92, ...}, ...]
    """
    groups = _dimension_columns(by)
    with connect(bind) as conn:
        src = _rollup_rows(conn, filters)
        statement = _keyed(select(*groups, *_totals(src)), src, filters).group_by(*groups)
        statement = statement.order_by(literal_column("spend_usd").desc(), literal_column("requests").desc())
        return [_finish_totals(row) for row in rows_of(conn, statement)]


def retry_waste(bind: Bind, filters: Filters = Filters(), by: str | Sequence[str] = "task") -> list[dict[str, Any]]:
    """Where money went without buying a good answer, per group, most wasteful first.

    ``retry_spend_usd`` is the cost of attempts that were retried (not final);
    ``failed_spend_usd`` the cost of final attempts that failed; ``wasted_spend_usd`` their
    sum; ``wasted_requests`` and ``unpriced_wasted_requests`` count those rows. Groups
    without a wasted request are left out.
    """
    groups = _dimension_columns(by)
    with connect(bind) as conn:
        src = _rollup_rows(conn, filters, ("requests", "cost_usd", "unpriced_requests"))
        s = src.c
        statement = _keyed(
            select(
                *groups,
                _total(s.cost_usd).label("wasted_spend_usd"),
                _total(s.cost_usd, not_(_IS_FINAL)).label("retry_spend_usd"),
                _total(s.cost_usd, _IS_FINAL).label("failed_spend_usd"),
                _total(s.requests).label("wasted_requests"),
                _total(s.unpriced_requests).label("unpriced_wasted_requests"),
            ),
            src, filters,
        ).where(not_(_FINAL_OK)).group_by(*groups).order_by(literal_column("wasted_spend_usd").desc())
        rows = rows_of(conn, statement)
    for row in rows:
        for key in ("wasted_spend_usd", "retry_spend_usd", "failed_spend_usd"):
            row[key] = float(row[key] or 0.0)
        row["wasted_requests"] = int(row["wasted_requests"])
        row["unpriced_wasted_requests"] = int(row["unpriced_wasted_requests"])
    return [row for row in rows if row["wasted_requests"]]


# --- Time series ---------------------------------------------------------------------------


def choose_bucket(start: datetime, end: datetime, *, max_points: int = 200) -> int:
    """The narrowest bucket of :data:`BUCKET_LADDER` giving at most ``max_points`` buckets."""
    seconds = max((end - start).total_seconds(), 1.0)
    for width in BUCKET_LADDER:
        if seconds / width <= max_points:
            return width
    return BUCKET_LADDER[-1]


def _check_bucket(bucket_seconds: int) -> None:
    if bucket_seconds <= 0:
        raise ValueError("bucket_seconds must be positive")


def timeseries(
    bind: Bind,
    filters: Filters = Filters(),
    *,
    bucket_seconds: int = 3600,
    by: str | Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The :func:`summary` totals per time bucket (and per group of ``by``), oldest first.

    Buckets are aligned to the epoch in UTC, so a day bucket is a UTC day; ``bucket`` is the
    bucket's start as an aware datetime. Empty buckets are absent (charts draw gaps). A
    bucket finer than an hour over a range whose minute rollups were pruned is widened to
    an hour.
    """
    _check_bucket(bucket_seconds)
    groups = _dimension_columns(by)
    with connect(bind) as conn:
        start, _ = epoch_range(filters)
        coarsest, width = timeseries_grain(conn, start, bucket_seconds)
        src = _rollup_rows(conn, filters, coarsest=coarsest)
        bucket = (src.c.bucket // width * width).label("bucket")
        statement = _keyed(select(bucket, *groups, *_totals(src)), src, filters)
        rows = rows_of(conn, statement.group_by(bucket, *groups).order_by(bucket, *groups))
    for row in rows:
        row["bucket"] = datetime.fromtimestamp(int(row["bucket"]), UTC)
        _finish_totals(row)
    return rows


# --- Percentiles ---------------------------------------------------------------------------

# Per measure: the rollup columns holding its sum and its count.
_MEAN_OF: Final = {"call": ("call_ms", "requests"), "request": ("request_ms", "requests"),
                   "ttft": ("ttft_ms", "ttft_requests")}


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
    keys for each quantile (``0.999`` → ``p99.9_ms``). The q-th percentile is the value of
    the first histogram bin whose cumulative count reaches ``q * n``.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be 'call', 'request' or 'ttft', not {measure!r}")
    keys = [_quantile_key(q) for q in quantiles]
    if bucket_seconds is not None:
        _check_bucket(bucket_seconds)
    names = [g.name for g in _dimension_columns(by)]
    with connect(bind) as conn:
        start, end = epoch_range(filters)
        coarsest, width = DAY, 0
        if bucket_seconds is not None:
            coarsest, width = timeseries_grain(conn, start, bucket_seconds)
        pieces = cover(conn, start, end, coarsest=coarsest)
        hist_rows = _histogram_percentiles(conn, filters, pieces, by, measure, quantiles, keys, width)
        means = _means(conn, filters, pieces, by, measure, width)
    rows = []
    for row in hist_rows:
        group = tuple(row[name] for name in (["bucket"] if width else []) + names)
        total, count = means.get(group, (0.0, 0))
        row["mean_ms"] = total / count if count else None
        rows.append(row)
    if width:
        for row in rows:
            row["bucket"] = datetime.fromtimestamp(int(row["bucket"]), UTC)
        rows.sort(key=lambda r: r["bucket"])
    elif rows and "p95_ms" in rows[0]:
        rows.sort(key=lambda r: -(r["p95_ms"] or 0.0))
    return rows


def _groups(src: Any, by: str | Sequence[str] | None, width: int) -> list[ColumnElement[Any]]:
    groups = _dimension_columns(by)
    if width:
        groups.insert(0, (src.c.bucket // width * width).label("bucket"))
    return groups


def _histogram_percentiles(conn: Connection, filters: Filters, pieces: Any, by: str | Sequence[str] | None,
                           measure: str, quantiles: Sequence[float], keys: list[str],
                           width: int) -> list[dict[str, Any]]:
    # The database selects the histograms (ranges, filters, group values); adding their bins
    # is done here, a histogram at a time (see _histogram for why not a row per bin).
    src = rollup_source(rollup_latency, ("counts",), pieces, rollup_latency.c.measure == MEASURES[measure])
    groups = _groups(src, by, width)
    names = [g.name for g in groups]
    summed: dict[tuple[Any, ...], list[int]] = {}
    # Fetched at once: iterating a result fetches a row per driver call, which cost more
    # than adding the row's bins.
    for *values, blob in conn.execute(_keyed(select(*groups, src.c.counts), src, filters)).all():
        hist = summed.get(tuple(values))
        if hist is None:
            hist = summed[tuple(values)] = new_histogram()
        add_blob(hist, bytes(blob))
    rows = []
    for group, hist in summed.items():
        total, found = percentile_bins(hist, quantiles)
        if total <= 0:
            continue
        row: dict[str, Any] = dict(zip(names, group, strict=True))
        row["n"] = total
        for key, index in zip(keys, found, strict=True):
            row[key] = bin_value(index) if index is not None else None
        rows.append(row)
    rows.sort(key=lambda r: tuple((r[name] is None, r[name]) for name in names))
    return rows


def _means(conn: Connection, filters: Filters, pieces: Any, by: str | Sequence[str] | None, measure: str,
           width: int) -> dict[tuple[Any, ...], tuple[float, int]]:
    total_column, count_column = _MEAN_OF[measure]
    src = rollup_source(rollups, (total_column, count_column), pieces)
    groups = _groups(src, by, width)
    condition = _IS_FINAL if measure == "call" else None
    statement = _keyed(select(*groups, _total(src.c[total_column], condition).label("sum_ms"),
                              _total(src.c[count_column], condition).label("n_values")), src, filters)
    statement = statement.group_by(*groups)
    return {tuple(row[: len(groups)]): (float(row.sum_ms), int(row.n_values)) for row in conn.execute(statement)}


def _quantile_key(q: float) -> str:
    if not 0 < q <= 1:
        raise ValueError(f"quantiles must be in (0, 1], got {q}")
    return f"p{q * 100:g}_ms"


# --- Filter values -------------------------------------------------------------------------

_OPTION_COLUMNS: Final = {"tasks": _k.task, "models": _k.request_model, "prompt_versions": _k.prompt_version,
                          "statuses": _k.status, "services": _k.service_name}


def filter_options(bind: Bind, filters: Filters = Filters()) -> dict[str, list[str]]:
    """Distinct non-NULL values of each filterable column within ``filters``' time range.

    Keys: ``tasks``, ``models``, ``prompt_versions``, ``statuses``, ``services``; sorted.
    Only the time range applies, so picking a task never hides the other tasks' options.
    The keys used in the range are few (a few thousand at most): one grouped read.
    """
    columns = list(_OPTION_COLUMNS.values())
    values: dict[str, set[str]] = {key: set() for key in _OPTION_COLUMNS}
    with connect(bind) as conn:
        src = _rollup_rows(conn, filters.time_only(), ())
        used = select(src.c.key_id).distinct().subquery("used")
        statement = select(*columns).select_from(used.join(rollup_keys, _k.id == used.c.key_id)).group_by(*columns)
        for row in conn.execute(statement):
            for key, value in zip(_OPTION_COLUMNS, row, strict=True):
                if value is not None:
                    values[key].add(value)
    return {key: sorted(found) for key, found in values.items()}

