"""Failures: outcomes over time, why calls fail, and which prompt versions break output."""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import streamlit as st

from llmlens.collector import queries
from llmlens.dashboard import _format, charts
from llmlens.dashboard._source import ViewContext, current_view, no_match
from llmlens.dashboard._widgets import chart, kpis, table

FAILED: Final = tuple(status for status in charts.STATUS_COLORS if status != "ok")


def render(view: ViewContext) -> None:
    """Draw the Failures view for ``view``'s filters."""
    st.title("Failures")
    totals = view.fetch(queries.summary)
    if no_match(totals):
        return
    kpis([
        ("Failure rate", _format.pct(totals["failure_rate"]), "Calls whose final status is not ok."),
        ("Invalid output", _format.pct(totals["invalid_output_rate"]),
         "Calls whose output failed validation (the model answered, but not in the expected shape)."),
        ("Failed calls", _format.count(totals["failed_calls"]), None),
        ("Retried calls", _format.count(totals["retried_calls"]),
         "Calls that needed more than one attempt, whatever the final outcome."),
    ])

    series = view.fetch(queries.timeseries, view.filters, bucket_seconds=view.bucket_seconds, by="status")
    chart(charts.status_over_time(series, "Calls by final status (UTC)"), key="failures.status")

    st.subheader(":red[Invalid output] by prompt version")
    st.caption("A prompt rollout that breaks the output format shows up here first.")
    by_prompt = view.fetch(queries.breakdown, by=("task", "prompt_version"))
    invalid = [row for row in by_prompt if row["invalid_output_calls"]]
    if invalid:
        chart(charts.bars_by_group(invalid, ("task", "prompt_version"), "invalid_output_rate",
                                   "Invalid-output rate by task and prompt version", rate=True,
                                   color=charts.STATUS_COLORS["invalid_output"]), key="failures.invalid")
        invalid_only = replace(view.filters, statuses=("invalid_output",))
        over_time = view.fetch(queries.timeseries, invalid_only, bucket_seconds=view.bucket_seconds,
                               by="prompt_version")
        # Requests, not calls: an invalid answer that a retry replaced was still a bad answer.
        chart(charts.stacked_over_time(over_time, "prompt_version", "requests",
                                       "Invalid answers over time by prompt version (UTC), retried ones included"),
              key="failures.invalid_series")
    else:
        st.success("No invalid outputs in this selection.")

    st.subheader("Failure reasons")
    failed_only = replace(view.filters, statuses=view.filters.statuses or FAILED)
    reasons = view.fetch(queries.breakdown, failed_only, by=("status", "failure_reason"))
    if reasons:
        over_time = view.fetch(queries.timeseries, failed_only, bucket_seconds=view.bucket_seconds,
                               by="failure_reason")
        chart(charts.stacked_over_time(over_time, "failure_reason", "requests",
                                       "Failed requests over time by reason (UTC), retried ones included"),
              key="failures.reasons_series")
        table(reasons, {
            "status": ("Status", "text"), "failure_reason": ("Reason", "text"),
            "calls": ("Failed calls", "count"), "requests": ("Requests", "count"),
            "spend_usd": ("Spend", "usd"),
        }, key="failures.reasons")
    else:
        st.success("No failed requests in this selection.")

    st.subheader("By task and prompt version")
    table(by_prompt, {
        "task": ("Task", "text"), "prompt_version": ("Prompt version", "text"), "calls": ("Calls", "count"),
        "failure_rate": ("Failure rate", "pct"), "invalid_output_rate": ("Invalid output", "pct"),
        "retried_calls": ("Retried", "count"),
    }, key="failures.prompt_table")


if __name__ == "__main__":  # Streamlit runs a page file as __main__
    render(current_view())
