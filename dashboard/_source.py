"""Where the dashboard's numbers come from: the store, cached aggregates, and the view context.

The entry script opens the store once per process (``st.cache_resource``), builds the
sidebar's :class:`~llmlens.collector.queries.Filters`, and hands the views a
:class:`ViewContext` through the session. Views fetch every number with
:meth:`ViewContext.fetch`, which runs a function of :mod:`llmlens.collector.queries`
and caches its small result for :data:`REFRESH_SECONDS` keyed by store, function and
arguments, so moving between views or widgets does not re-run the same SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import streamlit as st

from llmlens.collector import queries
from llmlens.collector.queries import Filters
from llmlens.collector.store import Store, StoreError, open_store, resolve_url

T = TypeVar("T")

REFRESH_SECONDS: Final = 30
_CONTEXT_KEY: Final = "llmlens.view_context"

EMPTY_STORE_MESSAGE: Final = """\
**No data yet** — this store has no LLM calls.

Run `llmlens demo` to fill it with a realistic example workload, or instrument a call:

```python
import llmlens

llmlens.configure()  # LLMLENS_DB_URL, default sqlite:///llmlens.db

@llmlens.observe(task="summarize_thread", prompt_version="3")
def summarize(thread: str):
    return client.chat.completions.create(model="gpt-4o-mini", messages=[...])
```
"""


@st.cache_resource(show_spinner=False)
def _open(url: str) -> Store:
    return open_store(url)


@st.cache_data(ttl=REFRESH_SECONDS, show_spinner=False, max_entries=512)
def _run(url: str, name: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]) -> Any:
    # Keyed by the function's name, not the function: cache keys must hash and pickle.
    function = getattr(queries, name)
    return function(_open(url).engine, *args, **dict(kwargs))


@dataclass(frozen=True)
class ViewContext:
    """What every view needs: the store's URL, the sidebar's filters, the time bucket."""

    url: str
    filters: Filters
    bucket_seconds: int

    def fetch(self, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``query`` (a function of ``llmlens.collector.queries``) on the store, cached.

        Without positional arguments the sidebar's filters are passed, which is what most
        aggregates take: ``ctx.fetch(queries.breakdown, by="model")``.
        """
        if getattr(queries, query.__name__, None) is not query:
            raise ValueError(f"{query!r} is not a function of llmlens.collector.queries")
        if not args and query not in _NO_FILTERS:
            args = (self.filters,)
        result: T = _run(self.url, query.__name__, args, tuple(sorted(kwargs.items())))
        return result


# How each cause of loss reads in the banner, in this order; any other cause is "other".
_LOSS_LABELS: Final = (("queue_full", "queue full"), ("spool_full", "spool full"), ("rejected", "rejected"),
                       ("disk_full", "disk full"), ("shutdown", "shutdown"), ("export_failed", "export failed"),
                       ("store_error", "store error"))


def loss_message(by_cause: dict[str, int]) -> str | None:
    """``"N spans were lost in this range (queue full: a, spool full: b, rejected: c)"``, or
    None when nothing was lost. Only our own labels and numbers: nothing from span data."""
    total = sum(by_cause.values())
    if not total:
        return None
    known = dict(_LOSS_LABELS)
    parts = [f"{label}: {by_cause[cause]:,}" for cause, label in _LOSS_LABELS if by_cause.get(cause)]
    other = sum(n for cause, n in by_cause.items() if cause not in known)
    if other:
        parts.append(f"other: {other:,}")
    noun = "span was" if total == 1 else "spans were"
    return f"{total:,} {noun} lost in this range ({', '.join(parts)})"


def show_losses(view: ViewContext) -> None:
    """A banner above every page when spans were lost in the selected range (``llm_drops``)."""
    message = loss_message(view.fetch(queries.drops_by_cause, view.filters.time_only()))
    if message:
        st.warning(message, icon=":material/report:")


# Queries that take no Filters as their first argument after the connection.
_NO_FILTERS: Final[frozenset[Callable[..., Any]]] = frozenset(
    {queries.has_rows, queries.list_alert_rules, queries.call_detail, queries.raw_time_extent}
)


def open_source() -> tuple[str, Store]:
    """The store the dashboard reads (``LLMLENS_DB_URL``, resolved by the store module).

    When it cannot be opened (unreachable, or at an older schema) the page shows the
    store's one-line explanation and stops there.
    """
    url = resolve_url()
    try:
        return url, _open(url)
    except StoreError as exc:
        st.error(str(exc))
        st.stop()
        raise  # unreachable: st.stop() raises; keeps type checkers sure url is bound


def store_is_empty(url: str) -> bool:
    """True when the store has no row at all (cached like every other query)."""
    return not bool(_run(url, "has_rows", (), ()))


def show_empty_store() -> None:
    """The greeting for a store without data: what to run, not an error."""
    st.title("llmlens")
    st.info(EMPTY_STORE_MESSAGE, icon=":material/hourglass_empty:")


def clear_cache() -> None:
    """Forget cached results (the sidebar's Refresh button)."""
    _run.clear()


def set_view_context(context: ViewContext) -> None:
    """Called by the entry script before it runs the selected view."""
    st.session_state[_CONTEXT_KEY] = context


def current_view() -> ViewContext:
    """The context the entry script set for this run."""
    context = st.session_state.get(_CONTEXT_KEY)
    if not isinstance(context, ViewContext):
        raise RuntimeError("views run inside the llmlens dashboard: `llmlens dashboard`")
    return context


def no_match(summary: dict[str, Any]) -> bool:
    """Show a hint and return True when the filters select no row."""
    if summary["requests"]:
        return False
    st.info("No LLM calls match these filters. Widen the time range or clear a filter in the sidebar.",
            icon=":material/filter_alt_off:")
    return True
