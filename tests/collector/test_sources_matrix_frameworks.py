"""The source matrix, frameworks: pydantic-ai, LiteLLM, LangChain (OpenLLMetry, OpenInference), Langfuse.

Frameworks name the work (an agent, a chain, a workflow, a trace) and often trace the
request twice, once as the framework and once as the provider: each request must still
be one row, priced from its tokens, with its status and the framework's name as task.
Same set-up as ``test_sources_matrix.py``: one two-worker collector per database, every
span exported as it ends through the real OTLP exporter.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from source_matrix import Expect, app_provider, check_rows  # type: ignore[import-not-found]

from llmlens.collector.store import open_store

OPENAI = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-6"
OK, STREAM = {"input_tokens": 20, "output_tokens": 4, "cached_tokens": 8}, {"input_tokens": 30, "output_tokens": 6}


def _rows(collector: Any, service: str) -> list[dict[str, Any]]:
    return open_store(collector.extra["db_url"]).fetch_rows(service_name=service)


def _wait_for_rows(collector: Any, service: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = _rows(collector, service)
        if len(rows) >= count:
            return rows
        if time.monotonic() > deadline:
            every = open_store(collector.extra["db_url"]).fetch_rows()
            services = sorted({(r["service_name"], r["name"]) for r in every})
            raise AssertionError(f"{len(rows)} of {count} rows of {service}; the store holds {services}")
        time.sleep(0.1)


def _script(fake: Any) -> None:
    """The four answers every framework test asks for, in order."""
    fake.reply("cached answer", **OK)
    fake.reply("a streamed answer", chunk_delay=0.01, **STREAM)
    fake.fail(429)
    fake.fail(500)


def _expected(task: str, *, cached: bool = True, stream_flag: bool = True, ttft: bool = True,
              reported: bool = False, reasons: tuple[str | None, str | None] = (None, None)) -> list[Expect]:
    base = {"model": OPENAI, "provider": "openai", "task": task}
    return [
        Expect(**base, input_tokens=20, output_tokens=4, cache_read=8 if cached else None, reported_cost=reported),
        Expect(**base, input_tokens=30, output_tokens=6, streaming=stream_flag or ttft, ttft=ttft,
               reported_cost=reported),
        Expect(**base, status="rate_limited", failure_reason=reasons[0]),
        Expect(**base, status="provider_error", failure_reason=reasons[1]),
    ]


# --- pydantic-ai ---------------------------------------------------------------------------


@pytest.fixture
def pydantic_ai_instrumented() -> Iterator[Any]:
    from pydantic_ai import Agent

    yield Agent
    Agent.instrument_all(False)


def test_pydantic_ai_agent_rows_match_the_requests_with_http_statuses(
    shared_collector: Any, fake_provider: Any, pydantic_ai_instrumented: Any
) -> None:
    import openai
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    agent_class = pydantic_ai_instrumented
    _script(fake_provider)
    with app_provider(shared_collector, "src-pydantic-ai") as provider:
        agent_class.instrument_all(InstrumentationSettings(tracer_provider=provider))
        client = openai.AsyncOpenAI(base_url=fake_provider.url + "/v1", api_key="test", max_retries=0)
        agent = agent_class(OpenAIChatModel(OPENAI, provider=OpenAIProvider(openai_client=client)), name="triage")

        async def run() -> None:
            await agent.run("q1")
            async with agent.run_stream("q2") as result:
                async for _text in result.stream_text():
                    pass
            for _ in range(2):
                with pytest.raises(Exception, match="status_code"):
                    await agent.run("q3")

        asyncio.run(run())
    # pydantic-ai computes a cost of its own (operation.cost), kept apart; it marks a stream
    # only by its time to the first chunk. The failures' HTTP codes are read from messages.
    rows = _rows(shared_collector, "src-pydantic-ai")
    check_rows(rows, _expected("triage", stream_flag=False, reported=True,
                               reasons=("ModelRateLimitError", "ModelServerError")))


# --- LiteLLM ---------------------------------------------------------------------------------


@pytest.fixture
def litellm_otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import litellm

    # Without it LiteLLM writes a request's attributes onto the application's current span
    # instead of a span of its own (its documented default), so the agent span would be the row.
    monkeypatch.setenv("USE_OTEL_LITELLM_REQUEST_SPAN", "true")
    # LiteLLM copies litellm.callbacks into lists of its own on the first call; clear them
    # all, or the next test's requests would go to this test's (shut down) tracer provider.
    litellm.logging_callback_manager._reset_all_callbacks()
    yield litellm
    litellm.logging_callback_manager._reset_all_callbacks()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
# LiteLLM declares TypedDicts with ``ReadOnly`` items and pydantic warns once per class it builds
# on them (Python 3.13 has ``typing.ReadOnly``, so the warning shows there).
@pytest.mark.filterwarnings(
    r"ignore:Items? .* on TypedDict class '\w+' (is|are) using the `ReadOnly` qualifier:UserWarning")
def test_litellm_otel_callback_rows_keep_cache_reads_and_its_reported_cost(
    shared_collector: Any, fake_provider: Any, litellm_otel: Any
) -> None:
    from litellm.integrations.opentelemetry import OpenTelemetry, OpenTelemetryConfig
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    litellm = litellm_otel
    with app_provider(shared_collector, "src-litellm") as provider:
        exporter = OTLPSpanExporter(endpoint=shared_collector.traces_url, timeout=20)
        litellm.callbacks = [OpenTelemetry(config=OpenTelemetryConfig(exporter=exporter), tracer_provider=provider)]
        fake_provider.reply("cached", input_tokens=20, output_tokens=4, cache_read_tokens=100, cache_write_tokens=50)
        fake_provider.reply("a streamed answer", chunk_delay=0.01, **STREAM)
        fake_provider.fail(429)
        fake_provider.fail(500)
        app = provider.get_tracer("app")
        with app.start_as_current_span("invoke_agent support", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support"}):
            litellm.completion(model=f"anthropic/{CLAUDE}", messages=[{"role": "user", "content": "q1"}],
                               api_base=fake_provider.url, api_key="test", max_tokens=32)
            stream = litellm.completion(model=f"openai/{OPENAI}", messages=[{"role": "user", "content": "q2"}],
                                        api_base=fake_provider.url + "/v1", api_key="test", stream=True,
                                        stream_options={"include_usage": True})
            for _chunk in stream:
                pass
            for error in (litellm.RateLimitError, litellm.InternalServerError):
                with pytest.raises(error):
                    litellm.completion(model=f"openai/{OPENAI}", messages=[{"role": "user", "content": "q3"}],
                                       api_base=fake_provider.url + "/v1", api_key="test", num_retries=0,
                                       max_retries=0)
        # LiteLLM logs each request from its worker threads, after the call has returned.
        rows = _wait_for_rows(shared_collector, "src-litellm", 4)
    base = {"provider": "openai", "model": OPENAI, "task": "support"}
    # Gaps of the source: LiteLLM records the stream flag but no time to the first chunk on
    # its spans (only as a metric), and a stream's span, logged from its worker thread, has
    # lost its parent, so no ancestor can name its task.
    check_rows(rows, [
        Expect(model=CLAUDE, provider="anthropic", task="support", input_tokens=170, output_tokens=4,
               cache_read=100, cache_write=50, reported_cost=True),
        Expect(**{**base, "task": None}, input_tokens=30, output_tokens=6, streaming=True, reported_cost=True),
        Expect(**base, status="rate_limited", failure_reason="RateLimitError"),
        Expect(**base, status="provider_error", failure_reason="InternalServerError"),
    ])
    # The cache reads are priced at their own rate: below what all-uncached input would cost.
    assert rows[0]["reported_cost_usd"] == pytest.approx(rows[0]["cost_usd"], rel=0.05)


# --- LangChain -------------------------------------------------------------------------------


def _langchain_requests(fake: Any) -> None:
    import openai
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model=OPENAI, base_url=fake.url + "/v1", api_key="test",  # type: ignore[arg-type]
                       max_retries=0, stream_usage=True)
    chain = (ChatPromptTemplate.from_messages([("user", "{question}")]) | model).with_config(run_name="support-chain")
    chain.invoke({"question": "q1"})
    for _chunk in chain.stream({"question": "q2"}):
        pass
    for error in (openai.RateLimitError, openai.InternalServerError):
        with pytest.raises(error):
            chain.invoke({"question": "q3"})


@pytest.fixture
def instrumentors() -> Iterator[list[Any]]:
    active: list[Any] = []
    yield active
    for instrumentor in active:
        instrumentor.uninstrument()


_OPENLLMETRY_LANGCHAIN_APP = """
import sys, warnings
warnings.simplefilter("ignore")
sys.path[:0] = [sys.argv[3], sys.argv[3] + "/../support"]
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.instrumentation.langchain import LangchainInstrumentor
from opentelemetry.instrumentation.openai import OpenAIInstrumentor
from test_sources_matrix_frameworks import _langchain_requests

