"""UTC, in one place: how timestamps go into and come out of both databases.

Rows store UTC. PostgreSQL has ``timestamptz``; SQLite has no time type, so a timestamp
is naive UTC text in the format SQLAlchemy's ``DateTime`` reads back. Python callers
always get aware UTC datetimes, whatever zone they passed in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, DateTime, Integer, TypeDecorator, cast, func
from sqlalchemy.engine import Dialect

__all__ = ["UTCDateTime", "as_utc", "bind_time", "epoch_seconds", "sqlite_text"]


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (naive values are taken as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def bind_time(value: datetime) -> datetime:
    """A datetime to compare against a stored timestamp in a statement.

    SQLite's ``DATETIME`` binds the wall-clock fields and drops the offset, and rows are
    stored in UTC, so the value is converted to UTC first. It stays aware: PostgreSQL
    would read a naive value in the session's time zone.
    """
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_text(value: datetime) -> str:
    """The text SQLite stores for ``value``: naive UTC, microseconds, as SQLAlchemy reads it."""
    if value.tzinfo is UTC:
        # What normalize produces, once per row written: its text without the "+00:00"
        # is cheaper than a naive copy's text.
        return value.isoformat(" ", "microseconds")[:-6]
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="microseconds")


def epoch_seconds(dialect: str, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """Whole seconds since the epoch, in UTC, of a stored timestamp ``column``.

    SQLite stores UTC text; ``EXTRACT(EPOCH)`` of a ``timestamptz`` is absolute, whatever
    the session's time zone.
    """
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return cast(func.floor(func.extract("epoch", column)), BigInteger)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always UTC and always timezone-aware in Python.

    SQLite has no timezone type: values are stored as naive UTC text and given their
    timezone back on read, so both databases return the same aware datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = bind_time(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return as_utc(value)
