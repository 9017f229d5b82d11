"""The alert tables: rules and the events they fired. Policy lives in ``llmlens.collector.alerts``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select

from llmlens.collector.store._filters import Bind, Filters, connect, in_values, rows_of, transaction
from llmlens.collector.store._tables import alert_events, alert_rules
from llmlens.collector.store._time import as_utc, bind_time

__all__ = [
    "add_alert_rule",
    "alert_rule_id",
    "enabled_alert_rules",
    "last_alert_fired",
    "list_alert_events",
    "list_alert_rules",
    "record_alert_event",
]

_r = alert_rules.c
_e = alert_events.c


def add_alert_rule(bind: Bind, values: Mapping[str, Any], *, only_if_none: bool = False) -> int | None:
    """Insert a rule (a dict of its columns) and return its id.

    With ``only_if_none`` the rule is added only to a store without rules (the default rule
    a collector gives a new store), and None is returned when there were some.
    """
    with transaction(bind) as conn:
        if only_if_none and conn.execute(select(func.count()).select_from(alert_rules)).scalar_one():
            return None
        result = conn.execute(insert(alert_rules).values(**values))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def alert_rule_id(bind: Bind, name: str) -> int | None:
    """The id of the rule called ``name``, or None."""
    with connect(bind) as conn:
        value = conn.execute(select(_r.id).where(_r.name == name)).scalar()
    return None if value is None else int(value)


def enabled_alert_rules(bind: Bind) -> list[dict[str, Any]]:
    """Every enabled rule, as a dict of its columns."""
    with connect(bind) as conn:
        return rows_of(conn, select(alert_rules).where(_r.enabled).order_by(_r.id))


def last_alert_fired(bind: Bind, rule_id: int, task: str | None) -> datetime | None:
    """When the rule last fired for ``task`` (None: for all tasks together), or None."""
    query = select(func.max(_e.fired_at)).where(_e.rule_id == rule_id)
    query = query.where(_e.task.is_(None) if task is None else _e.task == task)
    with connect(bind) as conn:
        value = conn.execute(query).scalar()
    # MAX() loses the column's type on SQLite: the text comes back as text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return as_utc(value) if isinstance(value, datetime) else None


def record_alert_event(bind: Bind, values: Mapping[str, Any]) -> None:
    """Insert one firing (a dict of ``alert_events`` columns)."""
    with transaction(bind) as conn:
        conn.execute(insert(alert_events).values(**values))


def list_alert_rules(bind: Bind) -> list[dict[str, Any]]:
    """Every alert rule, by name."""
    with connect(bind) as conn:
        return rows_of(conn, select(alert_rules).order_by(_r.name))


def list_alert_events(bind: Bind, filters: Filters = Filters(), *, limit: int = 100) -> list[dict[str, Any]]:
    """The newest alert firings within ``filters``' time range (and tasks, when given)."""
    statement = select(alert_events).order_by(_e.fired_at.desc(), _e.id.desc())
    if filters.start is not None:
        statement = statement.where(_e.fired_at >= bind_time(filters.start))
    if filters.end is not None:
        statement = statement.where(_e.fired_at < bind_time(filters.end))
    if filters.tasks:
        statement = statement.where(in_values(_e.task, filters.tasks))
    with connect(bind) as conn:
        rows = rows_of(conn, statement.limit(limit))
    for row in rows:
        row["fired_at"] = as_utc(row["fired_at"])
    return rows
