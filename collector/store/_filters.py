"""What a read looks at (:class:`Filters`), and the connection helper every read shares."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Select, Table, false, or_

from llmlens.collector.store._engine import safe_url
from llmlens.collector.store._errors import translated
from llmlens.collector.store._tables import llm_spans
from llmlens.collector.store._time import as_utc, bind_time

__all__ = ["Bind", "Filters", "connect", "filtered", "in_values", "rows_of", "transaction"]

Bind = Engine | Connection


@dataclass(frozen=True)
class Filters:
    """Which rows an aggregate looks at. Empty tuples mean "all"; ``None`` inside a tuple
    selects rows where the column is NULL (spans from other instrumentations have no task).

    The time range is half-open, ``start <= start_time < end``, in UTC (naive datetimes are
    taken as UTC). Frozen and hashable, so the dashboard can cache results by it.
    """

    start: datetime | None = None
    end: datetime | None = None
    tasks: tuple[str | None, ...] = ()
    models: tuple[str | None, ...] = ()
    prompt_versions: tuple[str | None, ...] = ()
    statuses: tuple[str, ...] = ()
    services: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            object.__setattr__(self, name, as_utc(getattr(self, name)))
        for name in ("tasks", "models", "prompt_versions", "statuses", "services"):
            value = getattr(self, name)
            if isinstance(value, str):  # a lone string is one value, not its characters
                value = (value,)
            object.__setattr__(self, name, tuple(value))
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError("Filters.start must not be after Filters.end")

    @classmethod
    def last(cls, span: timedelta, *, now: datetime | None = None, **kwargs: Any) -> Filters:
        """The ``span`` before ``now`` (default: the current minute's end, so results cache)."""
        end = now or _next_minute(datetime.now(UTC))
        return cls(start=end - span, end=end, **kwargs)

    def time_only(self) -> Filters:
        """The same time range with no other condition (for the options of the other filters)."""
        return Filters(start=self.start, end=self.end)

    def where(self, table: Table = llm_spans, time_column: str | None = "start_time") -> list[ColumnElement[bool]]:
        """The filters as SQL conditions on ``table`` (``llm_spans`` or a table with its
        dimension columns), its time in ``time_column`` (None: no time condition)."""
        c = table.c
        conditions: list[ColumnElement[bool]] = []
        if self.start is not None and time_column is not None:
            conditions.append(c[time_column] >= bind_time(self.start))
        if self.end is not None and time_column is not None:
            conditions.append(c[time_column] < bind_time(self.end))
        for column, values in ((c.task, self.tasks), (c.request_model, self.models),
                               (c.prompt_version, self.prompt_versions), (c.status, self.statuses),
                               (c.service_name, self.services)):
            if values:
                conditions.append(in_values(column, values))
        return conditions


def _next_minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


def in_values(column: ColumnElement[Any], values: Sequence[str | None]) -> ColumnElement[bool]:
    """``column IN values``, where a ``None`` among the values also selects NULL."""
    present = [v for v in values if v is not None]
    condition: ColumnElement[bool] = column.in_(present) if present else false()
    return or_(condition, column.is_(None)) if None in values else condition


def filtered(statement: Select[Any], filters: Filters, table: Table = llm_spans,
             time_column: str = "start_time") -> Select[Any]:
    """``statement`` with the conditions of ``filters`` added."""
    conditions = filters.where(table, time_column)
    return statement.where(*conditions) if conditions else statement


@contextmanager
def connect(bind: Bind) -> Iterator[Connection]:
    """A connection for a read: ``bind`` itself, or one from the engine reading one
    snapshot; database errors raised as :class:`~llmlens.collector.store.StoreError`.

    One snapshot, because a read's statements look at marks first (from where minutes are
    kept, up to where hours are folded) and then at rollups: a prune or a fold committed
    between them must not make the second disagree with the first.
    """
    engine = bind if isinstance(bind, Engine) else bind.engine
    with translated("cannot read from", safe_url(engine)):
        if isinstance(bind, Connection):
            yield bind
        elif engine.dialect.name == "sqlite":
            with bind.connect() as conn:
                # The driver begins transactions only for writes; ended by the pool's
                # rollback when the connection goes back.
                conn.exec_driver_sql("BEGIN")
                yield conn
        else:
            with bind.connect() as conn:
                yield conn.execution_options(isolation_level="REPEATABLE READ")


def rows_of(conn: Connection, statement: Select[Any]) -> list[dict[str, Any]]:
    """The statement's result rows as dicts."""
    return [dict(row._mapping) for row in conn.execute(statement)]


@contextmanager
def transaction(bind: Bind) -> Iterator[Connection]:
    """A connection in a transaction for a write: committed at the end when ``bind`` is an
    engine; a connection passed in is the caller's to commit."""
    engine = bind if isinstance(bind, Engine) else bind.engine
    with translated("cannot write to", safe_url(engine)):
        if isinstance(bind, Connection):
            yield bind
        else:
            with bind.begin() as conn:
                yield conn
