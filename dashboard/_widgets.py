"""Small Streamlit building blocks the views share: KPI rows and formatted tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pandas as pd
import streamlit as st

from llmlens.dashboard import _format

Kind = Literal["text", "count", "usd", "pct", "ms", "time", "bool"]
Columns = dict[str, tuple[str, Kind]]  # key in the rows → (header, how to format it)


def kpis(items: Sequence[tuple[str, str, str | None]]) -> None:
    """One row of ``st.metric``: (label, formatted value, help text or None)."""
    for column, (label, value, help_text) in zip(st.columns(len(items)), items, strict=True):
        column.metric(label, value, help=help_text)


def _column_config(kind: Kind, header: str) -> Any:
    if kind == "usd":
        # Six decimals: a small model's call costs millionths of a dollar, not "$0.0000".
        return st.column_config.NumberColumn(header, format="$%.6f")
    if kind == "pct":
        return st.column_config.NumberColumn(header, format="percent")
    if kind == "ms":
        return st.column_config.NumberColumn(header, format="%.0f ms")
    if kind == "count":
        return st.column_config.NumberColumn(header, format="localized")
    if kind == "time":
        return st.column_config.DatetimeColumn(header, format="YYYY-MM-DD HH:mm:ss")
    if kind == "bool":
        return st.column_config.CheckboxColumn(header)
    return st.column_config.TextColumn(header)


def frame(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, tuple[str, Kind]]) -> pd.DataFrame:
    """The chosen columns of ``rows``, in order, group labels with "(none)" for NULL."""
    data = {key: [(_format.label(row.get(key)) if kind == "text" else row.get(key)) for row in rows]
            for key, (_, kind) in columns.items()}
    return pd.DataFrame(data, columns=list(columns))


def table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, tuple[str, Kind]], *,
          key: str | None = None, height: int | Literal["auto"] = "auto") -> None:
    """A read-only table of ``rows`` showing ``columns`` (key → (header, kind)), formatted by kind."""
    config = {key_: _column_config(kind, header) for key_, (header, kind) in columns.items()}
    st.dataframe(frame(rows, columns), column_config=config, hide_index=True, width="stretch",
                 height=height, key=key)


def chart(figure: Any, *, key: str | None = None) -> None:
    """A Plotly figure at the container's width, without the mode bar's clutter."""
    st.plotly_chart(figure, width="stretch", key=key, config={"displaylogo": False})
