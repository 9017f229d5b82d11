"""Latency: percentiles of whole calls and of single requests, and time to first token."""

from __future__ import annotations

import streamlit as st

from llmlens.collector import queries
from llmlens.dashboard import _format, charts
from llmlens.dashboard._source import ViewContext, current_view, no_match
from llmlens.dashboard._widgets import Columns, chart, kpis, table

_PERCENTILE_COLUMNS: Columns = {"n": ("Count", "count"), "p50_ms": ("p50", "ms"), "p95_ms": ("p95", "ms"),
                       "p99_ms": ("p99", "ms"), "mean_ms": ("Mean", "ms")}


def render(view: ViewContext) -> None:
    """Draw the Latency view for ``view``'s filters."""
    st.title("Latency")
    totals = view.fetch(queries.summary)
    if no_match(totals):
        return
    ttft = view.fetch(queries.latency_percentiles, view.filters, measure="ttft")
    kpis([
        ("p50 call", _format.ms(totals["p50_ms"]), "Median time a caller waited, retries and backoff included."),
        ("p95 call", _format.ms(totals["p95_ms"]), None),
        ("p99 call", _format.ms(totals["p99_ms"]), None),
        ("p50 time to first token", _format.ms(ttft[0]["p50_ms"] if ttft else None),
         "Streamed requests only: how long until the first chunk arrived."),
    ])

    over_time = view.fetch(queries.latency_percentiles, view.filters, bucket_seconds=view.bucket_seconds)
    chart(charts.latency_over_time(over_time, "Call latency over time (UTC)"), key="latency.series")

    by_task = view.fetch(queries.latency_percentiles, view.filters, by="task")
    chart(charts.latency_by_group(by_task, "task", "Call latency by task (retries included)"), key="latency.task")
    table(by_task, {"task": ("Task", "text"), **_PERCENTILE_COLUMNS}, key="latency.task_table")

    st.subheader("Per request, by model")
    st.caption("One provider request each: a retried call contributes every attempt.")
    by_model = view.fetch(queries.latency_percentiles, view.filters, by="model", measure="request")
    chart(charts.latency_by_group(by_model, "model", "Request latency by model"), key="latency.model")
    table(by_model, {"model": ("Model", "text"), **_PERCENTILE_COLUMNS}, key="latency.model_table")

    st.subheader("Time to first token (streaming)")
    ttft_by_model = view.fetch(queries.latency_percentiles, view.filters, by="model", measure="ttft")
    if ttft_by_model:
        chart(charts.latency_by_group(ttft_by_model, "model", "Time to first token by model"),
              key="latency.ttft")
        table(ttft_by_model, {"model": ("Model", "text"), **_PERCENTILE_COLUMNS}, key="latency.ttft_table")
    else:
        st.info("No streamed requests in this selection.")


if __name__ == "__main__":  # Streamlit runs a page file as __main__
    render(current_view())
