"""Rollups: pre-aggregated sums and latency histograms per minute, hour and day, backfilled.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

The backfill reads the raw rows in primary-key chunks and adds each chunk to the rollups
with the same code the write path uses, so a migrated store holds exactly what a store
that was written with rollups from the start would.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_CHUNK = 20_000


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
    _backfill(op.get_bind())


def _backfill(conn: sa.Connection) -> None:
    from llmlens.collector.store._rollup import Delta, KeyCache, apply
    from llmlens.collector.store._tables import llm_spans

    keys = KeyCache()
    last_id = 0
    while True:
        rows = [dict(r._mapping) for r in conn.execute(
            sa.select(llm_spans).where(llm_spans.c.id > last_id).order_by(llm_spans.c.id).limit(_CHUNK))]
        if not rows:
            return
        keys.remember(apply(conn, Delta.of(rows), keys))
        last_id = rows[-1]["id"]


def downgrade() -> None:
    op.drop_table("store_marks")
    op.drop_table("rollup_latency")
    op.drop_table("rollups")
    op.drop_table("rollup_keys")
