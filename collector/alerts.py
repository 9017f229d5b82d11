"""Alert rules: evaluated over recent rows, fired into ``alert_events``, sent by webhook.

A rule watches one metric of the calls in a trailing window, for one task, for every task
separately (``task="*"``), or for all calls together (``task=None``). The first rule a store
gets is the one that matters most in production: a spike of invalid outputs (a prompt or
model change that broke the structured output). Rate rules need ``min_calls`` calls in
the window so that one bad call in a quiet hour does not page anyone, and a rule that fired
stays quiet for ``cooldown_minutes``.

Events are recorded whether or not the webhook answered (``delivered``/``delivery_error``),
so a dead webhook never loses an alert. The payload carries a ``text`` field, so Slack and
Mattermost incoming webhooks show it as is. Task names come from spans, so in ``text``
they (and rule names) are quoted by :func:`llmlens.collector.escape.chat`: whoever can
send a span cannot put a link, an image or an ``@channel`` into the team's chat. The
structured fields (``task``, ``rule``) and the recorded message keep the values as they are.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from llmlens.collector import escape, queries
from llmlens.collector.store import (
    Store,
    add_alert_rule,
    enabled_alert_rules,
    last_alert_fired,
    record_alert_event,
)

logger = logging.getLogger("llmlens")

METRICS: Final[dict[str, str]] = {
    "invalid_output_rate": "share of calls whose output failed validation",
    "failure_rate": "share of calls that did not end ok",
    "spend_usd": "spend in the window, USD",
    "wasted_spend_usd": "spend on retried or failed requests in the window, USD",
    "p95_ms": "95th percentile call latency, ms",
}
_RATE_METRICS: Final = frozenset({"invalid_output_rate", "failure_rate", "p95_ms"})

DEFAULT_RULE: Final[dict[str, Any]] = {
    "name": "invalid-output spike",
    "metric": "invalid_output_rate",
    "threshold": 0.10,
    "window_minutes": 15,
    "min_calls": 20,
    "task": "*",
    "cooldown_minutes": 60,
    "enabled": True,
}


@dataclass(frozen=True)
class FiredAlert:
    """One alert that fired during an evaluation."""

    rule_id: int
    rule_name: str
    metric: str
    value: float
    threshold: float
    task: str | None
    fired_at: datetime
    message: str
    delivered: bool
    delivery_error: str | None = None


def add_rule(store: Store, *, name: str, metric: str, threshold: float, window_minutes: int = 15,
             min_calls: int = 20, task: str | None = "*", webhook_url: str | None = None,
             cooldown_minutes: int = 60) -> int:
    """Create a rule and return its id. Raises ValueError for an unknown metric or bad numbers."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(sorted(METRICS))}")
    if threshold < 0 or window_minutes <= 0 or min_calls < 0 or cooldown_minutes < 0:
        raise ValueError("threshold, min_calls and cooldown must be >= 0 and the window > 0")
    if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
        raise ValueError(f"webhook must be an http(s) URL, got {webhook_url!r}")
    rule_id = add_alert_rule(store.engine, {
        "name": name, "metric": metric, "threshold": threshold, "window_minutes": window_minutes,
        "min_calls": min_calls, "task": task, "webhook_url": webhook_url, "cooldown_minutes": cooldown_minutes,
        "enabled": True})
    assert rule_id is not None  # only_if_none was not asked for
    return rule_id


def ensure_default_rule(store: Store) -> None:
    """Give a store with no rules the invalid-output spike rule."""
    add_alert_rule(store.engine, DEFAULT_RULE, only_if_none=True)


