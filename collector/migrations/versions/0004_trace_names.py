"""Names of workflow, chain, agent and trace spans, so rows get their task across batches.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmlens.collector.store import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llm_trace_names",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("parent_span_id", sa.String(16)),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=False),
        sa.Column("end_time", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_llm_trace_names"),
        sa.UniqueConstraint("trace_id", "span_id", name="uq_llm_trace_names_trace_span"),
    )
    op.create_index("ix_llm_trace_names_start_time", "llm_trace_names", ["start_time"])


def downgrade() -> None:
    op.drop_index("ix_llm_trace_names_start_time", table_name="llm_trace_names")
    op.drop_table("llm_trace_names")
