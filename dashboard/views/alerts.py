"""Alerts: the rules the evaluator checks, and when they fired."""

from __future__ import annotations

import streamlit as st

from llmlens.collector import queries
from llmlens.dashboard import _format
from llmlens.dashboard._source import ViewContext, current_view
from llmlens.dashboard._widgets import table


def _metric_value(metric: str | None, value: float | None) -> str:
    # Metric names carry their unit: *_rate, *_usd, *_ms (see llmlens.collector.alerts).
    if metric is None or value is None:
        return _format.NONE if value is None else f"{value:g}"  # the rule was deleted since
    if metric.endswith("_rate"):
        return _format.pct(value)
    if metric.endswith("_usd"):
        return _format.usd(value)
    return _format.ms(value)


def render(view: ViewContext) -> None:
    """Draw the alert rules and the firings within ``view``'s time range."""
    st.title("Alerts")
    rules = view.fetch(queries.list_alert_rules)
    metric_of = {rule["id"]: rule["metric"] for rule in rules}
    st.subheader("Rules")
    if rules:
        # The evaluator's convention: "*" checks each task on its own, NULL all calls together.
        rules = [{**rule, "task": {"*": "each task", None: "all tasks together"}.get(rule["task"], rule["task"]),
                  "threshold": _metric_value(rule["metric"], rule["threshold"])} for rule in rules]
        table(rules, {
            "name": ("Name", "text"), "metric": ("Metric", "text"), "threshold": ("Threshold", "text"),
            "window_minutes": ("Window (min)", "count"), "min_calls": ("Min calls", "count"),
            "task": ("Task", "text"), "cooldown_minutes": ("Cooldown (min)", "count"),
            "enabled": ("Enabled", "bool"),
        }, key="alerts.rules")
    else:
        st.info("No alert rules yet. Add one with `llmlens alerts add`; the collector evaluates "
                "rules on a timer and `llmlens alerts check` does it once.")
    st.subheader("Recent events")
    events = view.fetch(queries.list_alert_events, view.filters, limit=200)
    if events:
        events = [{**event, "task": event["task"] or "all tasks together",
                   "value": _metric_value(metric_of.get(event["rule_id"]), event["value"]),
                   "threshold": _metric_value(metric_of.get(event["rule_id"]), event["threshold"])}
                  for event in events]
        table(events, {
            "fired_at": ("Fired (UTC)", "time"), "rule_name": ("Rule", "text"), "task": ("Task", "text"),
            "value": ("Value", "text"), "threshold": ("Threshold", "text"), "delivered": ("Delivered", "bool"),
            "message": ("Message", "text"), "delivery_error": ("Delivery error", "text"),
        }, key="alerts.events")
    else:
        st.success("No alert fired in this time range.")


if __name__ == "__main__":  # Streamlit runs a page file as __main__
    render(current_view())
