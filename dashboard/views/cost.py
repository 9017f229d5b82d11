"""Cost: where the money goes (task, model, prompt version) and how much buys nothing."""

from __future__ import annotations

import streamlit as st

from llmlens.collector import queries
from llmlens.dashboard import _format, charts
from llmlens.dashboard._source import ViewContext, current_view, no_match
from llmlens.dashboard._widgets import chart, kpis, table


def render(view: ViewContext) -> None:
    """Draw the Cost view for ``view``'s filters."""
    st.title("Cost")
    totals = view.fetch(queries.summary)
    if no_match(totals):
        return
    spend = totals["spend_usd"]
    wasted_share = totals["wasted_spend_usd"] / spend if spend else None
    kpis([
        ("Spend", _format.usd(spend), "Cost of every provider request, retries included."),
        ("Wasted spend", _format.usd(totals["wasted_spend_usd"]),
         f"{_format.pct(wasted_share)} of spend went to retried attempts and failed calls."),
        ("Cost per call", _format.usd(spend / totals["calls"] if totals["calls"] else None),
         "Spend divided by calls: what one answer costs, retries included."),
        ("Unpriced requests", _format.count(totals["unpriced_requests"]),
         "Requests to models without a known price. Add a price override to count them."),
    ])
    if totals["unpriced_requests"]:
        st.warning(f"{totals['unpriced_requests']:,} requests have no price; the spend shown leaves them out.",
                   icon=":material/price_change:")

    series = view.fetch(queries.timeseries, view.filters, bucket_seconds=view.bucket_seconds, by="model")
    chart(charts.stacked_over_time(series, "model", "spend_usd", "Spend over time by model (UTC)", money=True),
          key="cost.series")

    by_task = view.fetch(queries.breakdown, by="task")
    by_model = view.fetch(queries.breakdown, by="model")
    left, right = st.columns(2)
    with left:
        chart(charts.bars_by_group(by_task, "task", "spend_usd", "Spend by task", money=True), key="cost.task")
    with right:
        chart(charts.bars_by_group(by_model, "model", "spend_usd", "Spend by model", money=True), key="cost.model")

    st.subheader("Wasted spend")
    st.caption("Retried attempts were paid for and thrown away; failed calls were paid for and gave no answer.")
    waste = view.fetch(queries.retry_waste, by="task")
    if waste:
        costly = [row for row in waste if row["wasted_spend_usd"]]
        chart(charts.wasted_spend(costly or waste, "task", "Wasted spend by task"), key="cost.waste")
        table(waste, {
            "task": ("Task", "text"), "wasted_spend_usd": ("Wasted", "usd"),
            "retry_spend_usd": ("Retried attempts", "usd"), "failed_spend_usd": ("Failed calls", "usd"),
            "wasted_requests": ("Wasted requests", "count"), "unpriced_wasted_requests": ("Unpriced", "count"),
        }, key="cost.waste_table")
    else:
        st.success("No wasted spend: every request was a final, successful attempt.")

    st.subheader("By prompt version")
    by_prompt = view.fetch(queries.breakdown, by=("task", "prompt_version"))
    table(by_prompt, {
        "task": ("Task", "text"), "prompt_version": ("Prompt version", "text"), "calls": ("Calls", "count"),
        "spend_usd": ("Spend", "usd"), "wasted_spend_usd": ("Wasted", "usd"),
        "input_tokens": ("Input tokens", "count"), "output_tokens": ("Output tokens", "count"),
    }, key="cost.prompt_table")

    st.subheader("Tokens")
    chart(charts.token_mix(totals), key="cost.tokens")


if __name__ == "__main__":  # Streamlit runs a page file as __main__
    render(current_view())
