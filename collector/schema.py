"""The store's tables, as SQLModel classes (used for DDL and reads; writes go through Core).

``llm_spans`` holds one row per request to a model provider: what is billed. Column
types are portable (SQLite and PostgreSQL) and constraint names fixed, so Alembic
migrations name the same objects on both databases.
"""



from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

# Fixed constraint names: Alembic autogenerate and both databases agree on them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION
metadata: MetaData = SQLModel.metadata


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always UTC and always timezone-aware in Python.

    SQLite has no timezone type: values are stored as naive UTC text and given their
    timezone back on read, so both databases return the same aware datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc() -> Any:
    return Column(UTCDateTime(), nullable=False)


class LLMSpan(SQLModel, table=True):
    """One provider request. See DESIGN.md "What a row is"."""

    __tablename__ = "llm_spans"
    __table_args__ = (
        UniqueConstraint("trace_id", "span_id", name="uq_llm_spans_trace_span"),
        Index("ix_llm_spans_start_time", "start_time"),
        Index("ix_llm_spans_task_start", "task", "start_time"),
        Index("ix_llm_spans_model_start", "request_model", "start_time"),
        Index("ix_llm_spans_status_start", "status", "start_time"),
        # No index on call_id: a call's attempts share its trace id, so lookups go through
        # the (trace_id, span_id) unique index; call ids are random, and an index of their
        # own cost a quarter of SQLite's insert rate.
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                           primary_key=True, autoincrement=True))
    trace_id: str = Field(sa_column=Column(String(32), nullable=False))
    span_id: str = Field(sa_column=Column(String(16), nullable=False))
    parent_span_id: str | None = Field(default=None, sa_column=Column(String(16)))
    service_name: str | None = Field(default=None, sa_column=Column(String(255)))
    name: str = Field(default="", sa_column=Column(String(255), nullable=False))
    start_time: datetime = Field(sa_column=_utc())
    duration_ms: float = Field(sa_column=Column(Float, nullable=False))
    time_to_first_token_ms: float | None = Field(default=None, sa_column=Column(Float))
    task: str | None = Field(default=None, sa_column=Column(String(255)))
    operation: str | None = Field(default=None, sa_column=Column(String(64)))
    provider: str | None = Field(default=None, sa_column=Column(String(64)))
    request_model: str | None = Field(default=None, sa_column=Column(String(255)))
    response_model: str | None = Field(default=None, sa_column=Column(String(255)))
    prompt_name: str | None = Field(default=None, sa_column=Column(String(255)))
    prompt_version: str | None = Field(default=None, sa_column=Column(String(255)))
    status: str = Field(sa_column=Column(String(32), nullable=False))
    failure_reason: str | None = Field(default=None, sa_column=Column(String(255)))
    error_type: str | None = Field(default=None, sa_column=Column(String(255)))
    input_tokens: int | None = Field(default=None, sa_column=Column(BigInteger))
    output_tokens: int | None = Field(default=None, sa_column=Column(BigInteger))
    cache_read_tokens: int | None = Field(default=None, sa_column=Column(BigInteger))
    cache_write_tokens: int | None = Field(default=None, sa_column=Column(BigInteger))
    reasoning_tokens: int | None = Field(default=None, sa_column=Column(BigInteger))
    # NULL when the model is unpriced: never a silent 0.
    cost_usd: float | None = Field(default=None, sa_column=Column(Float))
    # A cost the sender computed (OpenLIT's gen_ai.usage.cost, Langfuse), kept apart.
    reported_cost_usd: float | None = Field(default=None, sa_column=Column(Float))
    call_id: str | None = Field(default=None, sa_column=Column(String(16)))
    attempt: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    max_attempts: int | None = Field(default=None, sa_column=Column(Integer))
    final: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))
    call_duration_ms: float | None = Field(default=None, sa_column=Column(Float))
    idempotency_key: str | None = Field(default=None, sa_column=Column(String(255)))
    streaming: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    finish_reason: str | None = Field(default=None, sa_column=Column(String(64)))
    conversation_id: str | None = Field(default=None, sa_column=Column(String(255)))
    prompt_hash: str | None = Field(default=None, sa_column=Column(String(64)))
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class AlertRule(SQLModel, table=True):
    """A condition over recent rows, e.g. invalid-output rate above 10% in 15 minutes."""

    __tablename__ = "alert_rules"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(255), nullable=False, unique=True))
    # invalid_output_rate, failure_rate, cost, p95_latency_ms
    metric: str = Field(sa_column=Column(String(64), nullable=False))
    threshold: float = Field(sa_column=Column(Float, nullable=False))
    window_minutes: int = Field(default=15, sa_column=Column(Integer, nullable=False))
    min_calls: int = Field(default=20, sa_column=Column(Integer, nullable=False))
    task: str | None = Field(default=None, sa_column=Column(String(255)))
    webhook_url: str | None = Field(default=None, sa_column=Column(Text))
    cooldown_minutes: int = Field(default=60, sa_column=Column(Integer, nullable=False))
    enabled: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))


class AlertEvent(SQLModel, table=True):
    """One firing of a rule, kept whether or not its webhook was delivered."""

    __tablename__ = "alert_events"
    __table_args__ = (Index("ix_alert_events_fired_at", "fired_at"),)

    id: int | None = Field(default=None, primary_key=True)
    rule_id: int = Field(sa_column=Column(Integer, nullable=False))
    rule_name: str = Field(sa_column=Column(String(255), nullable=False))
    fired_at: datetime = Field(sa_column=_utc())
    value: float = Field(sa_column=Column(Float, nullable=False))
    threshold: float = Field(sa_column=Column(Float, nullable=False))
    task: str | None = Field(default=None, sa_column=Column(String(255)))
    message: str = Field(default="", sa_column=Column(Text, nullable=False))
    delivered: bool = Field(default=False, sa_column=Column(Boolean, nullable=False))
    delivery_error: str | None = Field(default=None, sa_column=Column(Text))


llm_spans = LLMSpan.__table__  # type: ignore[attr-defined]
alert_rules = AlertRule.__table__  # type: ignore[attr-defined]
alert_events = AlertEvent.__table__  # type: ignore[attr-defined]

# Columns of llm_spans a writer fills (everything but the surrogate key).
ROW_COLUMNS: tuple[str, ...] = tuple(c.name for c in llm_spans.columns if c.name != "id")
