"""Decoding OTLP trace requests (protobuf and JSON) into SpanRecords, and encoding answers."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from typing import Any

import pytest
from google.protobuf.json_format import MessageToJson
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from llmlens.collector import otlp
from llmlens.collector._body import BodyError, decompress
from llmlens.collector.record import STATUS_ERROR, from_readable_span


def _sdk_spans() -> list[Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "billing"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2", "2.4b0")
    with tracer.start_as_current_span("workflow"), tracer.start_as_current_span("chat gpt-4o-mini") as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 120,
                "gen_ai.request.temperature": 0.5,
                "gen_ai.request.stream": True,
                "gen_ai.response.finish_reasons": ("stop",),
            }
        )
        span.add_event("exception", {"exception.type": "openai.RateLimitError"})
        span.set_status(Status(StatusCode.ERROR, "rate limited"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def _hex_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON as the specification writes it: hex ids, string int64s."""
    document = json.loads(MessageToJson(request))
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


def test_a_protobuf_request_from_the_sdk_decodes_into_the_same_records_as_the_spans_themselves() -> None:
    spans = _sdk_spans()
    batch = otlp.decode_protobuf(encode_spans(spans).SerializeToString())
    assert batch.rejected == 0
    by_id = {r.span_id: r for r in batch.records}
    for span in spans:
        expected = from_readable_span(span)
        got = by_id[expected.span_id]
        assert got.trace_id == expected.trace_id and len(got.trace_id) == 32
        assert got.parent_span_id == expected.parent_span_id
        assert got.name == expected.name
        assert (got.start_time_unix_nano, got.end_time_unix_nano) == (
            expected.start_time_unix_nano,
            expected.end_time_unix_nano,
        )
        assert dict(got.attributes) == dict(expected.attributes)
        assert got.status_code == expected.status_code
        assert got.status_message == expected.status_message
        assert got.resource_attributes["service.name"] == "billing"
        assert got.scope_name == "opentelemetry.instrumentation.openai_v2"
        assert [(n, dict(a)) for n, a in got.events] == [(n, dict(a)) for n, a in expected.events]


def test_json_with_hex_ids_and_json_with_base64_ids_decode_exactly_like_protobuf() -> None:
    request = encode_spans(_sdk_spans())
    from_protobuf = otlp.decode_protobuf(request.SerializeToString()).records
    from_hex_json = otlp.decode_json(_hex_json(request)).records
    # MessageToJson follows the generic protobuf mapping: base64 ids. Some senders do too.
    from_base64_json = otlp.decode_json(MessageToJson(request).encode()).records
    assert from_hex_json == from_protobuf
    assert from_base64_json == from_protobuf
    error_span = next(r for r in from_hex_json if r.name.startswith("chat"))
    assert error_span.status_code == STATUS_ERROR
    assert error_span.attributes["gen_ai.response.finish_reasons"] == ("stop",)


def test_every_attribute_value_kind_decodes_from_json_with_int64_as_string_or_number() -> None:
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "chat",
                                "startTimeUnixNano": 1700000000000000000,
                                "endTimeUnixNano": "1700000001000000000",
                                "status": {"code": "STATUS_CODE_ERROR"},
                                "attributes": [
                                    {"key": "s", "value": {"stringValue": "x"}},
                                    {"key": "i", "value": {"intValue": "9007199254740993"}},
                                    {"key": "n", "value": {"intValue": 7}},
                                    {"key": "d", "value": {"doubleValue": 0.25}},
                                    {"key": "inf", "value": {"doubleValue": "Infinity"}},
                                    {"key": "b", "value": {"boolValue": True}},
                                    {
                                        "key": "a",
                                        "value": {
                                            "arrayValue": {
                                                "values": [{"stringValue": "stop"}, {"intValue": "2"}]
                                            }
                                        },
                                    },
                                    {
                                        "key": "kv",
                                        "value": {
                                            "kvlistValue": {
                                                "values": [{"key": "k", "value": {"stringValue": "v"}}]
                                            }
                                        },
                                    },
                                    {"key": "bytes", "value": {"bytesValue": "AQI="}},
                                    {"key": "empty", "value": {}},
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    (record,) = otlp.decode_json(json.dumps(body).encode()).records
    assert record.attributes == {
        "s": "x",
        "i": 9007199254740993,
        "n": 7,
        "d": 0.25,
        "inf": float("inf"),
        "b": True,
        "a": ("stop", 2),
        "kv": {"k": "v"},
        "bytes": "AQI=",
        "empty": None,
    }
    assert record.status_code == STATUS_ERROR
    assert record.end_time_unix_nano - record.start_time_unix_nano == 10**9


def test_spans_with_unusable_ids_are_rejected_with_a_reason_and_the_rest_of_the_batch_decodes() -> None:
    good = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "ok",
        "startTimeUnixNano": "1700000000000000000",
    }
    bad_trace = {**good, "traceId": "00000000000000000000000000000000"}
    bad_span = {**good, "spanId": "xyz"}
    no_start = {**good, "startTimeUnixNano": "0"}
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [good, bad_trace, bad_span, no_start]}]}]}
    batch = otlp.decode_json(json.dumps(body).encode())
    assert [r.name for r in batch.records] == ["ok"]
    assert batch.rejected == 3
    assert "traceId" in batch.message and "spanId" in batch.message and "startTimeUnixNano" in batch.message


