"""The store's marks: small named values it keeps about itself in ``store_marks``.

- ``minute_rollups_from``: the epoch second from which minute rollups are complete (moved
  by a prune; absent: from the start). Reads cover older edges in hours (``_plan``).
- ``coarse_rollups_to``: the fold mark. Hour and coarser rollups hold every minute before
  it and none from it on (``_rollup.fold``; absent: an older store that kept every grain).

Marks only move forward.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Connection, insert, update

from llmlens.collector.store._tables import store_marks

__all__ = ["FOLDED_TO", "MINUTES_FROM", "advance_mark", "read_mark"]

MINUTES_FROM: Final = "minute_rollups_from"
FOLDED_TO: Final = "coarse_rollups_to"

# Run as is: every batch reads the fold mark, and building a Core select per batch (its
# cache key, then the compiled-cache lookup) cost four times the read as a fixed statement.
_READ_SQLITE: Final = "SELECT value FROM store_marks WHERE name = ?"
_READ_POSTGRES: Final = "SELECT value FROM store_marks WHERE name = %s"


def read_mark(conn: Connection, name: str) -> int | None:
    """The mark's value; None when it was never set."""
    sql = _READ_SQLITE if conn.dialect.name == "sqlite" else _READ_POSTGRES
    value = conn.exec_driver_sql(sql, (name,)).scalar()
    return None if value is None else int(value)


def advance_mark(conn: Connection, name: str, value: int) -> None:
    """Set the mark to ``value`` unless it is already there or past it."""
    current = read_mark(conn, name)
    if current is None:
        conn.execute(insert(store_marks).values(name=name, value=value))
    elif current < value:
        conn.execute(update(store_marks).where(store_marks.c.name == name).values(value=value))
