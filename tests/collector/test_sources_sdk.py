"""Each instrumentation's real spans, from the real SDKs against the fake provider, make correct rows.

Every test drives the real ``openai`` or ``anthropic`` SDK through the instrumentation as
an application would (one plain call, one streamed call, one rate-limited call), with the
instrumentation's content capture on, sends the spans through the collector's OTLP path
and checks the rows, and that no prompt or answer text reached the store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

Rows = list[dict[str, Any]]


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    memory = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "helpdesk"}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    yield tracer_provider, memory
    tracer_provider.shutdown()


def _openai_calls(fake: Any) -> None:
    import openai

    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0)
    fake.reply("SECRET-ANSWER-1", input_tokens=20, output_tokens=4, cached_tokens=8)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "SECRET-PROMPT-1"}]
    )
    fake.reply("SECRET-ANSWER-2", input_tokens=30, output_tokens=6)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "SECRET-PROMPT-2"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for _chunk in stream:
        pass
    fake.fail(429, message="rate limited")
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "SECRET-PROMPT-3"}]
        )
    client.close()


def _assert_no_content(rows: Rows, sqlite_url: str) -> None:
    assert "SECRET" not in json.dumps(rows, default=str)
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    for file in (path, path.with_name(path.name + "-wal")):
        if file.exists():
            assert b"SECRET" not in file.read_bytes(), f"prompt text reached {file.name}"


def _assert_openai_rows(rows: Rows, *, cache_read: int | None = 8, operation: str | None = "chat") -> None:
    """The three calls of :func:`_openai_calls` as rows: plain, streamed, rate limited."""
    assert len(rows) == 3
    plain, streamed, limited = rows
    for row in rows:
        assert (row["provider"], row["request_model"], row["operation"]) == (
            "openai",
            "gpt-4o-mini",
            operation,
        )
        assert row["task"] is None and row["service_name"] == "helpdesk"  # nothing names a task
        assert row["final"] and row["attempt"] == 1
    assert (plain["input_tokens"], plain["output_tokens"], plain["status"]) == (20, 4, "ok")
    assert plain["cache_read_tokens"] == cache_read
    assert plain["cost_usd"] > 0
    assert (streamed["input_tokens"], streamed["output_tokens"], streamed["status"]) == (30, 6, "ok")
    assert streamed["cost_usd"] > plain["cost_usd"]
    assert limited["status"] == "rate_limited"
    assert limited["failure_reason"] == "RateLimitError"
    assert limited["input_tokens"] is None and limited["cost_usd"] in (None, 0.0)


def test_the_official_openai_v2_instrumentation_makes_correct_rows_and_no_prompt_reaches_the_store(
    provider: tuple[TracerProvider, InMemorySpanExporter],
    fake_provider: Any,
    ingest_spans: Callable[..., Rows],
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    tracer_provider, memory = provider
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        _openai_calls(fake_provider)
    finally:
        instrumentor.uninstrument()
    spans = memory.get_finished_spans()
    assert any("SECRET-PROMPT" in str(s.attributes) for s in spans), "capture was on in the app"
    rows = ingest_spans(spans)
    # openai-v2 2.4b0 does not report cached tokens.
    _assert_openai_rows(rows, cache_read=None)
    assert rows[0]["finish_reason"] == "stop" and rows[0]["response_model"] == "gpt-4o-mini"
    _assert_no_content(rows, sqlite_url)


# OpenLLMetry's own modules still use pydantic's class-based config; the warning is theirs.
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
def test_openllmetry_spans_make_correct_rows_and_no_prompt_reaches_the_store(
    provider: tuple[TracerProvider, InMemorySpanExporter],
    fake_provider: Any,
    ingest_spans: Callable[..., Rows],
    sqlite_url: str,
) -> None:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    tracer_provider, memory = provider
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        _openai_calls(fake_provider)
    finally:
        instrumentor.uninstrument()
    spans = memory.get_finished_spans()
    assert any("SECRET-PROMPT" in str(s.attributes) for s in spans), "OpenLLMetry captures prompts by default"
    rows = ingest_spans(spans)
    _assert_openai_rows(rows)
    assert [row["streaming"] for row in rows] == [False, True, False]
    assert rows[0]["finish_reason"] == "stop"
    _assert_no_content(rows, sqlite_url)


def test_openinference_spans_make_correct_rows_and_no_prompt_reaches_the_store(
    provider: tuple[TracerProvider, InMemorySpanExporter],
    fake_provider: Any,
    ingest_spans: Callable[..., Rows],
    sqlite_url: str,
) -> None:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    tracer_provider, memory = provider
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        _openai_calls(fake_provider)
    finally:
        instrumentor.uninstrument()
    spans = memory.get_finished_spans()
    assert any("SECRET-PROMPT" in str(s.attributes) for s in spans), (
        "OpenInference captures prompts by default"
    )
    rows = ingest_spans(spans)
    _assert_openai_rows(rows, operation=None)  # OpenInference names no operation
    # The failed call's span has no llm.model_name: the model comes from the request's parameters.
    assert [row["streaming"] for row in rows] == [False, True, False]
    assert rows[0]["finish_reason"] == "stop"
    _assert_no_content(rows, sqlite_url)


def test_the_anthropic_sdks_own_spans_make_correct_rows_with_cache_tokens(
    provider: tuple[TracerProvider, InMemorySpanExporter],
    fake_provider: Any,
    ingest_spans: Callable[..., Rows],
    sqlite_url: str,
) -> None:
    import anthropic

    tracer_provider, memory = provider
    client = anthropic.Anthropic(
        base_url=fake_provider.url,
        api_key="test",
        max_retries=0,
        open_telemetry={"tracer_provider": tracer_provider, "traces": {"content_mode": "content"}},
    )
    fake_provider.reply(
        "SECRET-ANSWER-1", input_tokens=20, output_tokens=4, cache_read_tokens=100, cache_write_tokens=50
    )
    client.messages.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "SECRET-PROMPT-1"}]
    )
    fake_provider.reply("SECRET-ANSWER-2", input_tokens=30, output_tokens=6)
    with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "SECRET-PROMPT-2"}]
    ) as stream:
        for _text in stream.text_stream:
            pass
    fake_provider.fail(529, message="overloaded")
    with pytest.raises(anthropic.APIStatusError):
        client.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=64,
            messages=[{"role": "user", "content": "SECRET-PROMPT-3"}],
        )
    client.close()
    spans = memory.get_finished_spans()
    assert {s.instrumentation_scope.name for s in spans} == {"com.anthropic.sdk.python"}
    rows = ingest_spans(spans)
    assert len(rows) == 3
    cached, streamed, overloaded = rows
    assert {row["provider"] for row in rows} == {"anthropic"}
    # Conventions: input includes cache reads and writes (20 uncached + 100 + 50).
    assert (cached["input_tokens"], cached["cache_read_tokens"], cached["cache_write_tokens"]) == (
        170,
        100,
        50,
    )
    assert (cached["output_tokens"], cached["status"], cached["finish_reason"]) == (4, "ok", "stop")
    assert cached["cost_usd"] > 0
    assert streamed["streaming"] and streamed["time_to_first_token_ms"] > 0
    assert (streamed["input_tokens"], streamed["output_tokens"]) == (30, 6)
    assert overloaded["status"] == "provider_error"
    _assert_no_content(rows, sqlite_url)


_LANGFUSE_APP = """
import os, sys
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from langfuse import Langfuse, observe
memory = InMemorySpanExporter()
langfuse = Langfuse(public_key="pk-lf-test", secret_key="sk-lf-test", base_url="http://127.0.0.1:9",
                    tracer_provider=TracerProvider(), span_exporter=memory)
