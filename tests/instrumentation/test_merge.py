"""No double counting: provider SDK spans under an observed call merge into its row.

The anthropic SDK traces itself whenever it has a tracer provider; the official OpenAI
instrumentation does when it is installed. Either way a call wrapped in ``@observe``
must be exactly one row, with the decorator's task and the provider's tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anthropic
import openai
import pytest
from fake_hosts import claude_url
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmlens
from llmlens import semconv as sc
from llmlens.collector.store import open_store

if TYPE_CHECKING:
    from conftest import Spans
    from fake_provider import FakeProvider

MESSAGES = [{"role": "user", "content": "hello"}]
ANTHROPIC_SCOPE = "com.anthropic.sdk.python"


@pytest.fixture
def traced_anthropic(fake: FakeProvider, provider: TracerProvider) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=claude_url(fake), api_key="test", max_retries=0,
                             open_telemetry={"tracer_provider": provider}) as client:
        yield client


@pytest.fixture
def openai_instrumented(provider: TracerProvider) -> Iterator[None]:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def test_anthropic_native_span_is_marked_merged_into_the_captured_request(
        spans: Spans, fake: FakeProvider, traced_anthropic: anthropic.Anthropic) -> None:
    fake.reply("hi", input_tokens=10, output_tokens=3, cache_read_tokens=100, cache_write_tokens=5)

    @llmlens.observe(task="claude")
    def call() -> Any:
        return traced_anthropic.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)

    call()
    everything = spans.all()
    native = [s for s in everything if s.instrumentation_scope.name == ANTHROPIC_SCOPE]  # type: ignore[union-attr]
    assert len(native) == 1, "the SDK's own tracing must be on in this test"
    request = spans.one()
    (attempt,) = spans.attempts()
    # attempt -> the SDK's span -> the HTTP request: the request is the leaf and the row.
    assert native[0].parent.span_id == attempt.context.span_id  # type: ignore[union-attr]
    assert request.parent.span_id == native[0].context.span_id  # type: ignore[union-attr]
    assert native[0].attributes[sc.MERGED_INTO] == format(request.context.span_id, "016x")  # type: ignore[index]
    assert request.attributes[sc.USAGE_INPUT_TOKENS] == native[0].attributes[sc.USAGE_INPUT_TOKENS] == 115  # type: ignore[index]
    assert request.attributes[sc.TASK] == "claude" and attempt.attributes[sc.REQUESTS] == 1  # type: ignore[index]


def test_a_function_returning_plain_text_still_gets_the_requests_facts_on_its_row(
        spans: Spans, fake: FakeProvider, traced_anthropic: anthropic.Anthropic) -> None:
    fake.reply("hi", input_tokens=10, output_tokens=3, cache_read_tokens=7)

    @llmlens.observe(task="claude")
    def call() -> str:
        # Returns plain text: the decorator sees no usage; the captured request has it.
        return traced_anthropic.messages.create(model="claude-haiku-4-5", max_tokens=5,
                                                messages=MESSAGES).content[0].text  # type: ignore[union-attr]

    assert call() == "hi"
    attrs = spans.one().attributes or {}
    assert attrs[sc.USAGE_INPUT_TOKENS] == 17 and attrs[sc.USAGE_OUTPUT_TOKENS] == 3
    assert attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 7
    assert attrs[sc.REQUEST_MODEL] == "claude-haiku-4-5" and attrs[sc.PROVIDER_NAME] == "anthropic"
    assert attrs[sc.SERVER_ADDRESS] == "localhost" and attrs[sc.TASK] == "claude"


def test_anthropic_native_tracing_gives_exactly_one_row_per_request_with_the_decorators_task(
        sqlite_url: str, provider: TracerProvider, fake: FakeProvider, traced_anthropic: anthropic.Anthropic) -> None:
    llmlens.configure(db_url=sqlite_url, tracer_provider=provider)
    fake.reply("a", input_tokens=10, output_tokens=4, cache_read_tokens=200, cache_write_tokens=30)
    fake.reply("b c", input_tokens=10, output_tokens=4, cache_read_tokens=200, cache_write_tokens=30)
    fake.reply("d", input_tokens=10, output_tokens=4, cache_read_tokens=200, cache_write_tokens=30)

    @llmlens.observe(task="triage", prompt_version="triage@2")
    def plain() -> Any:
        return traced_anthropic.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)

    @llmlens.observe(task="triage_stream", prompt_version="triage@2")
    def streamed() -> Any:
        return traced_anthropic.messages.stream(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)

    plain()
    with streamed() as stream:
        stream.until_done()
    aclient = anthropic.AsyncAnthropic(base_url=claude_url(fake), api_key="test", max_retries=0,
                                       open_telemetry={"tracer_provider": provider})

    @llmlens.observe(task="triage_async", prompt_version="triage@2")
    async def aplain() -> Any:
        return await aclient.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)

    async def amain() -> None:
        await aplain()
        await aclient.close()

    asyncio.run(amain())
    assert llmlens.flush()
    rows = open_store(sqlite_url).fetch_rows()
    assert sorted(r["task"] for r in rows) == ["triage", "triage_async", "triage_stream"]
    for row in rows:
        assert row["prompt_version"] == "triage@2"
        assert (row["input_tokens"], row["output_tokens"]) == (240, 4)
        assert (row["cache_read_tokens"], row["cache_write_tokens"]) == (200, 30)
        assert row["cost_usd"] is not None and row["status"] == "ok"


def test_official_openai_instrumentation_gives_exactly_one_row_per_request(
        sqlite_url: str, provider: TracerProvider, fake: FakeProvider, openai_instrumented: None) -> None:
    llmlens.configure(db_url=sqlite_url, tracer_provider=provider)
    fake.reply("a", input_tokens=70, output_tokens=7, cached_tokens=20)
    fake.reply("b c", input_tokens=80, output_tokens=8)
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0)

    @llmlens.observe(task="summary", prompt_version="summary@1")
    def plain() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    @llmlens.observe(task="summary_stream", prompt_version="summary@1")
    def streamed() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                              stream_options={"include_usage": True})

    plain()
    for _chunk in streamed():
        pass
    client.close()
    assert llmlens.flush()
    rows = {r["task"]: r for r in open_store(sqlite_url).fetch_rows()}
    assert set(rows) == {"summary", "summary_stream"}
    assert (rows["summary"]["input_tokens"], rows["summary"]["output_tokens"]) == (70, 7)
    assert rows["summary"]["cache_read_tokens"] == 20
    assert (rows["summary_stream"]["input_tokens"], rows["summary_stream"]["output_tokens"]) == (80, 8)
    assert all(r["prompt_version"] == "summary@1" and r["status"] == "ok" for r in rows.values())


def test_the_openai_instrumentation_span_is_merged(spans: Spans, fake: FakeProvider,
                                                   openai_instrumented: None) -> None:
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0)

    @llmlens.observe(task="t")
    def call() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    call()
    client.close()
    others = [s for s in spans.all() if s.instrumentation_scope.name != "llmlens"]  # type: ignore[union-attr]
    assert others, "the OpenAI instrumentation must be active in this test"
    ours = spans.one()
    assert all(s.attributes[sc.MERGED_INTO] == format(ours.context.span_id, "016x") for s in others)  # type: ignore[index]


def test_a_provider_span_outside_an_observed_call_is_merged_into_the_request_row_or_left_alone_when_not_captured(
        spans: Spans, fake: FakeProvider, traced_anthropic: anthropic.Anthropic, provider: TracerProvider) -> None:
    traced_anthropic.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)
    native = [s for s in spans.all() if s.instrumentation_scope.name == ANTHROPIC_SCOPE]  # type: ignore[union-attr]
    request = spans.one()
    assert sc.TASK not in (request.attributes or {})
    assert native[0].attributes[sc.MERGED_INTO] == format(request.context.span_id, "016x")  # type: ignore[index]

    observed_only = InMemorySpanExporter()
    llmlens.configure(tracer_provider=provider, exporter=observed_only, capture="observed")
    traced_anthropic.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)
    assert llmlens.flush()
    (native_only,) = observed_only.get_finished_spans()
    assert sc.MERGED_INTO not in (native_only.attributes or {})


# OpenLLMetry's models still use pydantic v1-style config.
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
def test_a_stream_behind_openllmetrys_proxy_is_still_traced_and_its_span_merged(
        spans: Spans, fake: FakeProvider, provider: TracerProvider) -> None:
    module = pytest.importorskip("opentelemetry.instrumentation.openai")
    fake.reply("a b", input_tokens=31, output_tokens=2)
    instrumentor = module.OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0)
    try:
        @llmlens.observe(task="proxied")
        def call() -> Any:
            return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                  stream_options={"include_usage": True})

        stream = call()
        assert type(stream).__name__ != "Stream", "the proxy must be in the way for this test"
        list(stream)
    finally:
        instrumentor.uninstrument()
        client.close()
    ours = spans.one()
    assert ours.attributes[sc.USAGE_INPUT_TOKENS] == 31  # type: ignore[index]
    others = [s for s in spans.all() if s.instrumentation_scope.name != "llmlens"]  # type: ignore[union-attr]
    assert others and all(s.attributes.get(sc.MERGED_INTO) for s in others)  # type: ignore[union-attr]
