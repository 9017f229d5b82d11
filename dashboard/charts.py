"""Plotly figures for the dashboard: pure functions of query results.

Each builder takes the small lists of dicts that :mod:`llmlens.collector.queries` returns
and gives back a ``go.Figure``; none of them touches the database or Streamlit, so they
are tested and reused (reports, notebooks) without either. Time axes are UTC.

Group names (tasks, models, prompt versions, failure reasons) come from spans, and Plotly
renders a subset of HTML, links included, in ticks, legends and hover labels: every name
goes through :func:`llmlens.collector.escape.plotly` before it becomes part of a figure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Final

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from llmlens.collector import escape
from llmlens.dashboard import _format

__all__ = [
    "STATUS_COLORS",
    "bars_by_group",
    "latency_by_group",
    "latency_over_time",
    "spend_and_calls",
    "stacked_over_time",
    "status_over_time",
    "token_mix",
    "wasted_spend",
]

Rows = Sequence[Mapping[str, Any]]

# One color per status everywhere. invalid_output gets the loudest: it is the failure a
# prompt change causes and the one dashboards for plain HTTP errors miss.
STATUS_COLORS: Final = {
    "ok": "#2ca02c",
    "invalid_output": "#e6007e",
    "timeout": "#ff7f0e",
    "rate_limited": "#f2c80f",
    "provider_error": "#d62728",
    "client_error": "#9467bd",
    "cancelled": "#7f7f7f",
    "error": "#8c564b",
}
_SPEND_COLOR: Final = "#1f77b4"
_CALLS_COLOR: Final = "#555555"
_MAX_SERIES: Final = 8  # more stacked series than this read as noise: the rest become "other"
_OTHER: Final = "other"


def _layout(fig: go.Figure, title: str, *, height: int = 340, legend: bool = True) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left"},
        height=height,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        showlegend=legend,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 1, "xanchor": "right"},
        hovermode="x unified",
    )
    return fig


def _group_label(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    return escape.plotly(" · ".join(_format.label(row.get(key)) for key in keys))


def spend_and_calls(series: Rows, title: str = "Spend and calls") -> go.Figure:
    """Spend per bucket as bars, calls as a line on a second axis (rows of ``timeseries``)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    buckets = [row["bucket"] for row in series]
    fig.add_trace(go.Bar(x=buckets, y=[row["spend_usd"] for row in series], name="spend (USD)",
                         marker_color=_SPEND_COLOR, hovertemplate="$%{y:.4f}"), secondary_y=False)
    fig.add_trace(go.Scatter(x=buckets, y=[row["calls"] for row in series], name="calls", mode="lines",
                             line={"color": _CALLS_COLOR, "width": 2}), secondary_y=True)
    fig.update_yaxes(title_text="USD", tickprefix="$", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="calls", secondary_y=True, rangemode="tozero", showgrid=False)
    return _layout(fig, title)


def stacked_over_time(
    series: Rows,
    by: str,
    value: str,
    title: str,
    *,
    colors: Mapping[str, str] | None = None,
    money: bool = False,
) -> go.Figure:
    """One stacked bar per bucket, split by ``by`` (rows of ``timeseries(..., by=by)``).

    The largest groups by total ``value`` keep their own series; the rest are summed into
    "other" so the legend stays readable.
    """
    totals: dict[str, float] = defaultdict(float)
    for row in series:
        totals[_format.label(row.get(by))] += row[value] or 0
    ranked = sorted((g for g in totals if totals[g]), key=lambda g: -totals[g])
    keep = set(ranked[:_MAX_SERIES - 1] if len(ranked) > _MAX_SERIES else ranked)
    stacks: dict[str, dict[Any, float]] = defaultdict(lambda: defaultdict(float))
    for row in series:
        group = _format.label(row.get(by))
        if totals[group]:
            stacks[group if group in keep else _OTHER][row["bucket"]] += row[value] or 0
    fig = go.Figure()
    order = [g for g in ranked if g in keep] + ([_OTHER] if _OTHER in stacks else [])
    for group in order:
        points = sorted(stacks[group].items())
        fig.add_trace(go.Bar(
            x=[p[0] for p in points], y=[p[1] for p in points], name=escape.plotly(group),
            marker_color=(colors or {}).get(group),
            hovertemplate="$%{y:.4f}" if money else "%{y:,}",
        ))
    fig.update_layout(barmode="stack")
    fig.update_yaxes(rangemode="tozero", tickprefix="$" if money else "")
    return _layout(fig, title)


def status_over_time(series: Rows, title: str = "Calls by status") -> go.Figure:
    """Calls per bucket stacked by status, in the status colors (rows of ``timeseries(by="status")``)."""
    return stacked_over_time(series, "status", "calls", title, colors=STATUS_COLORS)


