"""``SpanRecord``: the one shape a span has on its way to becoming a row.

Both doors into the store produce it: the in-process exporter from the SDK's
``ReadableSpan`` (:func:`from_readable_span`) and the OTLP receiver from decoded
protobuf or JSON. :func:`llmlens.collector.normalize.normalize` takes only this, so
there is exactly one normalization path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from llmlens.collector._sources import FIRST_CHUNK_EVENTS

# OTLP numbering of span status codes (the SDK's StatusCode enum uses the same values).
STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2


@dataclass(slots=True)
class SpanRecord:
    """A finished span, decoded. Ids are lowercase hex (32 chars trace, 16 chars span)."""

    trace_id: str
    span_id: str
    name: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: Mapping[str, Any]
    parent_span_id: str | None = None
    status_code: int = STATUS_UNSET
    status_message: str = ""
    resource_attributes: Mapping[str, Any] = field(default_factory=dict)
    scope_name: str = ""
    # (event name, event attributes), e.g. ("exception", {"exception.type": ...}).
    events: Sequence[tuple[str, Mapping[str, Any]]] = ()
    # When the first chunk of a streamed answer arrived, for sources that tell it only by an
    # event (``_sources.FIRST_CHUNK_EVENTS``); 0 when unknown.
    first_chunk_unix_nano: int = 0


def first_chunk_time(events: Any) -> int:
    """The time of the first first-chunk event among a span's events (SDK or OTLP), or 0."""
    for event in events:
        if event.name in FIRST_CHUNK_EVENTS:
            return int(getattr(event, "timestamp", None) or getattr(event, "time_unix_nano", 0) or 0)
    return 0


def _plain_dict(span: ReadableSpan) -> Mapping[str, Any]:
    # The SDK's BoundedAttributes answers .get() and iteration through the Mapping ABC and
    # a lock, several times slower than a dict, and normalize reads every key. An ended
    # span's attributes are immutable, so its inner dict is read as is; it is private, so
    # fall back to the public mapping if it ever moves.
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    if isinstance(inner, dict):
        return inner
    return dict(span.attributes) if span.attributes else {}


def from_readable_span(span: ReadableSpan) -> SpanRecord:
    """Convert an SDK span (as a SpanExporter receives it) into a :class:`SpanRecord`."""
    ctx = span.context
    parent = span.parent
    resource = span.resource
    scope = span.instrumentation_scope
    status = span.status
    # The member's value as stored: Enum's ``.value`` is a property, ~10x slower.
    status_code = status.status_code._value_
    # Reading ``span.events`` copies the SDK's locked list into a tuple (~0.8 us) and most
    # spans have none: the private list's length answers that first.
    private_events = getattr(span, "_events", None)
    span_events = span.events if private_events is None or len(private_events) else ()
    events: Sequence[tuple[str, Mapping[str, Any]]] = ()
    if status_code == STATUS_ERROR:  # events are read only for the exception's type
        events = [(event.name, event.attributes or {}) for event in span_events]
    if ctx is not None:
        try:
            # Bytes to hex is ~3x faster than format(); ids out of range (from a custom id
            # generator) are spelled by format as before.
            trace_id = ctx.trace_id.to_bytes(16, "big").hex()
            span_id = ctx.span_id.to_bytes(8, "big").hex()
        except OverflowError:
            trace_id, span_id = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    else:
        trace_id, span_id = "0" * 32, "0" * 16
    start = span.start_time or 0
    # Positional: this runs once per exported span, and keyword calls cost more.
    return SpanRecord(
        trace_id,
        span_id,
        span.name,
        start,
        span.end_time or start,
        _plain_dict(span),
        _span_hex(parent.span_id) if parent is not None else None,
        status_code,
        status.description or "",
        resource.attributes if resource is not None else {},
        scope.name if scope is not None else "",
        events,
        first_chunk_time(span_events) if span_events else 0,
    )


def _span_hex(span_id: int) -> str:
    try:
        return span_id.to_bytes(8, "big").hex()
    except OverflowError:
        return format(span_id, "016x")
