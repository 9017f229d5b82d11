"""The sidebar every view shares: time range, task, model and prompt-version filters.

Widgets live in the entry script (not in a view) so their values survive moving between
views. Relative ranges end at the next whole minute: "last 24 hours" then names the same
:class:`Filters` for a minute, and cached aggregates are reused instead of re-run.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Final

import streamlit as st

from llmlens.collector import escape, queries
from llmlens.collector.queries import Filters
from llmlens.dashboard._source import ViewContext, clear_cache

ALL_TIME: Final = "All time"
CUSTOM: Final = "Custom dates"
TIME_RANGES: Final[dict[str, timedelta | None]] = {
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(days=1),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    ALL_TIME: None,
    CUSTOM: None,
}
DEFAULT_RANGE: Final = "Last 7 days"


def _now() -> datetime:
    return datetime.now(UTC)


def _time_range(choice: str) -> tuple[datetime | None, datetime | None]:
    span = TIME_RANGES[choice]
    if span is not None:
        recent = Filters.last(span)
        return recent.start, recent.end
    if choice == CUSTOM:
        today = _now().date()
        picked = st.sidebar.date_input("Dates (UTC)", value=(today - timedelta(days=7), today),
                                       max_value=today, key="llmlens.dates")
        # While the second date is not picked yet the range is one day.
        days = [d for d in (picked if isinstance(picked, (tuple, list)) else (picked,)) if isinstance(d, date)]
        if days:
            start = datetime.combine(days[0], time.min, UTC)
            return start, datetime.combine(days[-1], time.min, UTC) + timedelta(days=1)
    return None, None


def sidebar(url: str, store_label: str) -> ViewContext:
    """Draw the filters and return the context the views read."""
    st.sidebar.header("Filters")
    # Before any fetch, so a click re-reads everything this run shows.
    if st.sidebar.button("Refresh", icon=":material/refresh:", help="Re-read the store now"):
        clear_cache()
    choice = st.sidebar.selectbox("Time range", list(TIME_RANGES), index=list(TIME_RANGES).index(DEFAULT_RANGE),
                                  key="llmlens.range")
    start, end = _time_range(choice)
    in_range = Filters(start=start, end=end)
    probe = ViewContext(url, in_range, 3600)
    options = probe.fetch(queries.filter_options)
    tasks = st.sidebar.multiselect("Task", options["tasks"], key="llmlens.tasks", placeholder="All tasks")
    models = st.sidebar.multiselect("Model", options["models"], key="llmlens.models", placeholder="All models")
    versions = st.sidebar.multiselect("Prompt version", options["prompt_versions"], key="llmlens.versions",
                                      placeholder="All prompt versions")
    filters = Filters(start=start, end=end, tasks=tuple(tasks), models=tuple(models),
                      prompt_versions=tuple(versions))

    if start is None or end is None:
        first, last = probe.fetch(queries.time_extent)
        start = start or first
        end = end or last
    bucket = queries.choose_bucket(start, end) if start and end else 3600

    st.sidebar.caption(f"Store: {escape.markdown(store_label)}  \nTimes are UTC. Results refresh every 30 s.")
    return ViewContext(url, filters, bucket)
