"""The collector's door redacts content from other SDKs with the same rules as in-process capture."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def test_content_received_over_otlp_is_redacted_like_captured_content(
        ingest_spans: Callable[..., list[dict[str, Any]]]) -> None:
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    password = "Zq9" + "vLm2xR7tW"
    key = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8t"
    prompt = (f"connect with postgresql://app:{password}@db/prod and OPENAI_API_KEY={key}; "
              f'config {{"client_secret": "{password}"}}')
    with provider.get_tracer("openinference.instrumentation.openai").start_as_current_span("chat") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
        span.set_attribute("gen_ai.usage.input_tokens", 10)
        span.set_attribute("gen_ai.usage.output_tokens", 2)
        span.set_attribute("input.value", prompt)
    (row,) = ingest_spans(memory.get_finished_spans(), capture_content=True)
    stored = json.dumps(row["attributes"])
    assert "input.value" in row["attributes"]
    assert password not in stored and key not in stored
    assert "postgresql://app:[REDACTED]@db/prod" in stored
