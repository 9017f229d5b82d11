"""End to end: an instrumented app exports OTLP to ``llmlens collector`` running as a process.

The app is what a user runs: the real ``openai`` SDK against a loopback fake provider,
the official ``opentelemetry-instrumentation-openai-v2`` with message capture on, and the
OpenTelemetry SDK's own ``OTLPSpanExporter`` (gzip) pointed at the collector.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fake_provider import FakeProvider  # type: ignore[import-not-found]
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmlens.collector.store import open_store


@pytest.fixture
def collector(db_url: str, tmp_path: Path) -> Iterator[str]:
    """``llmlens collector`` on a free loopback port; yields its base URL, stops it after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "collector.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmlens", "collector", "--port", str(port), "--db", db_url, "--grpc-port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "collector did not become healthy"
            time.sleep(0.05)
        yield url
        process.terminate()
        assert process.wait(20) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_an_instrumented_openai_app_exporting_otlp_gets_priced_rows_and_no_prompt_is_stored(
    collector: str, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    provider = TracerProvider(resource=Resource.create({"service.name": "ticket-triage"}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=collector + "/v1/traces", compression=Compression.Gzip, timeout=10)
        )
    )
    sent = InMemorySpanExporter()  # a copy of what was exported, to send again below
    provider.add_span_processor(SimpleSpanProcessor(sent))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with FakeProvider() as fake:
            client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0)
            with provider.get_tracer("ticket-triage").start_as_current_span("POST /tickets"):
                fake.reply("SECRET-ANSWER", input_tokens=1200, output_tokens=80)
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "SECRET-PROMPT-1"}]
                )
                fake.reply("SECRET-STREAMED", input_tokens=900, output_tokens=60)
                stream = client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "SECRET-PROMPT-2"}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
                chunks = [chunk for chunk in stream]
                assert len(chunks) > 2
            client.close()
    finally:
        instrumentor.uninstrument()
    assert provider.force_flush(20_000)
    provider.shutdown()

    store = open_store(db_url)
    rows = store.fetch_rows()
    assert len(rows) == 2  # the app's own HTTP span is not a provider request
    plain, streamed = rows
    assert (plain["input_tokens"], plain["output_tokens"]) == (1200, 80)
    assert (streamed["input_tokens"], streamed["output_tokens"]) == (900, 60)
    for row in rows:
        assert (row["provider"], row["request_model"], row["status"]) == ("openai", "gpt-4o-mini", "ok")
        assert row["service_name"] == "ticket-triage" and row["task"] is None  # nothing names a task
        assert row["cost_usd"] is not None and row["cost_usd"] > 0
        assert row["parent_span_id"] is not None
    assert "SECRET" not in json.dumps(rows, default=str)
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        for file in (path, path.with_name(path.name + "-wal")):
            if file.exists():
                assert b"SECRET" not in file.read_bytes()

    # The same request again (an exporter retry) is acknowledged and changes nothing.
    body = encode_spans(sent.get_finished_spans()).SerializeToString()
    again = httpx.post(
        collector + "/v1/traces", content=body, headers={"content-type": "application/x-protobuf"}
    )
    assert again.status_code == 200
    assert store.fetch_rows() == rows
    metrics: dict[str, Any] = {
        line.split()[0]: float(line.split()[1])
        for line in httpx.get(collector + "/metrics").text.splitlines()
        if line.startswith("llmlens_collector_spans_")
    }
    assert metrics["llmlens_collector_spans_stored_total"] == 2
    assert metrics["llmlens_collector_spans_duplicate_total"] == 2
