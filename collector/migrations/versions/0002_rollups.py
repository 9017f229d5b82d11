"""Rollups: pre-aggregated sums and latency histograms per minute, hour and day.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

The backfill from the raw rows runs in 0005: it uses the live write path, which writes the
latency layout of 0005, not the one created here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(40), nullable=False),
        sa.Column("service_name", sa.String(255)),
        sa.Column("task", sa.String(255)),
        sa.Column("provider", sa.String(64)),
        sa.Column("request_model", sa.String(255)),
        sa.Column("response_model", sa.String(255)),
        sa.Column("prompt_name", sa.String(255)),
        sa.Column("prompt_version", sa.String(255)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("failure_reason", sa.String(255)),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("streaming", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollup_keys"),
        sa.UniqueConstraint("key_hash", name="uq_rollup_keys_key_hash"),
    )
    sums = [sa.Column(name, sa.Float() if name.endswith(("_usd", "_ms")) else sa.BigInteger(), nullable=False)
            for name in ("requests", "retried_calls", "unpriced_requests", "cost_usd", "input_tokens",
                         "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
                         "call_ms", "request_ms", "ttft_ms", "ttft_requests")]
    op.create_table(
        "rollups",
        sa.Column("grain", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        *sums,
        sa.PrimaryKeyConstraint("grain", "bucket", "key_id", name="pk_rollups"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "rollup_latency",
        sa.Column("grain", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("measure", sa.SmallInteger(), nullable=False),
        sa.Column("bin", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("grain", "measure", "bucket", "key_id", "bin", name="pk_rollup_latency"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "store_marks",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_store_marks"),
    )


def downgrade() -> None:
    op.drop_table("store_marks")
    op.drop_table("rollup_latency")
    op.drop_table("rollups")
    op.drop_table("rollup_keys")
