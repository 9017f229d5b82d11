"""The embedded path: plain OpenTelemetry spans -> llmlens.configure(db_url=...) -> rows."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import llmlens
from llmlens.collector.exporter import StoreSpanExporter
from llmlens.collector.store import open_store


def _emit(provider: TracerProvider, model: str, input_tokens: int = 1000, output_tokens: int = 200,
          **extra: object) -> None:
    tracer = provider.get_tracer("my-app")
    with tracer.start_as_current_span(f"chat {model}") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", model)
        span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        for key, value in extra.items():
            span.set_attribute(key, value)  # type: ignore[arg-type]


def test_a_plain_otel_span_becomes_one_priced_row(db_url: str) -> None:
    provider = TracerProvider()
    llmlens.configure(db_url=db_url, tracer_provider=provider)
    _emit(provider, "gpt-4o-mini")
    assert llmlens.flush()

    rows = open_store(db_url).fetch_rows()
    assert len(rows) == 1
    row = rows[0]
    expected = calc_price(Usage(input_tokens=1000, output_tokens=200), "gpt-4o-mini").total_price
    assert Decimal(str(row["cost_usd"])).quantize(Decimal("1e-12")) == expected.quantize(Decimal("1e-12"))
    assert row["request_model"] == "gpt-4o-mini"
    assert row["provider"] == "openai"
    assert (row["input_tokens"], row["output_tokens"]) == (1000, 200)
    assert row["status"] == "ok" and row["final"] is True and row["attempt"] == 1
    assert row["start_time"].tzinfo is not None and row["start_time"].utcoffset().total_seconds() == 0


def test_exporting_the_same_span_again_leaves_one_row(db_url: str) -> None:
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    llmlens.configure(db_url=db_url, tracer_provider=provider)
    _emit(provider, "gpt-4o-mini")
    assert llmlens.flush()
    spans: tuple[ReadableSpan, ...] = memory.get_finished_spans()

    again = StoreSpanExporter(db_url)
    assert again.export(list(spans)).name == "SUCCESS"
    assert again.totals.duplicates == 1 and again.totals.stored == 0
    assert open_store(db_url).count_rows() == 1


def test_an_unknown_model_is_stored_with_null_cost(db_url: str) -> None:
    provider = TracerProvider()
    llmlens.configure(db_url=db_url, tracer_provider=provider)
    _emit(provider, "acme-internal-llm-7b")
    assert llmlens.flush()
    (row,) = open_store(db_url).fetch_rows()
    assert row["request_model"] == "acme-internal-llm-7b"
    assert row["cost_usd"] is None


def test_spans_that_are_not_llm_calls_are_not_rows(sqlite_url: str) -> None:
    provider = TracerProvider()
    llmlens.configure(db_url=sqlite_url, tracer_provider=provider)
    tracer = provider.get_tracer("my-app")
    with tracer.start_as_current_span("GET /tickets") as span:
        span.set_attribute("http.request.method", "GET")
        _emit(provider, "gpt-4o")
    assert llmlens.flush()
    rows = open_store(sqlite_url).fetch_rows()
    assert [r["request_model"] for r in rows] == ["gpt-4o"]


def test_a_failed_span_gets_its_status_from_error_type(sqlite_url: str) -> None:
    provider = TracerProvider()
    llmlens.configure(db_url=sqlite_url, tracer_provider=provider)
    tracer = provider.get_tracer("my-app")
    with tracer.start_as_current_span("chat gpt-4o") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", "gpt-4o")
        span.set_attribute("error.type", "<class 'openai.RateLimitError'>")
        span.set_status(StatusCode.ERROR, "Rate limit reached for user@example.com")
    assert llmlens.flush()
    (row,) = open_store(sqlite_url).fetch_rows()
    assert row["status"] == "rate_limited"
    assert row["error_type"] == "RateLimitError"
    assert row["cost_usd"] == 0.0  # a refused request is not billed
    assert "user@example.com" not in str(row)


def test_a_database_that_cannot_be_written_is_logged_once_and_never_raises(
        tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    exporter = StoreSpanExporter(f"sqlite:///{blocker}/sub/llmlens.db")
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _emit(provider, "gpt-4o")
    _emit(provider, "gpt-4o")
    spans = list(memory.get_finished_spans())
    with caplog.at_level(logging.ERROR, logger="llmlens"):
        assert exporter.export(spans[:1]).name == "FAILURE"
        assert exporter.export(spans[1:]).name == "FAILURE"
    assert exporter.dropped == 2 and exporter.drops.totals == {"store_error": 2}
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1


def test_shutdown_flushes_what_is_queued(sqlite_url: str) -> None:
    provider = TracerProvider()
    llmlens.configure(db_url=sqlite_url, tracer_provider=provider)
    for _ in range(50):
        _emit(provider, "gpt-4o-mini")
    assert llmlens.shutdown()
    assert open_store(sqlite_url).count_rows() == 50
