"""OTLP/HTTP trace payloads: decode requests into :class:`SpanRecord`, encode the answers.

Both encodings the OTLP/HTTP specification allows are read:

* ``application/x-protobuf``: an ``ExportTraceServiceRequest``. It is walked directly
  (``MessageToDict`` would be several times slower and produce camelCase dicts we would
  only have to walk again), and span attributes, which repeat from span to span, are
  looked up by their encoded bytes in a bounded cache; only those not seen yet are read
  ``AnyValue`` by ``AnyValue``.
* ``application/json``: the protobuf JSON mapping with the OTLP exceptions: ids as hex,
  enums as integers, 64-bit integers as strings or numbers. Some senders emit base64 ids
  (the generic protobuf mapping) or snake_case field names, so both are tolerated.

A body that cannot be decoded raises :class:`OTLPDecodeError` (the server answers 400).
A body that decodes but holds spans we cannot store (bad ids, no start time) is not an
error: those spans are counted as rejected and named in the response's
``partial_success``, and the rest of the batch goes on.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from llmlens.collector._sources import FIRST_CHUNK_EVENTS
from llmlens.collector.record import STATUS_ERROR, SpanRecord, first_chunk_time

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"

_ZERO_TRACE: Final = bytes(16)
_ZERO_SPAN: Final = bytes(8)
# Enough distinct reasons to explain a batch, few enough to keep the answer short.
_MAX_REASONS: Final = 5


class OTLPDecodeError(ValueError):
    """The body is not a valid OTLP trace export request; the message says where."""


@dataclass(slots=True)
class DecodedBatch:
    """The spans of one request that can be stored, and why the others could not."""

    records: list[SpanRecord] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < _MAX_REASONS and reason not in self.reasons:
            self.reasons.append(reason)

    @property
    def message(self) -> str:
        return "; ".join(self.reasons)


# --- protobuf ------------------------------------------------------------------------------


def decode_protobuf(body: bytes) -> DecodedBatch:
    """Decode a binary ``ExportTraceServiceRequest``.

    >>> decode_protobuf(ExportTraceServiceRequest().SerializeToString()).records
    []
    """
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise OTLPDecodeError(f"body is not a protobuf ExportTraceServiceRequest: {exc}") from None
    # The parse above validates the whole body (same errors, same nesting limit) and is
    # where unseen attributes are read; this second one cannot fail after it, as it
    # differs only in reading span attributes as bytes. It costs ~1 us a span.
    encoded = _encoded_attributes_type().FromString(body)
    batch = DecodedBatch()
    records = batch.records
    known = _known_attributes.get
    for resource_spans, decoded_resource_spans in zip(encoded.resource_spans, request.resource_spans, strict=True):
        # One dict per resource, shared by its spans: records treat it as read-only.
        resource = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans, decoded_scope_spans in zip(
            resource_spans.scope_spans, decoded_resource_spans.scope_spans, strict=True
        ):
            scope_name = scope_spans.scope.name
            decoded_spans = decoded_scope_spans.spans
            for i, span in enumerate(scope_spans.spans):
                trace_id = span.trace_id
                span_id = span.span_id
                if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
                    batch.reject("invalid trace_id (want 16 non-zero bytes)")
                    continue
                if len(span_id) != 8 or span_id == _ZERO_SPAN:
                    batch.reject("invalid span_id (want 8 non-zero bytes)")
                    continue
                start = span.start_time_unix_nano
                if not start:
                    batch.reject("missing start_time_unix_nano")
                    continue
                # (key, value) per attribute from the cache, in one pass of C calls; the few
                # not seen yet are read from the validated request, at the same index.
                pairs: list[Any] = list(map(known, span.attributes))
                if None in pairs:
                    _fill_unknown(pairs, span.attributes, decoded_spans[i].attributes)
                parent = span.parent_span_id
                status = span.status
                code = status.code
                events = span.events
                # Positional, in SpanRecord's field order: keyword calls cost more per span.
                records.append(
                    SpanRecord(
                        trace_id.hex(),
                        span_id.hex(),
                        span.name,
                        start,
                        span.end_time_unix_nano or start,
                        # A list of pairs makes the same dict as assigning them in order:
                        # the last of a repeated key wins, at the place of the first.
                        dict(pairs),
                        parent.hex() if len(parent) == 8 and parent != _ZERO_SPAN else None,
                        code,
                        status.message,
                        resource,
                        scope_name,
                        # Only a failed span's events are read (for the exception type), as
                        # for SDK spans; a stream's per-chunk events would be decoded for nothing.
                        [(e.name, _pb_attributes(e.attributes)) for e in events]
                        if code == STATUS_ERROR and events else (),
                        first_chunk_time(events) if events else 0,
                    )
                )
    return batch


# Span attributes repeat from span to span (operation, provider, model, server, task,
# prompt version...), and reading a KeyValue through the protobuf runtime costs ~1.5 us
# (a wrapper per message, WhichOneof, getattr) against ~0.1 us to look its encoded bytes
# up in a dict: the collector benchmark's spans (16 attributes, 2-3 of them unseen)
# decode about twice as fast. Bounded in entries and in the size of each (a few MB at
# most) and cleared when full; only immutable values are kept, since records share
# them. Concurrent decodes (gRPC threads) need no lock: at worst one misses.
_known_attributes: dict[bytes, tuple[str, Any]] = {}
_KNOWN_MAX_ENTRIES: Final = 8192
_KNOWN_MAX_BYTES: Final = 256


@functools.cache
def _encoded_attributes_type() -> Any:
    """``TracesData`` (on the wire, the same message as ``ExportTraceServiceRequest``) with
    ``Span.attributes`` declared as ``repeated bytes``: each attribute comes out as its
    encoded ``KeyValue``, the cache's key, without a message built for it."""
    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2, trace_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        if module is trace_pb2:
            span = next(m for m in proto.message_type if m.name == "Span")
            attributes = next(f for f in span.field if f.name == "attributes")
            attributes.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            attributes.ClearField("type_name")
        pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("opentelemetry.proto.trace.v1.TracesData"))


