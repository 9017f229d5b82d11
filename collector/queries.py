"""The reads the dashboard and the alert evaluator make: aggregates, the trace list, alerts.

They live in :mod:`llmlens.collector.store` with every other statement; this module is
the name views and alerts import them by. Every function takes an ``Engine`` or
``Connection`` and (mostly) a :class:`Filters`, and returns a dict or a list of dicts.

>>> from llmlens.collector import queries
>>> queries.summary(store.engine, queries.Filters.last(timedelta(days=1)))["spend_usd"]  # doctest: +SKIP
12.75
"""

from __future__ import annotations

from llmlens.collector.store import (
    BUCKET_LADDER,
    DIMENSIONS,
    Cursor,
    Filters,
    Measure,
    breakdown,
    call_detail,
    choose_bucket,
    count_calls,
    drops_by_cause,
    filter_options,
    has_rows,
    latency_percentiles,
    list_alert_events,
    list_alert_rules,
    list_calls,
    raw_time_extent,
    retry_waste,
    summary,
    time_extent,
    timeseries,
)

__all__ = [
    "BUCKET_LADDER",
    "DIMENSIONS",
    "Cursor",
    "Filters",
    "Measure",
    "breakdown",
    "call_detail",
    "choose_bucket",
    "count_calls",
    "drops_by_cause",
    "filter_options",
    "has_rows",
    "latency_percentiles",
    "list_alert_events",
    "list_alert_rules",
    "list_calls",
    "raw_time_extent",
    "retry_waste",
    "summary",
    "time_extent",
    "timeseries",
]
