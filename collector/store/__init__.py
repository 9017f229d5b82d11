"""The store: every SQL statement llmlens runs, and every difference between SQLite and PostgreSQL.

Modules, each with one concern:

- ``_tables``: the tables, on llmlens' own ``MetaData``; :class:`SpanRow`, the row's type
- ``_time``: UTC in and out of both databases
- ``_engine``: one engine per URL with each dialect's options; the schema check on open
- ``_errors``: :class:`StoreError` and its subclasses, and the one path that translates
  database errors into them
- ``_write`` / ``_store``: the bulk writer and :class:`Store`
- ``_filters``, ``_queries``, ``_traces``, ``_alerts``: the reads the dashboard, the alert
  evaluator and the CLI make (re-exported by :mod:`llmlens.collector.queries`)
- ``_rollup``, ``_plan``: rollups written with every batch, and how reads cover a range
- ``_reprice``, ``_retention``, ``_migrate``: re-pricing, pruning, Alembic migrations
- ``_drops``: spans lost anyway (``llm_drops``), and the SQLite checkpoint writers run when idle

>>> store = open_store("sqlite:///llmlens.db")  # doctest: +SKIP
>>> store.insert_rows(rows)  # doctest: +SKIP
>>> summary(store.engine, Filters.last(timedelta(days=1)))  # doctest: +SKIP
"""

from __future__ import annotations

from llmlens.collector.store._alerts import (
    add_alert_rule,
    alert_rule_id,
    enabled_alert_rules,
    last_alert_fired,
    list_alert_events,
    list_alert_rules,
    record_alert_event,
)
from llmlens.collector.store._drops import checkpoint, drops_by_cause, llm_drops, record_drops
from llmlens.collector.store._engine import (
    DEFAULT_DB_URL,
    SCHEMA_REVISION,
    current_revision,
    dispose_engines,
    ensure_schema,
    get_engine,
    make_engine,
    resolve_url,
)
from llmlens.collector.store._errors import StoreError, StoreOutdated, StoreUnavailable
from llmlens.collector.store._filters import Bind, Filters
from llmlens.collector.store._queries import (
    BUCKET_LADDER,
    DIMENSIONS,
    Measure,
    breakdown,
    choose_bucket,
    filter_options,
    has_rows,
    latency_percentiles,
    retry_waste,
    summary,
    time_extent,
    timeseries,
)
from llmlens.collector.store._reprice import RepriceResult, reprice_rows
from llmlens.collector.store._retention import PruneResult, prune
from llmlens.collector.store._rollup import RELATIVE_ERROR
from llmlens.collector.store._store import Store, open_store
from llmlens.collector.store._tables import (
    NAMING_CONVENTION,
    ROW_COLUMNS,
    SpanRow,
    alert_events,
    alert_rules,
    llm_spans,
    metadata,
)
from llmlens.collector.store._time import UTCDateTime, as_utc
from llmlens.collector.store._traces import Cursor, call_detail, count_calls, list_calls, raw_time_extent

__all__ = [
    "BUCKET_LADDER",
    "DEFAULT_DB_URL",
    "DIMENSIONS",
    "NAMING_CONVENTION",
    "RELATIVE_ERROR",
    "ROW_COLUMNS",
    "SCHEMA_REVISION",
    "Bind",
    "Cursor",
    "Filters",
    "Measure",
    "PruneResult",
    "RepriceResult",
    "SpanRow",
    "Store",
    "StoreError",
    "StoreOutdated",
    "StoreUnavailable",
    "UTCDateTime",
    "add_alert_rule",
    "alert_events",
    "alert_rule_id",
    "alert_rules",
    "as_utc",
    "breakdown",
    "call_detail",
    "checkpoint",
    "choose_bucket",
    "count_calls",
    "current_revision",
    "dispose_engines",
    "drops_by_cause",
    "enabled_alert_rules",
    "ensure_schema",
    "filter_options",
    "get_engine",
    "has_rows",
    "last_alert_fired",
    "latency_percentiles",
    "list_alert_events",
    "list_alert_rules",
    "list_calls",
    "llm_drops",
    "llm_spans",
    "make_engine",
    "metadata",
    "open_store",
    "prune",
    "raw_time_extent",
    "record_alert_event",
    "record_drops",
    "reprice_rows",
    "resolve_url",
    "retry_waste",
    "summary",
    "time_extent",
    "timeseries",
]