def _fill_unknown(pairs: list[Any], encoded: Any, key_values: Any) -> None:
    known = _known_attributes
    scalar = _SCALAR_KINDS
    j = -1
    for _ in range(pairs.count(None)):
        j = pairs.index(None, j + 1)
        kv = key_values[j]
        value = kv.value
        kind = value.WhichOneof("value")
        pair = pairs[j] = (kv.key, getattr(value, kind) if kind in scalar else _pb_value(value))
        raw = encoded[j]
        if len(raw) <= _KNOWN_MAX_BYTES and (kind in scalar or _immutable(pair[1])):
            if len(known) >= _KNOWN_MAX_ENTRIES:
                known.clear()
            known[raw] = pair


def _immutable(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(map(_immutable, value))
    return not isinstance(value, dict)


_SCALAR_KINDS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


def _pb_attributes(key_values: Any) -> dict[str, Any]:
    # Resource, event and nested attributes: scalars are read inline by the name
    # WhichOneof gives, which saves a call and a chain of comparisons per attribute.
    out: dict[str, Any] = {}
    scalar = _SCALAR_KINDS
    for kv in key_values:
        value = kv.value
        kind = value.WhichOneof("value")
        out[kv.key] = getattr(value, kind) if kind in scalar else _pb_value(value)
    return out


def _pb_value(value: Any) -> Any:
    # Ordered by how often each kind appears in GenAI spans.
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        # Tuples, as the SDK stores sequence attributes on a ReadableSpan.
        return tuple([_pb_value(v) for v in value.array_value.values])
    if kind == "kvlist_value":
        return _pb_attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


# --- JSON ----------------------------------------------------------------------------------


def decode_json(body: bytes) -> DecodedBatch:
    """Decode an OTLP/JSON ``ExportTraceServiceRequest``.

    >>> decode_json(b'{"resourceSpans": []}').records
    []
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OTLPDecodeError(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise OTLPDecodeError("body must be a JSON object with a resourceSpans array")
    batch = DecodedBatch()
    for r, resource_spans in enumerate(_list(document, "resourceSpans", "resource_spans", "")):
        where = f"resourceSpans[{r}]"
        resource_obj = _obj(resource_spans, "resource", "resource", where)
        resource = _json_attributes(resource_obj, f"{where}.resource")
        for s, scope_spans in enumerate(_list(resource_spans, "scopeSpans", "scope_spans", where)):
            swhere = f"{where}.scopeSpans[{s}]"
            scope_name = _str(_obj(scope_spans, "scope", "scope", swhere), "name", "name", f"{swhere}.scope")
            for i, span in enumerate(_list(scope_spans, "spans", "spans", swhere)):
                _json_span(batch, span, f"{swhere}.spans[{i}]", resource, scope_name)
    return batch


def _json_span(
    batch: DecodedBatch, span: Any, where: str, resource: dict[str, Any], scope_name: str
) -> None:
    if not isinstance(span, dict):
        raise OTLPDecodeError(f"{where}: expected an object")
    trace_id = _json_id(_str(span, "traceId", "trace_id", where), 16)
    if trace_id is None:
        batch.reject("invalid traceId (want 32 hex digits, not all zero)")
        return
    span_id = _json_id(_str(span, "spanId", "span_id", where), 8)
    if span_id is None:
        batch.reject("invalid spanId (want 16 hex digits, not all zero)")
        return
    start = _int(span, "startTimeUnixNano", "start_time_unix_nano", where)
    if not start:
        batch.reject("missing startTimeUnixNano")
        return
    status = _obj(span, "status", "status", where)
    status_code = _status_code(status.get("code"), f"{where}.status.code")
    events: list[tuple[str, dict[str, Any]]] | tuple[()] = ()
    first_chunk = 0
    for n, e in enumerate(_list(span, "events", "events", where)):
        if isinstance(e, dict) and _str(e, "name", "name", f"{where}.events[{n}]") in FIRST_CHUNK_EVENTS:
            first_chunk = _int(e, "timeUnixNano", "time_unix_nano", f"{where}.events[{n}]")
            break
    if status_code == STATUS_ERROR:
        events = [
            (_str(e, "name", "name", f"{where}.events[{n}]"), _json_attributes(e, f"{where}.events[{n}]"))
            for n, e in enumerate(_list(span, "events", "events", where))
        ] or ()
    batch.records.append(
        SpanRecord(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=_json_id(_str(span, "parentSpanId", "parent_span_id", where), 8),
            name=_str(span, "name", "name", where),
            start_time_unix_nano=start,
            end_time_unix_nano=_int(span, "endTimeUnixNano", "end_time_unix_nano", where) or start,
            attributes=_json_attributes(span, where),
            status_code=status_code,
            status_message=_str(status, "message", "message", f"{where}.status"),
            resource_attributes=resource,
            scope_name=scope_name,
            events=events,
            first_chunk_unix_nano=first_chunk,
        )
    )


def _get(obj: Any, camel: str, snake: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise OTLPDecodeError(f"{where or 'body'}: expected an object")
    value = obj.get(camel)
    return obj.get(snake) if value is None and snake != camel else value


def _list(obj: Any, camel: str, snake: str, where: str) -> list[Any]:
    value = _get(obj, camel, snake, where)
    if value is None:
        return []
    if not isinstance(value, list):
        raise OTLPDecodeError(f"{where + '.' if where else ''}{camel}: expected an array")
    return value


def _obj(obj: Any, camel: str, snake: str, where: str) -> dict[str, Any]:
    value = _get(obj, camel, snake, where)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OTLPDecodeError(f"{where}.{camel}: expected an object")
    return value


def _str(obj: Any, camel: str, snake: str, where: str) -> str:
    value = _get(obj, camel, snake, where)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise OTLPDecodeError(f"{where}.{camel}: expected a string")
    return value


def _int(obj: Any, camel: str, snake: str, where: str) -> int:
    return _to_int(_get(obj, camel, snake, where), f"{where}.{camel}")


def _to_int(value: Any, where: str) -> int:
    # The protobuf JSON mapping writes 64-bit integers as strings; numbers are accepted too.
    if value is None:
        return 0
    if isinstance(value, bool):
        raise OTLPDecodeError(f"{where}: expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise OTLPDecodeError(f"{where}: expected an integer, got {value!r:.40}")


_STATUS_NAMES: Final = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


def _status_code(value: Any, where: str) -> int:
    if isinstance(value, str) and value in _STATUS_NAMES:
        return _STATUS_NAMES[value]
    code = _to_int(value, where)
    if code not in (0, 1, 2):
        raise OTLPDecodeError(f"{where}: unknown status code {code}")
    return code


def _json_id(text: str, size: int) -> str | None:
    """Lowercase hex of an id written as hex (the OTLP rule) or base64 (the protobuf rule)."""
    if not text:
        return None
    raw: bytes | None = None
    if len(text) == 2 * size:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            try:
                raw = base64.urlsafe_b64decode(text)
            except (binascii.Error, ValueError):
                return None
    if len(raw) != size or not any(raw):
        return None
    return raw.hex()


def _json_attributes(obj: Any, where: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for n, kv in enumerate(_list(obj, "attributes", "attributes", where)):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise OTLPDecodeError(f"{where}.attributes[{n}]: expected an object with a string key")
        attributes[kv["key"]] = _json_value(kv.get("value"), f"{where}.attributes[{n}].value")
    return attributes


def _json_value(value: Any, where: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise OTLPDecodeError(f"{where}: expected an AnyValue object")
    for key, convert in _JSON_VALUE_KINDS.items():
        if key in value:
            return convert(value[key], where)
    return None  # an empty AnyValue is allowed


def _json_string(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise OTLPDecodeError(f"{where}.stringValue: expected a string")
    return v


def _json_bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise OTLPDecodeError(f"{where}.boolValue: expected true or false")
    return v


def _json_double(v: Any, where: str) -> float:
    # "NaN", "Infinity" and "-Infinity" are how the JSON mapping writes non-finite doubles.
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    raise OTLPDecodeError(f"{where}.doubleValue: expected a number")


def _json_array(v: Any, where: str) -> tuple[Any, ...]:
    values = _list(v, "values", "values", f"{where}.arrayValue")
    return tuple(_json_value(item, f"{where}.arrayValue.values[{n}]") for n, item in enumerate(values))


def _json_kvlist(v: Any, where: str) -> dict[str, Any]:
    return _json_attributes({"attributes": _list(v, "values", "values", f"{where}.kvlistValue")}, where)


def _json_bytes(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise OTLPDecodeError(f"{where}.bytesValue: expected base64 text")
    return v


_JSON_VALUE_KINDS: Final[dict[str, Callable[[Any, str], Any]]] = {
    "stringValue": _json_string,
    "intValue": lambda v, where: _to_int(v, f"{where}.intValue"),
    "doubleValue": _json_double,
    "boolValue": _json_bool,
    "arrayValue": _json_array,
    "kvlistValue": _json_kvlist,
    "bytesValue": _json_bytes,
    "string_value": _json_string,
    "int_value": lambda v, where: _to_int(v, f"{where}.int_value"),
    "double_value": _json_double,
    "bool_value": _json_bool,
    "array_value": _json_array,
    "kvlist_value": _json_kvlist,
    "bytes_value": _json_bytes,
}


# --- answers -------------------------------------------------------------------------------


def decode(body: bytes, media_type: str) -> DecodedBatch:
    """Decode a request body of the given media type (:data:`PROTOBUF` or :data:`JSON`)."""
    return decode_json(body) if media_type == JSON else decode_protobuf(body)


def encode_response(media_type: str, rejected: int = 0, message: str = "") -> bytes:
    """An ``ExportTraceServiceResponse``; ``partial_success`` is set only when spans were rejected.

    The specification reserves a set ``partial_success`` for rejections and warnings, so
    a fully accepted batch answers an empty message.
    """
    if media_type == JSON:
        if not rejected and not message:
            return b"{}"
        partial = {"rejectedSpans": str(rejected), "errorMessage": message}
        return json.dumps({"partialSuccess": partial}).encode()
    response = ExportTraceServiceResponse()
    if rejected or message:
        partial = ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
        response.partial_success.CopyFrom(partial)
    encoded: bytes = response.SerializeToString()
    return encoded


# gRPC status codes used in google.rpc.Status bodies of failed requests.
INVALID_ARGUMENT: Final = 3
RESOURCE_EXHAUSTED: Final = 8
INTERNAL: Final = 13
UNAVAILABLE: Final = 14
UNAUTHENTICATED: Final = 16


def encode_status(media_type: str, code: int, message: str) -> bytes:
    """A ``google.rpc.Status`` body: what OTLP/HTTP sends with every 4xx and 5xx answer."""
    if media_type == JSON:
        return json.dumps({"code": code, "message": message}).encode()
    encoded: bytes = status_pb2.Status(code=code, message=message).SerializeToString()
    return encoded
