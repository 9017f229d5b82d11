"""A pydantic-ai agent inside an observed call: one row per provider request, with or without
pydantic-ai's own OpenTelemetry instrumentation between the decorator and the request.

pydantic-ai's spans (``invoke_agent``, ``chat <model>``) carry usage of their own; they go to
the app's tracer provider and must neither add rows nor take the task away from them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fake_provider import FakeProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic_ai import Agent, InstrumentationSettings, ModelRetry
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from stored_rows import assert_priced_row, assert_timing, stored_rows

import llmlens

MODEL = "gpt-4o-mini"


@pytest.fixture(params=[False, True], ids=["uninstrumented", "instrumented"])
def app_spans(request: pytest.FixtureRequest) -> Iterator[InMemorySpanExporter | None]:
    """With ``instrumented``, pydantic-ai traces every agent into the app's own provider."""
    if not request.param:
        yield None
        return
    exporter = InMemorySpanExporter()
    app_provider = TracerProvider()
    app_provider.add_span_processor(SimpleSpanProcessor(exporter))
    Agent.instrument_all(InstrumentationSettings(tracer_provider=app_provider))
    try:
        yield exporter
    finally:
        Agent.instrument_all(False)
        app_provider.shutdown()


def _agent(fake: FakeProvider) -> Agent[None, str]:
    provider = OpenAIProvider(base_url=fake.url + "/v1", api_key="test")
    return Agent(OpenAIChatModel(MODEL, provider=provider), instructions="Answer in one line.")


def _assert_app_got_its_own_spans(app_spans: InMemorySpanExporter | None, model_requests: int) -> None:
    if app_spans is None:
        return
    names = [span.name for span in app_spans.get_finished_spans()]
    assert names.count(f"chat {MODEL}") == model_requests, names
    assert any(name.startswith("invoke_agent") for name in names), names


def test_a_pydantic_ai_agent_run_is_one_priced_row_per_request_with_the_task(
        store_url: str, fake: FakeProvider, app_spans: InMemorySpanExporter | None) -> None:
    fake.reply("Paris.", input_tokens=2100, output_tokens=3, cached_tokens=2048)
    agent = _agent(fake)

    @llmlens.observe(task="capital", prompt_version="capital@1")
    async def capital(country: str) -> str:
        return (await agent.run(f"Capital of {country}?")).output

    assert asyncio.run(capital("France")) == "Paris."
    [row] = stored_rows(store_url)
    assert (row["task"], row["prompt_version"], row["status"]) == ("capital", "capital@1", "ok")
    assert (row["attempt"], row["final"]) == (1, True)
    assert_priced_row(row, "openai", MODEL, input_tokens=2100, output_tokens=3, cache_read_tokens=2048)
    assert_timing(row, streaming=False)
    _assert_app_got_its_own_spans(app_spans, model_requests=1)


def test_a_pydantic_ai_output_retry_is_two_priced_rows_of_one_attempt_with_the_task(
        store_url: str, fake: FakeProvider, app_spans: InMemorySpanExporter | None) -> None:
    fake.reply("paris", input_tokens=500, output_tokens=2)
    fake.reply("Paris", input_tokens=540, output_tokens=2)
    agent = _agent(fake)

    @agent.output_validator
    def capitalised(answer: str) -> str:
        if not answer[:1].isupper():
            raise ModelRetry("Start with a capital letter.")
        return answer

    @llmlens.observe(task="capital")
    async def capital() -> str:
        return (await agent.run("Capital of France?")).output

    assert asyncio.run(capital()) == "Paris"
    rows = stored_rows(store_url)
    assert len(rows) == len(fake.requests) == 2
    assert_priced_row(rows[0], "openai", MODEL, input_tokens=500, output_tokens=2)
    assert_priced_row(rows[1], "openai", MODEL, input_tokens=540, output_tokens=2)
    assert {(r["task"], r["attempt"], r["status"]) for r in rows} == {("capital", 1, "ok")}
    assert [r["final"] for r in rows] == [False, True]
    _assert_app_got_its_own_spans(app_spans, model_requests=2)


def test_a_streamed_pydantic_ai_agent_run_is_one_streaming_row_with_usage_and_ttft(
        store_url: str, fake: FakeProvider, app_spans: InMemorySpanExporter | None) -> None:
    fake.reply("Paris is the capital.", input_tokens=700, output_tokens=5)
    agent = _agent(fake)

    @llmlens.observe(task="capital_stream")
    async def capital() -> str:
        async with agent.run_stream("Capital of France?") as result:
            return "".join([delta async for delta in result.stream_text(delta=True)])

    assert asyncio.run(capital()) == "Paris is the capital."
    [row] = stored_rows(store_url)
    assert (row["task"], row["status"], row["attempt"], row["final"]) == ("capital_stream", "ok", 1, True)
    assert_priced_row(row, "openai", MODEL, input_tokens=700, output_tokens=5)
    assert_timing(row, streaming=True)
    _assert_app_got_its_own_spans(app_spans, model_requests=1)
