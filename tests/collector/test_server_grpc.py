"""OTLP/gRPC into the collector process, with the stock ``opentelemetry-exporter-otlp-proto-grpc`` exporter.

Gzip, the bearer token, a malformed message, a full write queue (the exporter is told to
retry, with the delay the collector asks for, and nothing is lost) and a replayed batch.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmlens.collector.store import open_store

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _chat_spans(n: int, task: str = "answer") -> Sequence[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for i in range(n):
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 1000 + i,
            "gen_ai.usage.output_tokens": 100,
            "llmlens.task": task,
        }
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes=attributes):
            pass
    provider.shutdown()
    return memory.get_finished_spans()


def _exporter(port: int, token: str | None = None, timeout: float = 10) -> OTLPSpanExporter:
    headers = {"authorization": f"Bearer {token}"} if token else None
    return OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True, headers=headers,
                            compression=Compression.Gzip, timeout=timeout)


def _grpc_collector(run_collector: Callable[..., Any], db_url: str, *args: str) -> tuple[Any, int]:
    collector = run_collector(db_url, *args, grpc=True)
    return collector, collector.grpc_port


def _raw_export(port: int, body: bytes, token: str | None = None) -> grpc.RpcError | bytes:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(EXPORT)
        metadata = [("authorization", f"Bearer {token}")] if token else []
        try:
            answer: bytes = call(body, metadata=metadata, timeout=10)
            return answer
        except grpc.RpcError as exc:
            return exc


def test_the_stock_grpc_exporter_with_gzip_and_a_token_gets_priced_rows_in_the_store(
    db_url: str, run_collector: Callable[..., Any]
) -> None:
    collector, port = _grpc_collector(run_collector, db_url, "--token", "tok-9")
    exporter = _exporter(port, "tok-9")
    assert exporter.export(_chat_spans(5)) is SpanExportResult.SUCCESS
    exporter.shutdown()
    rows = open_store(db_url).fetch_rows()
    assert len(rows) == 5
    assert {row["task"] for row in rows} == {"answer"}
    assert all(row["cost_usd"] and row["cost_usd"] > 0 for row in rows)
    assert collector.stop() == 0


def test_a_wrong_or_missing_token_is_unauthenticated_and_nothing_is_stored(
    sqlite_url: str, run_collector: Callable[..., Any]
) -> None:
    _collector, port = _grpc_collector(run_collector, sqlite_url, "--token", "tok-9")
    exporter = _exporter(port, "not-the-token")
    assert exporter.export(_chat_spans(2)) is SpanExportResult.FAILURE
    exporter.shutdown()
    body = _exporter(port)._translate_data(_chat_spans(1)).SerializeToString()
    answer = _raw_export(port, body)
    assert isinstance(answer, grpc.RpcError) and answer.code() is grpc.StatusCode.UNAUTHENTICATED
    assert open_store(sqlite_url).count_rows() == 0


def test_a_malformed_message_is_invalid_argument_and_the_collector_serves_on(
    sqlite_url: str, run_collector: Callable[..., Any]
) -> None:
    collector, port = _grpc_collector(run_collector, sqlite_url)
    answer = _raw_export(port, b"\xff\xff\xff not a protobuf")
    assert isinstance(answer, grpc.RpcError) and answer.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "ExportTraceServiceRequest" in (answer.details() or "")
    assert httpx.get(collector.url + "/healthz").status_code == 200
    exporter = _exporter(port)
    assert exporter.export(_chat_spans(3)) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert open_store(sqlite_url).count_rows() == 3


def test_a_full_queue_answers_resource_exhausted_with_retry_info_and_the_exporter_loses_nothing(
    sqlite_url: str, run_collector: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    collector, port = _grpc_collector(run_collector, sqlite_url, "--queue-max-batches", "1")
    batches = [_chat_spans(1500, task=f"burst-{i}") for i in range(8)]
    results: list[SpanExportResult] = []

    def send(spans: Sequence[ReadableSpan]) -> None:
        exporter = _exporter(port, timeout=120)
        results.append(exporter.export(spans))
        exporter.shutdown()

    caplog.set_level(logging.WARNING, logger="opentelemetry.exporter.otlp.proto.grpc.exporter")
    threads = [threading.Thread(target=send, args=(spans,)) for spans in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert results == [SpanExportResult.SUCCESS] * 8
    assert open_store(sqlite_url).count_rows() == 8 * 1500
    metrics = httpx.get(collector.url + "/metrics").text
    refused = re.search(r'responses_total\{code="503"\} (\d+)', metrics)
    assert refused and int(refused.group(1)) > 0, "the burst never filled the queue"
    # The exporter waited the delay the collector asked for (1 s), not its own jittered backoff.
    delays = re.findall(r"RESOURCE_EXHAUSTED.*retrying in ([\d.]+)s", caplog.text)
    assert delays and set(delays) == {"1.00"}


def test_the_same_batch_exported_twice_is_stored_once(
    db_url: str, run_collector: Callable[..., Any]
) -> None:
    _collector, port = _grpc_collector(run_collector, db_url)
    spans = _chat_spans(4)
    exporter = _exporter(port)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert open_store(db_url).count_rows() == 4
