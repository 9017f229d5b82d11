"""Older attribute names, built from what those releases emitted, and llmlens' own spans.

Older releases of the GenAI conventions and of OpenLLMetry wrote other names for the same
facts; the collector still reads them. (OpenLIT, which pins ``openai<3``, runs for real in
the second test environment: ``tests/libraries/compat/test_sources_matrix_compat.py``.) The
last tests cover llmlens' own spans through the collector and content capture.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

Rows = list[dict[str, Any]]


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "research-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider, memory
    provider.shutdown()


def _span(
    provider: TracerProvider, scope: str, name: str, attributes: dict[str, Any], error: str | None = None
) -> None:
    with provider.get_tracer(scope).start_as_current_span(name, attributes=attributes) as span:
        if error:
            span.set_status(Status(StatusCode.ERROR, error))


def test_the_older_genai_names_map_onto_the_same_fields(
    tracing: tuple[TracerProvider, InMemorySpanExporter], ingest_spans: Callable[..., Rows]
) -> None:
    provider, memory = tracing
    # GenAI semantic conventions before 1.37: gen_ai.system, prompt/completion tokens.
    _span(
        provider,
        "some.genai.instrumentation",
        "chat claude-haiku-4-5",
        {
            "gen_ai.system": "anthropic",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "claude-haiku-4-5",
            "gen_ai.usage.prompt_tokens": 500,
            "gen_ai.usage.completion_tokens": 50,
            "gen_ai.usage.cache_creation.input_tokens": 100,
            "error.type": "<class 'anthropic.RateLimitError'>",
        },
        error="rate limited",
    )
    (row,) = ingest_spans(memory.get_finished_spans())
    assert (row["provider"], row["request_model"]) == ("anthropic", "claude-haiku-4-5")
    assert (row["input_tokens"], row["output_tokens"], row["cache_write_tokens"]) == (500, 50, 100)
    assert (row["status"], row["error_type"], row["failure_reason"]) == (
        "rate_limited",
        "RateLimitError",
        "RateLimitError",
    )


def test_older_openllmetry_spans_take_their_task_from_the_workflow_and_lose_their_prompts(
    tracing: tuple[TracerProvider, InMemorySpanExporter], ingest_spans: Callable[..., Rows]
) -> None:
    provider, memory = tracing
    tracer = provider.get_tracer("traceloop.tracer")
    with tracer.start_as_current_span(
        "triage.workflow",
        attributes={
            "traceloop.span.kind": "workflow",
            "traceloop.workflow.name": "triage",
            "traceloop.entity.name": "triage",
            "traceloop.entity.input": '{"ticket": "SECRET-TICKET"}',
            "traceloop.entity.output": '"SECRET"',
        },
    ):
        _span(
            provider,
            "opentelemetry.instrumentation.openai.v1",
            "openai.chat",
            {
                "llm.request.type": "chat",
                "gen_ai.system": "OpenAI",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "llm.is_streaming": False,
                "gen_ai.usage.prompt_tokens": 900,
                "gen_ai.usage.completion_tokens": 40,
                "llm.usage.total_tokens": 940,
                "gen_ai.usage.cache_read_input_tokens": 512,
                "traceloop.workflow.name": "triage",
                "traceloop.entity.path": "triage",
                "traceloop.association.properties.session_id": "s-42",
                "gen_ai.prompt.0.role": "user",
                "gen_ai.prompt.0.content": "SECRET-PROMPT",
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": "SECRET-ANSWER",
                "gen_ai.completion.0.finish_reason": "stop",
            },
        )
    rows = ingest_spans(memory.get_finished_spans())
    assert len(rows) == 1  # the workflow span is structure, not a provider request
    (row,) = rows
    assert (row["task"], row["operation"], row["provider"]) == ("triage", "chat", "openai")
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == (900, 40, 512)
    assert row["conversation_id"] == "s-42"
    assert row["cost_usd"] > 0
    assert "SECRET" not in json.dumps(row, default=str)


def test_llmlens_own_spans_through_the_collector_make_one_row_per_attempt(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
    fake_provider: Any,
    ingest_spans: Callable[..., Rows],
) -> None:
    import openai

    import llmlens

    provider, memory = tracing
    llmlens.configure(tracer_provider=provider, exporter=InMemorySpanExporter())
    client = openai.OpenAI(base_url=fake_provider.url + "/v1", api_key="test", max_retries=0)

    @llmlens.observe(
        task="summarize",
        prompt_version="summary@3",
        retry=llmlens.RetryPolicy(max_retries=1, base_delay=0.01, jitter=False),
    )
    def summarize(text: str) -> Any:
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )

    fake_provider.fail(429, headers={"retry-after": "0.01"})
    fake_provider.reply("short", input_tokens=300, output_tokens=20)
    summarize("SECRET-DOCUMENT")
    assert llmlens.flush(5)
    client.close()
    rows = ingest_spans(memory.get_finished_spans())
    assert [(r["attempt"], r["status"], r["final"]) for r in rows] == [
        (1, "rate_limited", False),
        (2, "ok", True),
    ]
    assert {(r["task"], r["prompt_name"], r["prompt_version"]) for r in rows} == {
        ("summarize", "summary", "summary@3")
    }
    assert rows[1]["input_tokens"] == 300 and rows[1]["cost_usd"] > 0
    assert rows[0]["call_id"] == rows[1]["call_id"]


def test_with_content_capture_on_at_the_collector_content_is_kept_redacted(
    tracing: tuple[TracerProvider, InMemorySpanExporter], ingest_spans: Callable[..., Rows]
) -> None:
    provider, memory = tracing
    _span(
        provider,
        "openinference.instrumentation.openai",
        "ChatCompletion",
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.system": "openai",
            "llm.token_count.prompt": 10,
            "llm.token_count.completion": 2,
            "input.value": "reach me at jane.doe@example.com",
            "llm.input_messages.0.message.content": "key sk-" + "a" * 30,
        },
    )
    (row,) = ingest_spans(memory.get_finished_spans(), capture_content=True)
    kept = row["attributes"]
    assert kept["input.value"] == "reach me at [EMAIL]"
    assert kept["llm.input_messages.0.message.content"] == "key [API_KEY]"
    assert "jane.doe" not in json.dumps(row, default=str)