def _observations(store: Store, rule: dict[str, Any], now: datetime) -> list[tuple[str | None, dict[str, Any]]]:
    """(task, totals) pairs the rule looks at: two aggregate queries whatever the task count."""
    window = queries.Filters(start=now - timedelta(minutes=rule["window_minutes"]), end=now)
    task = rule["task"]
    if task != "*":
        filters = window if task is None else queries.Filters(start=window.start, end=window.end, tasks=(task,))
        return [(task, queries.summary(store.engine, filters))]
    totals = queries.breakdown(store.engine, window, by="task")
    if rule["metric"] == "p95_ms":
        p95 = {row["task"]: row["p95_ms"] for row in queries.latency_percentiles(store.engine, window, by="task")}
        for row in totals:
            row["p95_ms"] = p95.get(row["task"])
    return [(row["task"], row) for row in totals]


def _message(rule: dict[str, Any], task: str | None, value: float, calls: int,
             quote: Callable[[object], str] = str) -> str:
    where = f" for task {quote(task)}" if task else ""
    if rule["metric"].endswith("_rate"):
        shown, limit = f"{value:.1%}", f"{rule['threshold']:.1%}"
    elif rule["metric"].endswith("_usd"):
        shown, limit = f"${value:,.4f}", f"${rule['threshold']:,.4f}"
    else:
        shown, limit = f"{value:,.0f} ms", f"{rule['threshold']:,.0f} ms"
    return (f"[llmlens] {quote(rule['name'])}{where}: {rule['metric']} = {shown} over the last "
            f"{rule['window_minutes']} min ({calls} calls), above {limit}")


def _send(url: str, payload: dict[str, Any], timeout: float) -> str | None:
    """POST the payload; return None on success or a one-line error."""
    import httpx

    last_error = None
    for _ in range(2):  # one retry: webhooks fail transiently, but never hold the evaluator long
        try:
            response = httpx.post(url, json=payload, timeout=timeout)
            if response.status_code < 300:
                return None
            last_error = f"webhook answered {response.status_code}"
        except httpx.HTTPError as exc:
            last_error = f"{type(exc).__name__}: {exc}"
    return last_error


def check_alerts(store: Store, *, now: datetime | None = None, send: bool = True,
                 default_webhook: str | None = None, timeout: float = 5.0) -> list[FiredAlert]:
    """Evaluate every enabled rule once; record and send what fires.

    ``default_webhook`` (else ``LLMLENS_ALERT_WEBHOOK``) is used by rules without their own.
    """
    now = now or datetime.now(UTC)
    default_webhook = default_webhook or os.environ.get("LLMLENS_ALERT_WEBHOOK") or None
    rules = enabled_alert_rules(store.engine)
    fired: list[FiredAlert] = []
    for rule in rules:
        for task, stats in _observations(store, rule, now):
            calls = int(stats.get("calls") or 0)
            value = stats.get(rule["metric"])
            if value is None or (rule["metric"] in _RATE_METRICS and calls < rule["min_calls"]):
                continue
            if float(value) <= rule["threshold"]:
                continue
            last = last_alert_fired(store.engine, rule["id"], task)
            if last is not None and now - last < timedelta(minutes=rule["cooldown_minutes"]):
                continue
            message = _message(rule, task, float(value), calls)
            url = rule["webhook_url"] or default_webhook
            error = None
            if send and url:
                payload = {"text": _message(rule, task, float(value), calls, quote=escape.chat),
                           "rule": rule["name"], "metric": rule["metric"],
                           "value": float(value), "threshold": rule["threshold"], "task": task,
                           "window_minutes": rule["window_minutes"], "calls": calls,
                           "fired_at": now.isoformat(),
                           # Slack fetches a preview of links it unfurls; a chat alert needs none.
                           "unfurl_links": False, "unfurl_media": False}
                error = _send(url, payload, timeout)
                if error:
                    logger.warning("llmlens: alert %r not delivered: %s", rule["name"], error)
            delivered = bool(send and url and error is None)
            record_alert_event(store.engine, {
                "rule_id": rule["id"], "rule_name": rule["name"], "fired_at": now, "value": float(value),
                "threshold": rule["threshold"], "task": task, "message": message, "delivered": delivered,
                "delivery_error": error})
            fired.append(FiredAlert(rule["id"], rule["name"], rule["metric"], float(value), rule["threshold"],
                                    task, now, message, delivered, error))
    return fired