def bars_by_group(
    rows: Rows,
    by: str | Sequence[str],
    value: str,
    title: str,
    *,
    money: bool = False,
    rate: bool = False,
    color: str | None = None,
    limit: int = 15,
) -> go.Figure:
    """Horizontal bars of ``value`` per group, largest on top (rows of ``breakdown``)."""
    keys = [by] if isinstance(by, str) else list(by)
    top = sorted(rows, key=lambda r: -(r[value] or 0))[:limit]
    labels = [_group_label(r, keys) for r in top]
    values = [r[value] or 0 for r in top]
    if money:
        text = [_format.usd(v) for v in values]
    elif rate:
        text = [_format.pct(v) for v in values]
    else:
        text = [f"{v:,}" for v in values]
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", text=text, textposition="auto",
                           marker_color=color or _SPEND_COLOR, hoverinfo="y+text"))
    fig.update_yaxes(autorange="reversed", type="category")
    if rate:
        fig.update_xaxes(tickformat=".0%", rangemode="tozero")
    elif money:
        fig.update_xaxes(tickprefix="$", rangemode="tozero")
    return _layout(fig, title, height=max(220, 60 + 28 * len(top)), legend=False)


def wasted_spend(rows: Rows, by: str = "task", title: str = "Wasted spend") -> go.Figure:
    """Retried attempts and failed calls as stacked bars per group (rows of ``retry_waste``)."""
    labels = [_group_label(r, (by,)) for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=labels, x=[r["retry_spend_usd"] for r in rows], orientation="h",
                         name="retried attempts", marker_color=STATUS_COLORS["rate_limited"]))
    fig.add_trace(go.Bar(y=labels, x=[r["failed_spend_usd"] for r in rows], orientation="h",
                         name="failed calls", marker_color=STATUS_COLORS["provider_error"]))
    fig.update_layout(barmode="stack", hovermode="y unified")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(tickprefix="$", rangemode="tozero")
    fig = _layout(fig, title, height=max(220, 80 + 28 * len(rows)))
    fig.update_layout(hovermode="y unified")
    return fig


def latency_by_group(rows: Rows, by: str | Sequence[str], title: str,
                     keys: Sequence[str] = ("p50_ms", "p95_ms", "p99_ms")) -> go.Figure:
    """Grouped bars of latency percentiles per group (rows of ``latency_percentiles``)."""
    group_keys = [by] if isinstance(by, str) else list(by)
    labels = [_group_label(r, group_keys) for r in rows]
    fig = go.Figure()
    shades = ("#9ecae1", "#3182bd", "#08519c", "#08306b")
    for key, shade in zip(keys, shades, strict=False):
        values = [r.get(key) for r in rows]
        fig.add_trace(go.Bar(y=labels, x=values, orientation="h", name=key.removesuffix("_ms"),
                             marker_color=shade, text=[_format.ms(v) for v in values],
                             hoverinfo="y+name+text"))
    fig.update_layout(barmode="group")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title_text="ms", rangemode="tozero")
    fig = _layout(fig, title, height=max(240, 80 + 22 * len(rows) * len(keys)))
    fig.update_layout(hovermode="y unified")
    return fig


def latency_over_time(series: Rows, title: str = "Call latency over time",
                      keys: Sequence[str] = ("p50_ms", "p95_ms", "p99_ms")) -> go.Figure:
    """Percentile lines per bucket (rows of ``latency_percentiles(..., bucket_seconds=...)``)."""
    fig = go.Figure()
    shades = ("#9ecae1", "#3182bd", "#08306b")
    buckets = [row["bucket"] for row in series]
    for key, shade in zip(keys, shades, strict=False):
        fig.add_trace(go.Scatter(x=buckets, y=[row.get(key) for row in series], name=key.removesuffix("_ms"),
                                 mode="lines", line={"color": shade, "width": 2},
                                 hovertemplate="%{y:,.0f} ms"))
    fig.update_yaxes(title_text="ms", rangemode="tozero")
    return _layout(fig, title)


def token_mix(totals: Mapping[str, Any], title: str = "Tokens by kind") -> go.Figure:
    """Uncached input, cache reads, cache writes and output (keys of ``summary``).

    Cached tokens are a subset of input tokens (the GenAI conventions), so uncached input
    is what remains; each kind is priced at its own rate.
    """
    cached = (totals.get("cache_read_tokens") or 0) + (totals.get("cache_write_tokens") or 0)
    kinds = {
        "input (uncached)": max((totals.get("input_tokens") or 0) - cached, 0),
        "cache read": totals.get("cache_read_tokens") or 0,
        "cache write": totals.get("cache_write_tokens") or 0,
        "output": totals.get("output_tokens") or 0,
    }
    fig = go.Figure(go.Bar(x=list(kinds), y=list(kinds.values()),
                           text=[_format.tokens(v) for v in kinds.values()], textposition="auto",
                           marker_color=["#6baed6", "#31a354", "#a1d99b", "#fd8d3c"]))
    fig.update_yaxes(rangemode="tozero")
    return _layout(fig, title, legend=False)
