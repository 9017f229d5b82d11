"""The store's tables, on llmlens' own ``MetaData``, and the row that fills ``llm_spans``.

The tables never touch ``SQLModel.metadata`` (or any other application metadata): an
application's ``create_all()`` or Alembic autogenerate must not pick them up. Column types
are portable (SQLite and PostgreSQL) and constraint names fixed by :data:`NAMING_CONVENTION`,
so migrations name the same objects on both databases.

``llm_spans`` holds one row per request to a model provider: what is billed (DESIGN.md
"What a row is"). :class:`SpanRow` is the dict ``normalize`` produces and the writer
consumes, typed so a renamed key is a type error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, TypedDict

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from llmlens.collector.store._time import UTCDateTime

__all__ = [
    "NAMING_CONVENTION",
    "ROW_COLUMNS",
    "SpanRow",
    "alert_events",
    "alert_rules",
    "llm_spans",
    "llm_trace_names",
    "metadata",
    "rollup_keys",
    "rollup_latency",
    "rollups",
    "store_marks",
]

# Fixed constraint names: Alembic autogenerate and both databases agree on them.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: Final = MetaData(naming_convention=NAMING_CONVENTION)


def _bigint_key() -> Column[int]:
    # SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
    return Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)


llm_spans: Final = Table(
    "llm_spans",
    metadata,
    _bigint_key(),
    Column("trace_id", String(32), nullable=False),
    Column("span_id", String(16), nullable=False),
    Column("parent_span_id", String(16)),
    Column("service_name", String(255)),
    Column("name", String(255), nullable=False),
    Column("start_time", UTCDateTime(), nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("time_to_first_token_ms", Float),
    Column("task", String(255)),
    Column("operation", String(64)),
    Column("provider", String(64)),
    Column("request_model", String(255)),
    Column("response_model", String(255)),
    Column("prompt_name", String(255)),
    Column("prompt_version", String(255)),
    Column("status", String(32), nullable=False),
    Column("failure_reason", String(255)),
    Column("error_type", String(255)),
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    Column("cache_read_tokens", BigInteger),
    Column("cache_write_tokens", BigInteger),
    Column("reasoning_tokens", BigInteger),
    # NULL when the model is unpriced: never a silent 0.
    Column("cost_usd", Float),
    # A cost the sender computed (OpenLIT's gen_ai.usage.cost, Langfuse), kept apart.
    Column("reported_cost_usd", Float),
    Column("call_id", String(16)),
    Column("attempt", Integer, nullable=False),
    Column("max_attempts", Integer),
    Column("final", Boolean, nullable=False),
    Column("call_duration_ms", Float),
    Column("idempotency_key", String(255)),
    Column("streaming", Boolean, nullable=False),
    Column("finish_reason", String(64)),
    Column("conversation_id", String(255)),
    Column("prompt_hash", String(64)),
    Column("attributes", JSON, nullable=False),
    UniqueConstraint("trace_id", "span_id", name="uq_llm_spans_trace_span"),
    Index("ix_llm_spans_start_time", "start_time"),
    Index("ix_llm_spans_task_start", "task", "start_time"),
    Index("ix_llm_spans_model_start", "request_model", "start_time"),
    Index("ix_llm_spans_status_start", "status", "start_time"),
    # No index on call_id: a call's attempts share its trace id, so lookups go through the
    # (trace_id, span_id) unique index; call ids are random, and an index of their own
    # cost a quarter of SQLite's insert rate.
)

# Spans that name the work beneath them (a workflow, chain, agent or trace name) and are
# not rows themselves: a row whose named ancestor arrives in another batch, or at another
# collector worker, takes its task from here (see collector/_lineage.py).
llm_trace_names: Final = Table(
    "llm_trace_names",
    metadata,
    _bigint_key(),
    Column("trace_id", String(32), nullable=False),
    Column("span_id", String(16), nullable=False),
    Column("parent_span_id", String(16)),
    Column("name", String(255), nullable=False),
    Column("start_time", UTCDateTime(), nullable=False),
    Column("end_time", UTCDateTime(), nullable=False),
    UniqueConstraint("trace_id", "span_id", name="uq_llm_trace_names_trace_span"),
    Index("ix_llm_trace_names_start_time", "start_time"),  # for retention
)

# A condition over recent rows, e.g. invalid-output rate above 10% in 15 minutes.
alert_rules: Final = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, nullable=False),
    Column("name", String(255), nullable=False, unique=True),
    # invalid_output_rate, failure_rate, spend_usd, wasted_spend_usd, p95_ms
    Column("metric", String(64), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("window_minutes", Integer, nullable=False),
    Column("min_calls", Integer, nullable=False),
    Column("task", String(255)),
    Column("webhook_url", Text),
    Column("cooldown_minutes", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False),
    PrimaryKeyConstraint("id"),
)

# One firing of a rule, kept whether or not its webhook was delivered.
alert_events: Final = Table(
    "alert_events",
    metadata,
    Column("id", Integer, nullable=False),
    Column("rule_id", Integer, nullable=False),
    Column("rule_name", String(255), nullable=False),
    Column("fired_at", UTCDateTime(), nullable=False),
    Column("value", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("task", String(255)),
    Column("message", Text, nullable=False),
    Column("delivered", Boolean, nullable=False),
    Column("delivery_error", Text),
    PrimaryKeyConstraint("id"),
    Index("ix_alert_events_fired_at", "fired_at"),
)


# --- Rollups: what every aggregate reads (see docs/store.md) ---------------------------------

# One row per combination of the dimensions the dashboard filters and groups on. Rollup rows
# refer to it by id, which keeps them narrow. ``key_hash`` makes the combination unique:
# a UNIQUE over the columns themselves would let NULLs repeat on both databases.
rollup_keys: Final = Table(
    "rollup_keys",
    metadata,
    Column("id", Integer, nullable=False),
    Column("key_hash", String(40), nullable=False, unique=True),
    Column("service_name", String(255)),
    Column("task", String(255)),
    Column("provider", String(64)),
    Column("request_model", String(255)),
    Column("response_model", String(255)),
    Column("prompt_name", String(255)),
    Column("prompt_version", String(255)),
    Column("status", String(32), nullable=False),
    Column("failure_reason", String(255)),
    Column("final", Boolean, nullable=False),
    Column("streaming", Boolean, nullable=False),
    PrimaryKeyConstraint("id"),
)

# Sums per (grain, bucket, key): grain 60 (minute), 3600 (hour), 21600 (six hours) or 86400
# (day) seconds, bucket the epoch second the bucket starts at (UTC). Additive columns only,
# so any range and grouping is a SUM. Minute rows are pruned with the raw rows; the others
# stay.
rollups: Final = Table(
    "rollups",
    metadata,
    Column("grain", Integer, nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("key_id", Integer, nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("retried_calls", BigInteger, nullable=False),  # final rows with attempt > 1
    Column("unpriced_requests", BigInteger, nullable=False),
    Column("cost_usd", Float, nullable=False),  # over priced rows only
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("call_ms", Float, nullable=False),  # call latency summed over final rows
    Column("request_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=False),
    Column("ttft_requests", BigInteger, nullable=False),
    PrimaryKeyConstraint("grain", "bucket", "key_id"),
    sqlite_with_rowid=False,
)

# Latency distributions: per (grain, bucket, key), the histogram of ``measure`` (0 call, 1
# request, 2 time to first token) over log-spaced bins, packed in ``counts`` (_histogram).
# Adding the histograms of any range and grouping gives that selection's percentiles. The
# key starts (grain, measure, bucket): a percentile reads only its own measure's rows.
rollup_latency: Final = Table(
    "rollup_latency",
    metadata,
    Column("grain", Integer, nullable=False),
    Column("measure", SmallInteger, nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("key_id", Integer, nullable=False),
    Column("counts", LargeBinary, nullable=False),
    PrimaryKeyConstraint("grain", "measure", "bucket", "key_id"),
    sqlite_with_rowid=False,
)

# Small named values the store keeps about itself; what each means: ``_marks``.
store_marks: Final = Table(
    "store_marks",
    metadata,
    Column("name", String(64), nullable=False),
    Column("value", BigInteger, nullable=False),
    PrimaryKeyConstraint("name"),
)


class SpanRow(TypedDict):
    """One ``llm_spans`` row as it flows from ``normalize`` to the writer (no ``id`` yet)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    service_name: str | None
    name: str
    start_time: datetime
    duration_ms: float
    time_to_first_token_ms: float | None
    task: str | None
    operation: str | None
    provider: str | None
    request_model: str | None
    response_model: str | None
    prompt_name: str | None
    prompt_version: str | None
    status: str
    failure_reason: str | None
    error_type: str | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    reasoning_tokens: int | None
    cost_usd: float | None
    reported_cost_usd: float | None
    call_id: str | None
    attempt: int
    max_attempts: int | None
    final: bool
    call_duration_ms: float | None
    idempotency_key: str | None
    streaming: bool
    finish_reason: str | None
    conversation_id: str | None
    prompt_hash: str | None
    attributes: dict[str, Any]


# Columns of llm_spans a writer fills (everything but the surrogate key), in table order.
ROW_COLUMNS: Final[tuple[str, ...]] = tuple(c.name for c in llm_spans.columns if c.name != "id")
