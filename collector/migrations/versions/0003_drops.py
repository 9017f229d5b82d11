"""llm_drops: spans lost anyway (spool full, queue full, rejected), counted per minute and cause.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmlens.collector.store import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llm_drops",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("bucket_start", UTCDateTime(), nullable=False),
        sa.Column("service_name", sa.String(255), nullable=False),
        sa.Column("process", sa.String(255), nullable=False),
        sa.Column("cause", sa.String(32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_llm_drops"),
    )
    op.create_index("ix_llm_drops_bucket_start", "llm_drops", ["bucket_start"])


def downgrade() -> None:
    op.drop_index("ix_llm_drops_bucket_start", table_name="llm_drops")
    op.drop_table("llm_drops")