from langfuse.openai import openai  # Langfuse's drop-in OpenAI client
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="test", max_retries=0)

@observe(name="answer-ticket")
def answer():
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "SECRET-PROMPT-1"}])
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "SECRET-PROMPT-2"}],
        stream=True, stream_options={"include_usage": True})
    for _ in stream:
        pass
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "SECRET-PROMPT-3"}])
    except openai.RateLimitError:
        pass

answer()
langfuse.flush()
open(sys.argv[2], "wb").write(encode_spans(memory.get_finished_spans()).SerializeToString())
langfuse.shutdown()
"""


def test_langfuse_generations_make_correct_rows_and_no_prompt_reaches_the_store(
    fake_provider: Any,
    tmp_path: Path,
    sqlite_url: str,
) -> None:
    from llmlens.collector.ingest import Ingestor
    from llmlens.collector.otlp import decode_protobuf
    from llmlens.collector.pricing import Pricer
    from llmlens.collector.store import open_store

    fake_provider.reply("SECRET-ANSWER-1", input_tokens=20, output_tokens=4, cached_tokens=8)
    fake_provider.reply("SECRET-ANSWER-2", input_tokens=30, output_tokens=6)
    fake_provider.fail(429, message="rate limited")
    # In a process of its own: importing langfuse.openai patches the openai module for good.
    out = tmp_path / "langfuse.otlp"
    subprocess.run(
        [sys.executable, "-c", _LANGFUSE_APP, fake_provider.url, str(out)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    batch = decode_protobuf(out.read_bytes())
    assert any("SECRET-PROMPT" in str(r.attributes) for r in batch.records), (
        "Langfuse captures prompts by default"
    )
    store = open_store(sqlite_url)
    Ingestor(store, Pricer()).ingest(batch.records)
    rows = store.fetch_rows()
    assert len(rows) == 3  # the @observe span is workflow structure, not a row
    plain, streamed, limited = rows
    assert {row["provider"] for row in rows} == {"openai"}  # from the model name: Langfuse does not say
    assert (plain["input_tokens"], plain["output_tokens"], plain["cache_read_tokens"]) == (20, 4, 8)
    assert plain["status"] == "ok" and plain["cost_usd"] > 0
    assert (streamed["input_tokens"], streamed["output_tokens"]) == (30, 6)
    assert streamed["finish_reason"] == "stop"
    assert streamed["streaming"] and streamed["time_to_first_token_ms"] > 0  # from completion_start_time
    assert plain["streaming"] is False
    assert limited["status"] == "rate_limited"
    _assert_no_content(rows, sqlite_url)
