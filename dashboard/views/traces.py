"""Traces: find calls by filter, newest first, and open one to see every attempt."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Final

import streamlit as st

from llmlens.collector import queries
from llmlens.dashboard import _format, charts
from llmlens.dashboard._source import ViewContext, current_view
from llmlens.dashboard._widgets import Columns, kpis, table

PAGE_SIZE: Final = 50

_CALL_COLUMNS: Final[Columns] = {
    "start_time": ("Time (UTC)", "time"), "task": ("Task", "text"), "request_model": ("Model", "text"),
    "prompt_version": ("Prompt version", "text"), "status": ("Status", "text"),
    "failure_reason": ("Reason", "text"), "attempts": ("Attempts", "count"), "latency_ms": ("Latency", "ms"),
    "cost_usd": ("Cost", "usd"), "input_tokens": ("Input tokens", "count"),
    "output_tokens": ("Output tokens", "count"), "streaming": ("Streamed", "bool"),
}
_ATTEMPT_COLUMNS: Final[Columns] = {
    "attempt": ("Attempt", "count"), "final": ("Final", "bool"), "start_time": ("Time (UTC)", "time"),
    "status": ("Status", "text"), "failure_reason": ("Reason", "text"), "error_type": ("Error type", "text"),
    "duration_ms": ("Duration", "ms"), "time_to_first_token_ms": ("TTFT", "ms"),
    "response_model": ("Response model", "text"), "input_tokens": ("Input", "count"),
    "cache_read_tokens": ("Cache read", "count"), "output_tokens": ("Output", "count"),
    "cost_usd": ("Cost", "usd"), "finish_reason": ("Finish", "text"),
}


def _describe(call: dict[str, Any]) -> str:
    return (f"{_format.when(call['start_time'])} · {_format.label(call['task'])} · "
            f"{_format.label(call['request_model'])} · {call['status']}"
            + (f" · {call['attempts']} attempts" if call["attempts"] > 1 else ""))


def render(view: ViewContext) -> None:
    """Draw the trace explorer for ``view``'s filters."""
    st.title("Traces")
    statuses = st.multiselect("Status", list(charts.STATUS_COLORS), key="traces.status",
                              placeholder="All statuses")
    filters = replace(view.filters, statuses=tuple(statuses))
    total = view.fetch(queries.count_calls, filters)
    if not total:
        st.info("No calls match these filters.", icon=":material/filter_alt_off:")
        return
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = int(st.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, value=1, step=1,
                               key="traces.page"))
    calls = view.fetch(queries.list_calls, filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    st.caption(f"{total:,} calls, newest first; showing {len(calls)} on this page.")
    table(calls, _CALL_COLUMNS, key="traces.calls")

    index = st.selectbox("Open a call", range(len(calls)), format_func=lambda i: _describe(calls[i]),
                         key="traces.selected")
    if index is None:
        return
    chosen = calls[index]
    attempts = view.fetch(queries.call_detail, chosen["trace_id"], chosen["span_id"])
    _show_call(chosen, attempts)


def _show_call(call: dict[str, Any], attempts: list[dict[str, Any]]) -> None:
    st.subheader("Call")
    kpis([
        ("Status", call["status"], call["failure_reason"]),
        ("Attempts", str(len(attempts)), None),
        ("Latency", _format.ms(call["latency_ms"]), "The whole call, retries and backoff included."),
        ("Cost", _format.usd(call["cost_usd"]), "All attempts; — when a model is unpriced."),
    ])
    st.caption(f"trace `{call['trace_id']}` · call `{call['call_id'] or call['span_id']}`")
    table(attempts, _ATTEMPT_COLUMNS, key="traces.attempts")
    for attempt in attempts:
        title = f"Attempt {attempt['attempt']} · {attempt['status']} · span {attempt['span_id']}"
        with st.expander(title, expanded=len(attempts) == 1):
            st.json(attempt["attributes"], expanded=True)


if __name__ == "__main__":  # Streamlit runs a page file as __main__
    render(current_view())
