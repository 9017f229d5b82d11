"""Overview: the headline numbers, spend and calls over time, and where they come from."""

from __future__ import annotations

import streamlit as st

from llmlens.collector import queries
from llmlens.dashboard import _format, charts
from llmlens.dashboard._source import ViewContext, current_view, no_match
from llmlens.dashboard._widgets import chart, kpis, table


def render(view: ViewContext) -> None:
    """Draw the Overview for ``view``'s filters."""
    st.title("Overview")
    totals = view.fetch(queries.summary)
    if no_match(totals):
        return
    kpis([
        ("Calls", _format.count(totals["calls"]),
         "Logical calls (final attempts). A retried call is one call and several requests."),
        ("Spend", _format.usd(totals["spend_usd"]), "Cost of every provider request, retries included."),
        ("Wasted spend", _format.usd(totals["wasted_spend_usd"]),
         "Cost of requests that did not produce a good answer: retried attempts and failed calls."),
        ("Failure rate", _format.pct(totals["failure_rate"]), "Calls whose final status is not ok."),
        ("Invalid output", _format.pct(totals["invalid_output_rate"]),
         "Calls whose output failed validation."),
        ("p95 latency", _format.ms(totals["p95_ms"]), "95th percentile of whole-call time, retries included."),
    ])
    kpis([
        ("Requests", _format.count(totals["requests"]), "Provider requests: what is billed."),
        ("Input tokens", _format.tokens(totals["input_tokens"]), "Includes cached input."),
        ("Cached input", _format.tokens(totals["cache_read_tokens"]), "Input tokens read from the prompt cache."),
        ("Output tokens", _format.tokens(totals["output_tokens"]), "Includes reasoning tokens."),
        ("Retried calls", _format.count(totals["retried_calls"]), "Calls that needed more than one attempt."),
        ("Unpriced requests", _format.count(totals["unpriced_requests"]),
         "Requests to models without a known price: spend leaves them out."),
    ])
    if totals["unpriced_requests"]:
        st.warning(f"{totals['unpriced_requests']:,} requests have no price (unknown model); "
                   "spend figures leave them out.", icon=":material/price_change:")

    series = view.fetch(queries.timeseries, view.filters, bucket_seconds=view.bucket_seconds)
    chart(charts.spend_and_calls(series, title="Spend and calls over time (UTC)"), key="overview.series")

    left, right = st.columns(2)
    by_task = view.fetch(queries.breakdown, by="task")
    by_model = view.fetch(queries.breakdown, by="model")
    with left:
        chart(charts.bars_by_group(by_task, "task", "spend_usd", "Spend by task", money=True), key="overview.task")
    with right:
        chart(charts.bars_by_group(by_model, "model", "spend_usd", "Spend by model", money=True),
              key="overview.model")
    st.subheader("By task")
    table(by_task, {
        "task": ("Task", "text"), "calls": ("Calls", "count"), "spend_usd": ("Spend", "usd"),
        "wasted_spend_usd": ("Wasted", "usd"), "failure_rate": ("Failure rate", "pct"),
        "invalid_output_rate": ("Invalid output", "pct"), "unpriced_requests": ("Unpriced", "count"),
    }, key="overview.task_table")


if __name__ == "__main__":  # Streamlit runs a page file as __main__
    render(current_view())
