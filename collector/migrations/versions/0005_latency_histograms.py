"""Latency histograms as one row per (grain, measure, bucket, key), a six-hour grain, and the
rollup backfill.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

A row per latency bin made a percentile's cost grow with the bins traffic fills; a row per
histogram (its bins packed, see ``llmlens.collector.store._histogram``) keeps it at keys x
buckets. Existing bin rows are converted, not recomputed: they hold the history of raw rows
already pruned. The six-hour grain (sums and histograms) is summed from the hours.

The backfill of a store whose raw rows predate rollups (revision 0001) lives here: it uses
the live write path, so it belongs to the migration that last changed the rollup layout.
It runs only when the rollups are empty and raw rows exist, which is only true of such a
store (every later write maintains the rollups).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CHUNK = 20_000
_HOUR = 3600
_SIX_HOURS = 6 * 3600


def upgrade() -> None:
    from llmlens.collector.store._histogram import encode

    conn = op.get_bind()
    op.rename_table("rollup_latency", "rollup_latency_bins")
    if conn.dialect.name == "postgresql":  # the primary key's index name must be free again
        op.execute("ALTER TABLE rollup_latency_bins RENAME CONSTRAINT pk_rollup_latency TO pk_rollup_latency_bins")
    op.create_table(
        "rollup_latency",
        sa.Column("grain", sa.Integer(), nullable=False),
        sa.Column("measure", sa.SmallInteger(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("grain", "measure", "bucket", "key_id", name="pk_rollup_latency"),
        sqlite_with_rowid=False,
    )
    old = sa.table("rollup_latency_bins", *(sa.column(name) for name in
                                             ("grain", "measure", "bucket", "key_id", "bin", "n")))
    new = sa.table("rollup_latency", *(sa.column(name) for name in ("grain", "measure", "bucket", "key_id", "counts")))
    o = old.c
    _convert(conn, new, encode, sa.select(o.grain, o.measure, o.bucket, o.key_id, o.bin, o.n)
             .order_by(o.grain, o.measure, o.bucket, o.key_id, o.bin))
    # The six-hour grain is new here: summed from the hours.
    six = (o.bucket - o.bucket % _SIX_HOURS).label("six")
    _convert(conn, new, encode, sa.select(sa.literal(_SIX_HOURS), o.measure, six, o.key_id, o.bin, sa.func.sum(o.n))
             .where(o.grain == _HOUR).group_by(o.measure, six, o.key_id, o.bin)
             .order_by(o.measure, six, o.key_id, o.bin))
    sums = ("requests", "retried_calls", "unpriced_requests", "cost_usd", "input_tokens", "output_tokens",
            "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "call_ms", "request_ms", "ttft_ms",
            "ttft_requests")
    rollups = sa.table("rollups", *(sa.column(name) for name in ("grain", "bucket", "key_id", *sums)))
    r = rollups.c
    six_sum = (r.bucket - r.bucket % _SIX_HOURS).label("six")
    conn.execute(rollups.insert().from_select(
        ["grain", "bucket", "key_id", *sums],
        sa.select(sa.literal(_SIX_HOURS), six_sum, r.key_id, *(sa.func.sum(r[name]) for name in sums))
        .where(r.grain == _HOUR).group_by(six_sum, r.key_id)))
    op.drop_table("rollup_latency_bins")
    _backfill(conn)


def _convert(conn: sa.Connection, new: sa.TableClause, encode: Any, ordered: sa.Select[Any]) -> None:
    # Rows in primary-key order, one histogram complete before the next starts: memory
    # stays bounded by the chunk, whatever the store's size.
    pending: dict[tuple[int, int, int, int], dict[int, int]] = defaultdict(dict)
    current = None
    for grain, measure, bucket, key_id, index, n in conn.execute(ordered.execution_options(yield_per=_CHUNK)):
        key = (int(grain), int(measure), int(bucket), int(key_id))
        if key != current and len(pending) >= _CHUNK:
            _write(conn, new, pending, encode)
        current = key
        pending[key][int(index)] = int(n)
    _write(conn, new, pending, encode)


def _write(conn: sa.Connection, new: sa.TableClause, pending: dict[tuple[int, int, int, int], dict[int, int]],
           encode: Any) -> None:
    if pending:
        conn.execute(new.insert(), [{"grain": g, "measure": m, "bucket": b, "key_id": k, "counts": encode(bins)}
                                    for (g, m, b, k), bins in pending.items()])
        pending.clear()


def _backfill(conn: sa.Connection) -> None:
    from llmlens.collector.store._rollup import Delta, KeyCache, apply
    from llmlens.collector.store._tables import llm_spans, rollups

    if conn.execute(sa.select(rollups.c.bucket).limit(1)).first() is not None:
        return
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
    from llmlens.collector.store._histogram import decode

    conn = op.get_bind()
    op.rename_table("rollup_latency", "rollup_latency_hist")
    if conn.dialect.name == "postgresql":
        op.execute("ALTER TABLE rollup_latency_hist RENAME CONSTRAINT pk_rollup_latency TO pk_rollup_latency_hist")
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
    hist = sa.table("rollup_latency_hist", *(sa.column(name) for name in
                                              ("grain", "measure", "bucket", "key_id", "counts")))
    bins = sa.table("rollup_latency", *(sa.column(name) for name in
                                        ("grain", "measure", "bucket", "key_id", "bin", "n")))
    # 0004 knows no six-hour grain.
    conn.execute(sa.table("rollups", sa.column("grain")).delete().where(sa.column("grain") == _SIX_HOURS))
    batch: list[dict[str, int]] = []
    known_grains = sa.select(hist).where(hist.c.grain != _SIX_HOURS)
    for grain, measure, bucket, key_id, counts in conn.execute(known_grains.execution_options(yield_per=_CHUNK)):
        batch += [{"grain": grain, "measure": measure, "bucket": bucket, "key_id": key_id, "bin": index, "n": n}
                  for index, n in decode(bytes(counts))]
        if len(batch) >= _CHUNK:
            conn.execute(bins.insert(), batch)
            batch.clear()
    if batch:
        conn.execute(bins.insert(), batch)
    op.drop_table("rollup_latency_hist")
