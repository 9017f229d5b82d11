"""Traces: find calls by filter, newest first, and open one to see every attempt."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

import streamlit as st

from llmlens.collector import escape, queries
from llmlens.collector.queries import Filters
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
    oldest, _ = view.fetch(queries.raw_time_extent)
    if oldest is not None:
        st.caption(f"Raw calls are kept from {_format.when(oldest)}; charts of older ranges come from "
                   "rollups, which keep the history.")
    if not total:
        st.info("No calls match these filters.", icon=":material/filter_alt_off:")
        return
    cursors = _page_cursors(filters)
    calls = view.fetch(queries.list_calls, filters, limit=PAGE_SIZE, before=cursors[-1] if cursors else None)
    st.caption(f"{total:,} calls, newest first; page {len(cursors) + 1}, showing {len(calls)}.")
    newer, older = st.columns(2)
    if newer.button("Newer", disabled=not cursors, key="traces.newer"):
        cursors.pop()
        st.rerun()
    if older.button("Older", disabled=len(calls) < PAGE_SIZE, key="traces.older"):
        cursors.append(calls[-1]["cursor"])
        st.rerun()
    table(calls, _CALL_COLUMNS, key="traces.calls")

    index = st.selectbox("Open a call", range(len(calls)), format_func=lambda i: _describe(calls[i]),
                         key="traces.selected")
    if index is None:
        return
    chosen = calls[index]
    attempts = view.fetch(queries.call_detail, chosen["trace_id"], chosen["span_id"])
    _show_call(chosen, attempts)


def _page_cursors(filters: Filters) -> list[queries.Cursor]:
    """Where each page before this one ended (keyset pagination), reset when the filters change."""
    state = st.session_state
    if state.get("traces.filters") != filters:
        state["traces.filters"] = filters
        state["traces.cursors"] = []
    cursors: list[queries.Cursor] = state["traces.cursors"]
    return cursors


def _show_call(call: dict[str, Any], attempts: list[dict[str, Any]]) -> None:
    # Metric values, tooltips and expander labels are Markdown: span values go in escaped.
    # The ids go in a code block, which is text, and copyable.
    reason = call["failure_reason"]
    st.subheader("Call")
    kpis([
        ("Status", escape.markdown(call["status"]), escape.markdown(reason) if reason else None),
        ("Attempts", str(len(attempts)), None),
        ("Latency", _format.ms(call["latency_ms"]), "The whole call, retries and backoff included."),
        ("Cost", _format.usd(call["cost_usd"]), "All attempts; — when a model is unpriced."),
    ])
    st.code(f"trace {call['trace_id']}\ncall  {call['call_id'] or call['span_id']}", language=None)
    table(attempts, _ATTEMPT_COLUMNS, key="traces.attempts")
    for attempt in attempts:
        title = (f"Attempt {attempt['attempt']} · {escape.markdown(attempt['status'])} · "
                 f"span {escape.markdown(attempt['span_id'])}")
        with st.expander(title, expanded=len(attempts) == 1):
            st.json(attempt["attributes"], expanded=True)


if __name__ == "__main__":  # Streamlit runs a page file as __main__
    render(current_view())