def _delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited field as the wire has it: tag, varint length, payload."""
    length, size = b"", len(payload)
    while size > 0x7F:
        length += bytes([size & 0x7F | 0x80])
        size >>= 7
    return bytes([number << 3 | 2]) + length + bytes([size]) + payload


def _one_span_request(span_fields: bytes) -> bytes:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="chat", start_time_unix_nano=5)
    return _delimited(1, _delimited(2, _delimited(2, span.SerializeToString() + span_fields)))


def _attribute(key: str, **value: Any) -> bytes:
    return _delimited(9, KeyValue(key=key, value=AnyValue(**value)).SerializeToString())


def test_span_attributes_decode_the_same_when_first_seen_and_when_seen_again() -> None:
    body = _one_span_request(
        _attribute("s", string_value="x")
        + _attribute("i", int_value=9007199254740993)
        + _attribute("d", double_value=0.25)
        + _attribute("b", bool_value=False)
        + _attribute("a", array_value=ArrayValue(values=[AnyValue(string_value="stop"), AnyValue(int_value=2)]))
        + _attribute("kv", kvlist_value=KeyValueList(values=[KeyValue(key="k", value=AnyValue(int_value=1))]))
        + _attribute("bytes", bytes_value=b"\x01\x02")
        + _attribute("empty")
        + _attribute("s", string_value="last wins, first place")
    )
    expected = {
        "s": "last wins, first place",
        "i": 9007199254740993,
        "d": 0.25,
        "b": False,
        "a": ("stop", 2),
        "kv": {"k": 1},
        "bytes": "AQI=",
        "empty": None,
    }
    (first,) = otlp.decode_protobuf(body).records
    (again,) = otlp.decode_protobuf(body).records
    for record in (first, again):
        assert list(record.attributes.items()) == list(expected.items())
        assert [type(v) for v in record.attributes.values()] == [type(v) for v in expected.values()]
    # A mapping value is the record's own: nothing mutable is shared between records.
    assert first.attributes["kv"] is not again.attributes["kv"]


def test_span_attribute_fields_of_another_wire_type_are_skipped_without_shifting_the_others() -> None:
    varint, fixed64, group = b"\x48\x05", b"\x49" + bytes(8), b"\x4b\x08\x01\x4c"
    body = _one_span_request(
        _attribute("a", string_value="1") + varint + _attribute("b", int_value=2) + fixed64 + group
        + _attribute("c", int_value=3)
    )
    for _ in range(2):
        (record,) = otlp.decode_protobuf(body).records
        assert record.attributes == {"a": "1", "b": 2, "c": 3}


@pytest.mark.parametrize(
    "bad",
    [_delimited(9, b"\x0a\x02\xff\xfe"), _delimited(9, b"\x0a\x01k\x12\x03\x0a\x01\xff"), b"\x4a\x05\x0a\x09ab"],
    ids=["key not UTF-8", "value not UTF-8", "truncated"],
)
def test_a_broken_span_attribute_next_to_attributes_seen_before_is_still_a_decode_error(bad: bytes) -> None:
    known = _attribute("gen_ai.operation.name", string_value="chat")
    otlp.decode_protobuf(_one_span_request(known))
    with pytest.raises(otlp.OTLPDecodeError, match="protobuf"):
        otlp.decode_protobuf(_one_span_request(known + bad))


def test_remembered_span_attributes_stay_bounded_in_number_and_size() -> None:
    big = "x" * 10_000
    for n in range(3):
        attributes = b"".join(_attribute("gen_ai.response.id", string_value=f"{n}-{i}") for i in range(5000))
        (record,) = otlp.decode_protobuf(_one_span_request(attributes + _attribute("big", string_value=big))).records
        assert record.attributes["big"] == big
        assert len(otlp._known_attributes) <= otlp._KNOWN_MAX_ENTRIES
    assert all(len(encoded) <= otlp._KNOWN_MAX_BYTES for encoded in otlp._known_attributes)


@pytest.mark.parametrize("body", [b"\x0a\x05\x0a\x03", b"\xff\xff\xff\xff", b"\x12"])
def test_a_malformed_protobuf_body_raises_a_decode_error(body: bytes) -> None:
    with pytest.raises(otlp.OTLPDecodeError, match="protobuf"):
        otlp.decode_protobuf(body)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"resourceSpans": {}}', "resourceSpans: expected an array"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}', "spans[0].traceId"),
        (
            (
                b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c",'
                b' "spanId": "eee19b7ec3c1b174", "startTimeUnixNano": "soon"}]}]}]}'
            ),
            "startTimeUnixNano",
        ),
        (
            b'{"resourceSpans": [{"resource": {"attributes": [{"key": "a", "value": {"intValue": "x"}}]}}]}',
            "attributes[0].value.intValue",
        ),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_a_malformed_json_body_raises_a_decode_error_that_says_where(body: bytes, where: str) -> None:
    with pytest.raises(otlp.OTLPDecodeError, match=where.replace("[", r"\[").replace("]", r"\]")):
        otlp.decode_json(body)


def test_the_answer_is_an_empty_response_unless_spans_were_rejected() -> None:
    assert otlp.encode_response(otlp.JSON) == b"{}"
    assert (
        ExportTraceServiceResponse.FromString(otlp.encode_response(otlp.PROTOBUF)).HasField("partial_success")
        is False
    )
    response = ExportTraceServiceResponse.FromString(otlp.encode_response(otlp.PROTOBUF, 3, "invalid spanId"))
    assert response.partial_success.rejected_spans == 3
    assert response.partial_success.error_message == "invalid spanId"
    assert json.loads(otlp.encode_response(otlp.JSON, 3, "invalid spanId")) == {
        "partialSuccess": {"rejectedSpans": "3", "errorMessage": "invalid spanId"}
    }


def test_failures_are_described_by_a_google_rpc_status_in_the_request_encoding() -> None:
    status = status_pb2.Status.FromString(otlp.encode_status(otlp.PROTOBUF, otlp.INVALID_ARGUMENT, "bad"))
    assert (status.code, status.message) == (3, "bad")
    assert json.loads(otlp.encode_status(otlp.JSON, otlp.UNAVAILABLE, "later")) == {
        "code": 14,
        "message": "later",
    }


def test_gzip_and_deflate_bodies_are_inflated_and_identity_is_left_alone() -> None:
    raw = b"spans" * 100
    assert decompress(gzip.compress(raw), "gzip", 10_000) == raw
    assert decompress(gzip.compress(raw[:250]) + gzip.compress(raw[250:]), "gzip", 10_000) == raw
    assert decompress(zlib.compress(raw), "deflate", 10_000) == raw
    raw_deflate = zlib.compressobj(wbits=-15)
    assert decompress(raw_deflate.compress(raw) + raw_deflate.flush(), "deflate", 10_000) == raw
    assert decompress(raw, "identity", 10_000) == raw


def test_a_gzip_bomb_stops_inflating_at_the_limit() -> None:
    bomb = gzip.compress(bytes(200 * 1024 * 1024))  # 200 MiB of zeros in ~200 KiB
    assert len(bomb) < 300_000
    with pytest.raises(BodyError) as caught:
        decompress(bomb, "gzip", 1024 * 1024)
    assert caught.value.status == 413


@pytest.mark.parametrize(
    ("body", "encoding", "status"),
    [(b"not gzip at all", "gzip", 400), (gzip.compress(b"x" * 1000)[:-12], "gzip", 400), (b"x", "br", 415)],
    # Named, not shown: the gzip header holds the time, and test ids must be the same in
    # every process that collects them (pytest-xdist's workers).
    ids=["not gzip", "truncated gzip", "unknown encoding"],
)
def test_corrupt_or_unknown_encodings_are_refused(body: bytes, encoding: str, status: int) -> None:
    with pytest.raises(BodyError) as caught:
        decompress(body, encoding, 10_000)
    assert caught.value.status == status
