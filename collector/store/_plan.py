"""How a read covers a time range with rollups: days inside, hours next, minutes at the edges.

Aggregates resolve time to the minute: a range ``[start, end)`` is widened to whole
minutes (start rounded down, end up), which changes nothing for the dashboard's ranges
(they end on a whole minute) and lets every aggregate read rollups. The range is covered
by the coarsest buckets that fit: ``[Mon 10:17, Thu 14:03)`` is Mon 10:17-11:00 in minutes,
11:00-24:00 in hours, Tue-Wed in days, Thu 00:00-14:00 in hours and 14:00-14:03 in minutes,
so a 30-day range reads ~30 day rows per key, not 43,200 minute rows.

The coarse grains hold minutes only up to the fold mark (``_rollup.fold``, about an hour
behind the newest data), so the part of a range from the mark on is read in minutes.

Minute rows are pruned with the raw rows (``llmlens db prune``), never past the fold mark.
An edge older than the oldest minute row is read in whole hours instead: older ranges are
exact to the hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, Subquery, Table, select, union_all

from llmlens.collector.store._filters import Filters
from llmlens.collector.store._marks import MINUTES_FROM, read_mark
from llmlens.collector.store._rollup import DAY, GRAINS, HOUR, MINUTE, folded_to
from llmlens.collector.store._tables import rollup_keys

__all__ = ["Piece", "cover", "epoch_range", "keyed", "minute_horizon", "rollup_source",
           "timeseries_grain"]

Piece = tuple[int, int | None, int | None]  # (grain, first bucket, end), None: unbounded
_COARSE_TO_FINE: Final = tuple(reversed(GRAINS))


def _floor(value: int, grain: int) -> int:
    return value // grain * grain


def _ceil(value: int, grain: int) -> int:
    return -(-value // grain) * grain


def epoch_range(filters: Filters) -> tuple[int | None, int | None]:
    """The filters' time range in epoch seconds, widened to whole minutes."""
    start = None if filters.start is None else _floor(int(filters.start.timestamp()), MINUTE)
    end = None if filters.end is None else _ceil(_ceil_seconds(filters.end), MINUTE)
    return start, end


def _ceil_seconds(value: datetime) -> int:
    seconds = value.timestamp()
    whole = int(seconds)
    return whole + 1 if seconds > whole else whole


def _split(lo: int | None, hi: int | None, grains: Sequence[int]) -> list[Piece]:
    grain, finer = grains[0], grains[1:]
    if not finer:
        return [(grain, lo, hi)] if lo is None or hi is None or lo < hi else []
    first = None if lo is None else _ceil(lo, grain)
    last = None if hi is None else _floor(hi, grain)
    if first is None or last is None or first < last:
        pieces: list[Piece] = [(grain, first, last)]
        if lo is not None and first is not None:
            pieces += _split(lo, first, finer)
        if hi is not None and last is not None:
            pieces += _split(last, hi, finer)
        return pieces
    return _split(lo, hi, finer)


def minute_horizon(conn: Connection) -> int | None:
    """The first minute from which minute rollups are complete; None: from the start."""
    return read_mark(conn, MINUTES_FROM)


def cover(conn: Connection, start: int | None, end: int | None, *, coarsest: int = DAY) -> list[Piece]:
    """Disjoint (grain, lo, hi) pieces covering ``[start, end)``, coarsest first."""
    grains = [g for g in _COARSE_TO_FINE if g <= coarsest]
    folded = folded_to(conn) if coarsest > MINUTE else None
    if folded is not None and (end is None or end > folded):
        # Coarse rollups up to the fold mark, minutes from there.
        pieces = _split(start, folded, grains) if start is None or start < folded else []
        pieces += _split(folded if start is None else max(start, folded), end, [MINUTE])
    else:
        pieces = _split(start, end, grains)
    if any(grain == MINUTE for grain, _, _ in pieces):
        horizon = minute_horizon(conn)
        if horizon is not None:
            pieces = [_in_hours(p) if p[0] == MINUTE and (p[1] is None or p[1] < horizon) else p for p in pieces]
    return pieces


def _in_hours(piece: Piece) -> Piece:
    # Minutes pruned: the hours around the edge stand in for them (rounded outward).
    _, lo, hi = piece
    return (HOUR, None if lo is None else _floor(lo, HOUR), None if hi is None else _ceil(hi, HOUR))


def timeseries_grain(conn: Connection, start: int | None, bucket_seconds: int) -> tuple[int, int]:
    """(coarsest grain that tiles ``bucket_seconds``, the bucket width to use).

    A bucket finer than an hour needs minute rows; where they were pruned the series
    falls back to hourly buckets rather than showing an hour's total in one small bucket.
    """
    coarsest = max(g for g in GRAINS if bucket_seconds % g == 0) if bucket_seconds >= MINUTE else MINUTE
    if coarsest == MINUTE:
        horizon = minute_horizon(conn)
        if horizon is not None and (start is None or start < horizon):
            return HOUR, max(HOUR, _ceil(bucket_seconds, HOUR))
    return coarsest, bucket_seconds


def rollup_source(table: Table, columns: Sequence[str], pieces: Sequence[Piece],
                  *extra: ColumnElement[bool]) -> Subquery:
    """The rows of ``table`` (``rollups`` or ``rollup_latency``) the pieces select, as one
    UNION ALL subquery of ``bucket``, ``key_id`` and ``columns``: each arm is a range scan
    of the primary key (grain, bucket, …)."""
    c = table.c
    arms = []
    for grain, lo, hi in pieces or [(MINUTE, 0, 0)]:  # no piece: an empty range
        conditions = [c.grain == grain, *extra]
        if lo is not None:
            conditions.append(c.bucket >= lo)
        if hi is not None:
            conditions.append(c.bucket < hi)
        arms.append(select(c.bucket, c.key_id, *(c[name] for name in columns)).where(*conditions))
    statement: Any = arms[0] if len(arms) == 1 else union_all(*arms)
    source: Subquery = statement.subquery("src")
    return source


def keyed(source: Subquery) -> Any:
    """``source`` joined to its dimension keys (as ``rollup_keys``)."""
    return source.join(rollup_keys, rollup_keys.c.id == source.c.key_id)
