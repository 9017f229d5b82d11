"""OTLP/gRPC into the collector process, with the stock ``opentelemetry-exporter-otlp-proto-grpc`` exporter.

Gzip, the bearer token, a malformed message, a full write queue (the exporter is told to
retry, with the delay the collector asks for, and nothing is lost) and a replayed batch.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
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


def _worker_pids(parent: int) -> list[int]:
    with open(f"/proc/{parent}/task/{parent}/children") as children:
        return [int(pid) for pid in children.read().split()]


def _sockets_on_port(port: int) -> dict[int, str]:
    """Inode -> TCP state ("0A" listening, "01" established) of the sockets bound to ``port``."""
    found: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found[int(fields[9])] = fields[3]
    return found


def _socket_states_by_process(pids: list[int], port: int) -> dict[int, list[str]]:
    sockets = _sockets_on_port(port)
    states: dict[int, list[str]] = {pid: [] for pid in pids}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inode = int(target[len("socket:["):-1])
                if inode in sockets:
                    states[pid].append(sockets[inode])
    return states


def test_two_workers_both_serve_grpc_and_several_exporters_store_every_span_once(
    db_url: str, run_collector: Callable[..., Any]
) -> None:
    collector, port = _grpc_collector(run_collector, db_url, "--workers", "2")
    workers = _worker_pids(collector.process.pid)
    assert len(workers) == 2
    # Each worker binds the port itself (SO_REUSEPORT), and the kernel spreads connections.
    # /healthz answered from the first worker up; the other may still be starting.
    deadline = time.monotonic() + 60
    listening = _socket_states_by_process(workers, port)
    while not all("0A" in states for states in listening.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
        listening = _socket_states_by_process(workers, port)
    assert all("0A" in states for states in listening.values()), listening
    # Sixteen exporters, sixteen connections: all on one worker by chance is 1 in 32,768.
    # Channels of one process to one target share a connection unless told not to; each
    # exporter here stands for an application process of its own.
    own_connection = (("grpc.use_local_subchannel_pool", 1),)
    exporters = [OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True, compression=Compression.Gzip,
                                  timeout=60, channel_options=own_connection)  # type: ignore[arg-type]
                 for _ in range(16)]
    batches = [_chat_spans(50, task=f"exporter-{i}") for i in range(len(exporters))]
    results: list[SpanExportResult] = []
    threads = [threading.Thread(target=lambda e=exporter, b=batch: results.append(e.export(b)))
               for exporter, batch in zip(exporters, batches, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == [SpanExportResult.SUCCESS] * len(exporters)
    # The channels stay connected after their export: each connection is held by the
    # worker that accepted it.
    served = _socket_states_by_process(workers, port)
    assert all("01" in states for states in served.values()), served
    for exporter in exporters:
        exporter.shutdown()
    store = open_store(db_url)
    assert store.count_rows() == 16 * 50
    assert {row["task"] for row in store.fetch_rows()} == {f"exporter-{i}" for i in range(16)}
    assert collector.stop() == 0


def test_a_postgresql_outage_spools_grpc_exports_then_refuses_with_retry_info_and_loses_nothing(
    own_postgres: Any, run_collector: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    url = own_postgres.url
    # Room in the spool for the small batches, not for the large one.
    collector, port = _grpc_collector(run_collector, url, "--spool-max-mb", "0.02")
    exporter = _exporter(port, timeout=120)
    assert exporter.export(_chat_spans(5, task="before")) is SpanExportResult.SUCCESS

    own_postgres.stop("fast")
    # While the spool takes them, exports succeed: acknowledged means kept.
    for i in range(3):
        assert exporter.export(_chat_spans(4, task=f"spooled-{i}")) is SpanExportResult.SUCCESS
    assert httpx.get(collector.url + "/healthz").json()["spool_records"] == 3

    # The spool is full for this one: refused, retryable, with the delay to wait.
    caplog.set_level(logging.WARNING, logger="opentelemetry.exporter.otlp.proto.grpc.exporter")
    results: list[SpanExportResult] = []
    large = threading.Thread(target=lambda: results.append(exporter.export(_chat_spans(400, task="large"))))
    large.start()
    while "retrying in" not in caplog.text:
        assert large.is_alive(), results
        time.sleep(0.05)
    refusals = re.findall(r"Transient error StatusCode\.(\w+) .*retrying in ([\d.]+)s", caplog.text)
    assert refusals and {code for code, _delay in refusals} <= {"UNAVAILABLE", "RESOURCE_EXHAUSTED"}
    # Whole seconds: the collector's RetryInfo, not the exporter's own jittered backoff.
    assert all(delay.endswith(".00") and float(delay) >= 1 for _code, delay in refusals), refusals

    own_postgres.restart_later()
    own_postgres.wait_ready()
    large.join(120)
    assert results == [SpanExportResult.SUCCESS]
    exporter.shutdown()

    store = open_store(url)
    deadline = time.monotonic() + 60  # the spooled batches are replayed in the background
    while store.count_rows() < 5 + 3 * 4 + 400 and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = store.fetch_rows()
    assert len(rows) == 5 + 3 * 4 + 400
    assert len({(row["trace_id"], row["span_id"]) for row in rows}) == len(rows)
    tasks = [row["task"] for row in rows]
    assert {task: tasks.count(task) for task in set(tasks)} == {
        "before": 5, "spooled-0": 4, "spooled-1": 4, "spooled-2": 4, "large": 400}
    assert "Traceback" not in collector.output()
    assert collector.stop() == 0