class Fake:  # the parent test scripted the fake provider; only its address is needed here
    url = sys.argv[1]
    reply = fail = lambda *a, **k: None

provider = TracerProvider(resource=Resource.create({"service.name": "src-openllmetry-langchain"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[2], timeout=20)))
LangchainInstrumentor().instrument(tracer_provider=provider)
OpenAIInstrumentor().instrument(tracer_provider=provider)
_langchain_requests(Fake())
provider.shutdown()
"""


def test_openllmetry_langchain_over_openai_makes_one_row_per_request_named_by_the_workflow(
    shared_collector: Any, fake_provider: Any
) -> None:
    _script(fake_provider)
    # In a process of its own: OpenLLMetry's LangChain instrumentation cannot be instrumented
    # again in a process once removed.
    here = str(Path(__file__).parent)
    done = subprocess.run([sys.executable, "-c", _OPENLLMETRY_LANGCHAIN_APP, fake_provider.url,
                           shared_collector.traces_url, here], timeout=120, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    # OpenLLMetry's openai instrumentation stands aside under LangChain's, whose LLM span is
    # the row; it records no stream flag or first-chunk time (a gap of the source).
    check_rows(_rows(shared_collector, "src-openllmetry-langchain"),
               _expected("support-chain", stream_flag=False, ttft=False))


def test_openinference_langchain_rows_match_the_requests_named_by_the_chain(
    shared_collector: Any, fake_provider: Any, instrumentors: list[Any]
) -> None:
    from openinference.instrumentation.langchain import LangChainInstrumentor

    # Only LangChain's instrumentor: OpenInference's openai instrumentor does not see
    # LangChain's spans as its parent (its span starts a trace of its own), so with both a
    # request would be described twice with nothing linking the two (a gap of the source).
    with app_provider(shared_collector, "src-openinference-langchain") as provider:
        instrumentor = LangChainInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        instrumentors.append(instrumentor)
        _script(fake_provider)
        _langchain_requests(fake_provider)
    # Its LLM span of a stream says "stream": false and has no first-token event (a gap).
    check_rows(_rows(shared_collector, "src-openinference-langchain"),
               _expected("support-chain", stream_flag=False, ttft=False))


# --- Langfuse --------------------------------------------------------------------------------

_LANGFUSE_APP = """
import sys
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from langfuse import Langfuse, observe
provider = TracerProvider(resource=Resource.create({"service.name": "src-langfuse"}))
langfuse = Langfuse(public_key="pk-lf-test", secret_key="sk-lf-test", base_url="http://127.0.0.1:9",
                    tracer_provider=provider, span_exporter=OTLPSpanExporter(endpoint=sys.argv[2], timeout=20))
