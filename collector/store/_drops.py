"""Spans lost anyway, counted where users look: the ``llm_drops`` table and its reads.

The embedded exporter and the collector count every span they give up on by cause (see
:mod:`llmlens.collector._drops` for the causes) and add their counts here, per minute, once
the store is writable again. Counts are only ever added (one row per report, summed on
read), so processes never contend for a row and no dialect-specific upsert is needed.

Also here: the SQLite WAL checkpoint the writers run when idle, so the main database file,
not the write-ahead log, holds the data (see :func:`checkpoint`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from sqlalchemy import BigInteger, Column, Engine, Index, Integer, String, Table, func, insert, select

from llmlens.collector.store._engine import safe_url
from llmlens.collector.store._errors import translated
from llmlens.collector.store._filters import Bind, Filters, connect
from llmlens.collector.store._tables import metadata
from llmlens.collector.store._time import UTCDateTime

__all__ = ["checkpoint", "drops_by_cause", "llm_drops", "record_drops"]

llm_drops: Final = Table(
    "llm_drops",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("bucket_start", UTCDateTime(), nullable=False),  # the minute the spans were lost in
    Column("service_name", String(255), nullable=False),
    Column("process", String(255), nullable=False),  # host:pid of the exporter or collector
    Column("cause", String(32), nullable=False),
    Column("count", BigInteger, nullable=False),
    Index("ix_llm_drops_bucket_start", "bucket_start"),
)

DropCounts = Mapping[tuple[datetime, str, str], int]  # (minute, service, cause) -> spans


def _process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def record_drops(engine: Engine, counts: DropCounts) -> None:
    """Add lost-span counts, keyed by (minute, service, cause), in one transaction."""
    rows = [{"bucket_start": minute, "service_name": service or "", "process": _process(),
             "cause": cause, "count": count}
            for (minute, service, cause), count in counts.items() if count > 0]
    if not rows:
        return
    with translated("cannot write to", safe_url(engine)), engine.begin() as conn:
        conn.execute(insert(llm_drops), rows)


def drops_by_cause(bind: Bind, filters: Filters) -> dict[str, int]:
    """Spans lost in the filters' time range (and services, if any), summed by cause.

    >>> drops_by_cause(engine, Filters.last(timedelta(days=1)))  # doctest: +SKIP
    {'spool_full': 312, 'queue_full': 2560}
    """
    t = llm_drops.c
    query = select(t.cause, func.sum(t.count)).group_by(t.cause)
    if filters.start is not None:
        query = query.where(t.bucket_start >= filters.start)
    if filters.end is not None:
        query = query.where(t.bucket_start < filters.end)
    services = [s for s in filters.services if s is not None]
    if services:
        query = query.where(t.service_name.in_(services))
    with connect(bind) as conn:
        return {str(cause): int(total) for cause, total in conn.execute(query) if total}


def checkpoint(engine: Engine) -> bool:
    """Copy the SQLite WAL into the main file and truncate it; True when it completed.

    Run by the writers when idle. A no-op (True) on PostgreSQL. Returns False when a
    reader kept part of the log busy or the disk had no room; the next idle moment retries.
    """
    if engine.dialect.name != "sqlite":
        return True
    try:
        with engine.connect() as conn:
            busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            conn.commit()
        return not busy
    except Exception:
        return False
