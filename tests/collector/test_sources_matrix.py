"""The source matrix, provider-level instrumentations: real packages, real exporters, a running collector.

Each test runs one instrumentation the way an application does (its own tracer provider,
the real OTLP exporter, the real ``openai`` or ``anthropic`` SDK against the fake provider)
and makes the same four requests: one with cached input, one streamed, one answered 429,
one answered 500. All four run inside an application span that names the work (an agent,
an OpenLLMetry workflow, an OpenInference chain) and, since every span is exported as it
ends, reaches the collector after the rows it names. One collector process per database
serves the module (``shared_collector``), with two workers, so a span and its ancestor
may also be written by different processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from source_matrix import Expect, app_provider, check_rows  # type: ignore[import-not-found]

from llmlens.collector.store import open_store

OPENAI = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-6"


def _rows(collector: Any, service: str) -> list[dict[str, Any]]:
    return open_store(collector.extra["db_url"]).fetch_rows(service_name=service)


def _openai_requests(fake: Any) -> None:
    import openai

    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0)
    fake.reply("cached answer", input_tokens=20, output_tokens=4, cached_tokens=8)
    client.chat.completions.create(model=OPENAI, messages=[{"role": "user", "content": "q1"}])
    fake.reply("a streamed answer", input_tokens=30, output_tokens=6, chunk_delay=0.01)
    stream = client.chat.completions.create(model=OPENAI, messages=[{"role": "user", "content": "q2"}],
                                            stream=True, stream_options={"include_usage": True})
    for _chunk in stream:
        pass
    for code, error in ((429, openai.RateLimitError), (500, openai.InternalServerError)):
        fake.fail(code)
        with pytest.raises(error):
            client.chat.completions.create(model=OPENAI, messages=[{"role": "user", "content": "q3"}])
    client.close()


def _anthropic_requests(client: Any, fake: Any) -> None:
    import anthropic

    fake.reply("cached answer", input_tokens=20, output_tokens=4, cache_read_tokens=100, cache_write_tokens=50)
    client.messages.create(model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "q1"}])
    fake.reply("a streamed answer", input_tokens=30, output_tokens=6, chunk_delay=0.01)
    with client.messages.stream(model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "q2"}]) as stream:
        for _text in stream.text_stream:
            pass
    for code, error in ((429, anthropic.RateLimitError), (500, anthropic.InternalServerError)):
        fake.fail(code)
        with pytest.raises(error):
            client.messages.create(model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "q3"}])
    client.close()


def _openai_expected(task: str, *, stream_flag: bool = True, ttft: bool = True, cached: bool = True,
                     reasons: tuple[str, str] = ("RateLimitError", "InternalServerError")) -> list[Expect]:
    base = {"model": OPENAI, "provider": "openai", "task": task}
    return [
        Expect(**base, input_tokens=20, output_tokens=4, cache_read=8 if cached else None),
        Expect(**base, input_tokens=30, output_tokens=6, streaming=stream_flag or ttft, ttft=ttft),
        Expect(**base, status="rate_limited", failure_reason=reasons[0]),
        Expect(**base, status="provider_error", failure_reason=reasons[1]),
    ]


def _anthropic_expected(task: str, *, streamed: bool = True, streamed_output: int = 6,
                        reasons: tuple[str, str] = ("RateLimitError", "InternalServerError")) -> list[Expect]:
    base = {"model": CLAUDE, "provider": "anthropic", "task": task}
    return [
        # Conventions: input includes cache reads and writes (20 uncached + 100 + 50).
        Expect(**base, input_tokens=170, output_tokens=4, cache_read=100, cache_write=50),
        Expect(**base, input_tokens=30, output_tokens=streamed_output, streaming=streamed, ttft=streamed),
        Expect(**base, status="rate_limited", failure_reason=reasons[0]),
        Expect(**base, status="provider_error", failure_reason=reasons[1]),
    ]


def _agent(provider: Any, name: str) -> AbstractContextManager[Any]:
    """An application's GenAI agent span (conventions' ``invoke_agent``): names, is not a request."""
    return provider.get_tracer("app").start_as_current_span(  # type: ignore[no-any-return]
        f"invoke_agent {name}", attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name})


@pytest.fixture
def instrumented() -> Iterator[Callable[[Any, Any], None]]:
    """``instrumented(instrumentor, provider)``: instrument for one test, uninstrument after."""
    active: list[Any] = []

    def instrument(instrumentor: Any, provider: Any) -> None:
        instrumentor.instrument(tracer_provider=provider)
        active.append(instrumentor)

    yield instrument
    for instrumentor in active:
        instrumentor.uninstrument()


def test_official_openai_v2_rows_match_the_requests(
    shared_collector: Any, fake_provider: Any, instrumented: Callable[[Any, Any], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    with app_provider(shared_collector, "src-openai-v2") as provider:
        instrumented(OpenAIInstrumentor(), provider)
        with _agent(provider, "refunds"):
            _openai_requests(fake_provider)
    # openai-v2 2.4b0 records neither the stream flag, the time to the first chunk, nor
    # cached tokens (gaps of the source, listed in the README).
    check_rows(_rows(shared_collector, "src-openai-v2"),
               _openai_expected("refunds", stream_flag=False, ttft=False, cached=False))


# OpenLLMetry's own modules still use pydantic's class-based config; the warning is theirs.
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
def test_openllmetry_openai_rows_match_the_requests_and_take_the_workflow_name(
    shared_collector: Any, fake_provider: Any, instrumented: Callable[[Any, Any], None]
) -> None:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    with app_provider(shared_collector, "src-openllmetry-openai") as provider:
        instrumented(OpenAIInstrumentor(), provider)
        # What traceloop-sdk's @workflow puts on its span.
        workflow = {"traceloop.span.kind": "workflow", "traceloop.entity.name": "refunds",
                    "traceloop.workflow.name": "refunds"}
        with provider.get_tracer("traceloop.tracer").start_as_current_span("refunds.workflow",
                                                                            attributes=workflow):
            _openai_requests(fake_provider)
    # TTFT from its first chunk event.
    check_rows(_rows(shared_collector, "src-openllmetry-openai"), _openai_expected("refunds"))


@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
def test_openllmetry_anthropic_rows_match_the_requests_with_cache_tokens(
    shared_collector: Any, fake_provider: Any, instrumented: Callable[[Any, Any], None]
) -> None:
    import anthropic
    from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor

    with app_provider(shared_collector, "src-openllmetry-anthropic") as provider:
        instrumented(AnthropicInstrumentor(), provider)
        with _agent(provider, "summaries"):
            client = anthropic.Anthropic(base_url=fake_provider.url, api_key="test", max_retries=0)
            _anthropic_requests(client, fake_provider)
    # Gaps of the source (0.62): a messages.stream() span has no stream flag and no time to
    # the first chunk, and its output count adds message_start's token to the final count.
    check_rows(_rows(shared_collector, "src-openllmetry-anthropic"),
               _anthropic_expected("summaries", streamed=False, streamed_output=7))


def test_openinference_openai_rows_match_the_requests_and_take_the_chain_name(
    shared_collector: Any, fake_provider: Any, instrumented: Callable[[Any, Any], None]
) -> None:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    with app_provider(shared_collector, "src-openinference-openai") as provider:
        instrumented(OpenAIInstrumentor(), provider)
        chain = {"openinference.span.kind": "CHAIN"}
        with provider.get_tracer("app").start_as_current_span("triage-chain", attributes=chain):
            _openai_requests(fake_provider)
    check_rows(_rows(shared_collector, "src-openinference-openai"), _openai_expected("triage-chain"))


def test_the_anthropic_sdks_own_spans_over_grpc_match_the_requests(
    shared_collector: Any, fake_provider: Any
) -> None:
    import anthropic

    with app_provider(shared_collector, "src-anthropic-sdk", grpc=True) as provider:
        client = anthropic.Anthropic(base_url=fake_provider.url, api_key="test", max_retries=0,
                                     open_telemetry={"tracer_provider": provider})
        with _agent(provider, "drafts"):
            _anthropic_requests(client, fake_provider)
    # The SDK's error.type is the API's error type, a stable short string.
    check_rows(_rows(shared_collector, "src-anthropic-sdk"),
               _anthropic_expected("drafts", reasons=("rate_limit_error", "api_error")))


def _json_span(span_id: str, parent: str | None, name: str, start_ms: int, end_ms: int,
               attributes: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    """A span as OTLP/JSON from a non-Python SDK: hex ids, 64-bit integers as strings."""
    def value(v: Any) -> dict[str, Any]:
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        if isinstance(v, float):
            return {"doubleValue": v}
        if isinstance(v, list):
            return {"arrayValue": {"values": [value(item) for item in v]}}
        return {"stringValue": v}

    base = 1_780_000_000_000_000_000
    span = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": span_id, "name": name, "kind": 3,
            "startTimeUnixNano": str(base + start_ms * 1_000_000), "endTimeUnixNano": str(base + end_ms * 1_000_000),
            "attributes": [{"key": k, "value": value(v)} for k, v in attributes.items()],
            "status": status or {}}
    if parent:
        span["parentSpanId"] = parent
    return span


def test_plain_genai_spans_as_json_from_another_sdk_match_and_take_an_earlier_batchs_agent_name(
    shared_collector: Any,
) -> None:
    import httpx

    def send(*spans: dict[str, Any]) -> None:
        body = {"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "src-json"}}]},
            "scopeSpans": [{"scope": {"name": "genai-dotnet"}, "spans": list(spans)}]}]}
        assert httpx.post(shared_collector.traces_url, json=body, timeout=20).status_code == 200

    chat = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": OPENAI}
    # The agent span first, alone (a distributed trace: another service exported it earlier).
    send(_json_span("a1a1a1a1a1a1a1a1", None, "invoke_agent planner", 0, 10_000,
                    {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}))
    send(
        _json_span("b1b1b1b1b1b1b1b1", "a1a1a1a1a1a1a1a1", "chat", 100, 900, {
            **chat, "gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 4,
            "gen_ai.usage.cache_read.input_tokens": 8}),
        _json_span("b2b2b2b2b2b2b2b2", "a1a1a1a1a1a1a1a1", "chat", 1000, 1900, {
            **chat, "gen_ai.usage.input_tokens": 30, "gen_ai.usage.output_tokens": 6,
            "gen_ai.request.stream": True, "gen_ai.response.time_to_first_chunk": 0.2}),
        _json_span("b3b3b3b3b3b3b3b3", "a1a1a1a1a1a1a1a1", "chat", 2000, 2100, {
            **chat, "error.type": "429", "http.response.status_code": 429}, {"code": 2}),
        _json_span("b4b4b4b4b4b4b4b4", "a1a1a1a1a1a1a1a1", "chat", 3000, 3100, {**chat},
                   {"code": "STATUS_CODE_ERROR", "message": "HTTP 500 from upstream"}),
        # An application span that merely names a model is not a request.
        _json_span("c1c1c1c1c1c1c1c1", "a1a1a1a1a1a1a1a1", "load settings", 4000, 4100,
                   {"gen_ai.request.model": OPENAI, "app.setting": "model"}),
    )
    base = {"model": OPENAI, "provider": "openai", "task": "planner"}
    check_rows(_rows(shared_collector, "src-json"), [
        Expect(**base, input_tokens=20, output_tokens=4, cache_read=8),
        Expect(**base, input_tokens=30, output_tokens=6, streaming=True, ttft=True),
        Expect(**base, status="rate_limited", failure_reason="429"),
        Expect(**base, status="provider_error", failure_reason="error"),
    ])