from langfuse.openai import openai  # Langfuse's drop-in OpenAI client
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="test", max_retries=0)

@observe(name="answer-ticket")
def answer():
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "q1"}])
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "q2"}],
                                            stream=True, stream_options={"include_usage": True})
    for _ in stream:
        pass
    for error in (openai.RateLimitError, openai.InternalServerError):
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "q3"}])
        except error:
            pass

answer()
langfuse.flush()
langfuse.shutdown()
"""


def test_langfuse_generations_make_rows_named_by_the_trace(shared_collector: Any, fake_provider: Any) -> None:
    import langfuse

    _script(fake_provider)
    # In a process of its own: importing langfuse.openai patches the openai module for good.
    subprocess.run([sys.executable, "-c", _LANGFUSE_APP, fake_provider.url, shared_collector.traces_url],
                   check=True, timeout=120, capture_output=True)
    assert langfuse.__version__.split(".")[0] >= "3"
    # Langfuse records a failure's message, not its class: the HTTP code read from it is the
    # status, and the reason is the generic one.
    # Its cost details are on failed generations only (a zero; it prices the others itself).
    expected = _expected("answer-ticket", reasons=("error", "error"))
    expected[2:] = [replace(want, reported_cost=True) for want in expected[2:]]
    rows = _rows(shared_collector, "src-langfuse")
    check_rows(rows, expected)
    assert [row["reported_cost_usd"] for row in rows[2:]] == [0.0, 0.0]
