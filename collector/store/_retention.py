"""Retention: delete old raw rows (and old rollups) in small batches while the store is in use.

Raw rows serve the trace list and a call's detail; every aggregate reads rollups, so
charts of pruned ranges keep working. Minute rollups are as fine as raw rows and go with
them, though never before they are folded into the hours (``_rollup.fold``); hour and
day rollups are kept (or pruned on their own, later, with ``rollups_before``). Each batch
is its own short transaction, so writers and the dashboard never wait long behind a
prune.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Connection, Table, delete, func, select

from llmlens.collector.store._filters import Bind, connect, transaction
from llmlens.collector.store._histogram import lock_histograms
from llmlens.collector.store._marks import MINUTES_FROM, advance_mark
from llmlens.collector.store._rollup import DAY, GRAINS, MINUTE, SIX_HOURS, folded_to
from llmlens.collector.store._tables import llm_spans, rollup_latency, rollups
from llmlens.collector.store._time import bind_time

__all__ = ["PruneResult", "prune"]

_SLICE: Final = SIX_HOURS  # rollup rows deleted per transaction: one slice of buckets


@dataclass
class PruneResult:
    """How many rows a prune deleted."""

    raw_rows: int = 0
    minute_rollups: int = 0
    rollups: int = 0


def prune(bind: Bind, *, raw_before: datetime, rollups_before: datetime | None = None,
          batch: int = 5000) -> PruneResult:
    """Delete raw rows (and minute rollups) older than ``raw_before``, and hour and day
    rollups older than ``rollups_before`` (default: keep them), ``batch`` rows at a time.

    >>> prune(store.engine, raw_before=datetime.now(UTC) - timedelta(days=30))  # doctest: +SKIP
    PruneResult(raw_rows=120453, minute_rollups=80211, rollups=0)
    """
    if batch <= 0:
        raise ValueError("batch must be positive")
    if rollups_before is not None and rollups_before > raw_before:
        raise ValueError("rollups must be kept at least as long as raw rows")
    result = PruneResult()
    c = llm_spans.c
    cut = bind_time(raw_before)
    oldest = select(c.id).where(c.start_time < cut).order_by(c.start_time).limit(batch).scalar_subquery()
    while True:
        with transaction(bind) as conn:
            deleted = conn.execute(delete(llm_spans).where(c.id.in_(oldest))).rowcount
        result.raw_rows += deleted
        if deleted < batch:
            break
    minute_cut = int(raw_before.timestamp()) // MINUTE * MINUTE
    with connect(bind) as conn:
        folded = folded_to(conn)
    if folded is not None:
        # Minutes not yet folded into the hours are the only record of their range: they
        # stay until a fold has added them.
        minute_cut = min(minute_cut, folded)
    result.minute_rollups = _prune_rollups(bind, (MINUTE,), minute_cut)
    if rollups_before is not None:
        result.rollups = _prune_rollups(bind, GRAINS[1:], int(rollups_before.timestamp()) // DAY * DAY)
    return result


def _prune_rollups(bind: Bind, grains: tuple[int, ...], cut: int) -> int:
    deleted = 0
    for grain in grains:
        while True:
            with transaction(bind) as conn:
                first = conn.execute(select(func.min(rollups.c.bucket)).where(rollups.c.grain == grain)).scalar()
                if first is None or int(first) >= cut:
                    break
                # Oldest buckets first and whole buckets per transaction, the mark moved in
                # the same transaction: reads know from where minutes are complete (_plan).
                end = min(int(first) + _SLICE, cut)
                deleted += _delete_slice(conn, rollups, grain, end)
                lock_histograms(conn)  # a merge in flight must not write back what this deletes
                _delete_slice(conn, rollup_latency, grain, end)
                if grain == MINUTE:
                    advance_mark(conn, MINUTES_FROM, end)
        if grain == MINUTE:
            with transaction(bind) as conn:
                advance_mark(conn, MINUTES_FROM, cut)
    return deleted


def _delete_slice(conn: Connection, table: Table, grain: int, end: int) -> int:
    t = table.c
    return int(conn.execute(delete(table).where(t.grain == grain, t.bucket < end)).rowcount)
