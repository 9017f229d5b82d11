"""The initial store: llm_spans, alert_rules, alert_events.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmlens.collector.store import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _bigint() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "llm_spans",
        sa.Column("id", _bigint(), primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("parent_span_id", sa.String(16)),
        sa.Column("service_name", sa.String(255)),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("time_to_first_token_ms", sa.Float()),
        sa.Column("task", sa.String(255)),
        sa.Column("operation", sa.String(64)),
        sa.Column("provider", sa.String(64)),
        sa.Column("request_model", sa.String(255)),
        sa.Column("response_model", sa.String(255)),
        sa.Column("prompt_name", sa.String(255)),
        sa.Column("prompt_version", sa.String(255)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("failure_reason", sa.String(255)),
        sa.Column("error_type", sa.String(255)),
        sa.Column("input_tokens", sa.BigInteger()),
        sa.Column("output_tokens", sa.BigInteger()),
        sa.Column("cache_read_tokens", sa.BigInteger()),
        sa.Column("cache_write_tokens", sa.BigInteger()),
        sa.Column("reasoning_tokens", sa.BigInteger()),
        sa.Column("cost_usd", sa.Float()),
        sa.Column("reported_cost_usd", sa.Float()),
        sa.Column("call_id", sa.String(16)),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer()),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("call_duration_ms", sa.Float()),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("streaming", sa.Boolean(), nullable=False),
        sa.Column("finish_reason", sa.String(64)),
        sa.Column("conversation_id", sa.String(255)),
        sa.Column("prompt_hash", sa.String(64)),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_llm_spans"),
        sa.UniqueConstraint("trace_id", "span_id", name="uq_llm_spans_trace_span"),
    )
    op.create_index("ix_llm_spans_start_time", "llm_spans", ["start_time"])
    op.create_index("ix_llm_spans_task_start", "llm_spans", ["task", "start_time"])
    op.create_index("ix_llm_spans_model_start", "llm_spans", ["request_model", "start_time"])
    op.create_index("ix_llm_spans_status_start", "llm_spans", ["status", "start_time"])

    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("window_minutes", sa.Integer(), nullable=False),
        sa.Column("min_calls", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(255)),
        sa.Column("webhook_url", sa.Text()),
        sa.Column("cooldown_minutes", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
        sa.UniqueConstraint("name", name="uq_alert_rules_name"),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("rule_name", sa.String(255), nullable=False),
        sa.Column("fired_at", UTCDateTime(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("task", sa.String(255)),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("delivery_error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
    )
    op.create_index("ix_alert_events_fired_at", "alert_events", ["fired_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_events_fired_at", table_name="alert_events")
    op.drop_table("alert_events")
    op.drop_table("alert_rules")
    op.drop_table("llm_spans")
