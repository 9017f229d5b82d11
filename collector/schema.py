"""The store's tables: kept importable here; they live in :mod:`llmlens.collector.store`."""

from __future__ import annotations

from llmlens.collector.store import (
    NAMING_CONVENTION,
    ROW_COLUMNS,
    SpanRow,
    UTCDateTime,
    alert_events,
    alert_rules,
    llm_spans,
    metadata,
)

__all__ = [
    "NAMING_CONVENTION",
    "ROW_COLUMNS",
    "SpanRow",
    "UTCDateTime",
    "alert_events",
    "alert_rules",
    "llm_spans",
    "metadata",
]
