"""Every billed provider request is one row, whatever shape the code around it has.

The real openai (3.x, on httpx2) and anthropic (2.x, on httpx2) SDKs and httpx itself talk
to the fake provider; the rows are read back from a real SQLite store, and every cost is
compared with genai-prices' own ``calc_price`` for the stored tokens.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import anthropic
import httpx
import openai
import pydantic
import pytest
from fake_hosts import claude_url
from genai_prices import Usage, calc_price

import llmlens
from llmlens.collector.store import open_store

if TYPE_CHECKING:
    from fake_provider import FakeProvider

MESSAGES = [{"role": "user", "content": "hello"}]


class Ticket(pydantic.BaseModel):
    title: str
    priority: Literal["low", "medium", "high"]


@pytest.fixture
def store(sqlite_url: str) -> str:
    llmlens.configure(db_url=sqlite_url)
    return sqlite_url


@pytest.fixture
def client(fake: FakeProvider) -> Iterator[openai.OpenAI]:
    # The SDK's defaults, retries included: nothing needs turning off for llmlens any more.
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test") as sdk:
        yield sdk


@pytest.fixture
def claude(fake: FakeProvider) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=claude_url(fake), api_key="test", open_telemetry=False) as sdk:
        yield sdk


def rows(url: str) -> list[dict[str, Any]]:
    assert llmlens.flush()
    return open_store(url).fetch_rows()


def price(provider: str, model: str, row: dict[str, Any]) -> float:
    usage = Usage(input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
                  cache_read_tokens=row["cache_read_tokens"] or 0, cache_write_tokens=row["cache_write_tokens"] or 0)
    return float(calc_price(usage, model_ref=model, provider_id=provider).total_price)


def assert_row(row: dict[str, Any], *, task: str | None, provider: str, model: str, tokens: tuple[int, int],
               status: str = "ok", attempt: int = 1, final: bool = True, streaming: bool = False,
               cache: tuple[int | None, int | None] | None = None) -> None:
    assert row["task"] == task
    assert (row["provider"], row["request_model"]) == (provider, model)
    assert (row["input_tokens"], row["output_tokens"]) == tokens
    if cache is not None:
        assert (row["cache_read_tokens"], row["cache_write_tokens"]) == cache
    assert (row["status"], row["attempt"], row["final"]) == (status, attempt, final)
    assert row["streaming"] is streaming
    assert (row["time_to_first_token_ms"] is not None) is streaming
    assert row["cost_usd"] == pytest.approx(price(provider, model, row), rel=1e-9)


def stream_text(stream: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_an_openai_stream_consumed_inside_the_function_is_a_priced_row(
        store: str, fake: FakeProvider, client: openai.OpenAI) -> None:
    fake.reply("one two three", input_tokens=120, output_tokens=30, cached_tokens=64)

    @llmlens.observe(task="answer", prompt_version="answer@2")
    def answer() -> str:
        return stream_text(client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))

    assert answer() == "one two three"
    (row,) = rows(store)
    assert_row(row, task="answer", provider="openai", model="gpt-4o-mini", tokens=(120, 30), streaming=True,
               cache=(64, None))
    assert row["prompt_version"] == "answer@2" and row["response_model"] == "gpt-4o-mini"
    assert row["finish_reason"] == "stop"


def test_a_generator_yielding_text_deltas_is_a_priced_row(store: str, fake: FakeProvider,
                                                          client: openai.OpenAI) -> None:
    fake.reply("a b c d", input_tokens=40, output_tokens=4)

    @llmlens.observe(task="chat_ui")
    def deltas() -> Iterator[str]:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    assert "".join(deltas()) == "a b c d"
    (row,) = rows(store)
    assert_row(row, task="chat_ui", provider="openai", model="gpt-4o-mini", tokens=(40, 4), streaming=True)


def test_the_chat_completions_stream_helper_consumed_inside_is_a_priced_row(
        store: str, fake: FakeProvider, client: openai.OpenAI) -> None:
    fake.reply("helped", input_tokens=25, output_tokens=2)

    @llmlens.observe(task="helper")
    def ask() -> str:
        with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES,
                                            stream_options={"include_usage": True}) as stream:
            return str(stream.get_final_completion().choices[0].message.content)

    assert ask() == "helped"
    (row,) = rows(store)
    assert_row(row, task="helper", provider="openai", model="gpt-4o-mini", tokens=(25, 2), streaming=True)


def test_two_requests_in_one_call_are_two_priced_rows_of_one_call(store: str, fake: FakeProvider,
                                                                  client: openai.OpenAI) -> None:
    fake.reply("draft", input_tokens=100, output_tokens=50)
    fake.reply("refined", input_tokens=900, output_tokens=300)

    @llmlens.observe(task="draft_then_refine", prompt_version="refine@1")
    def write() -> str:
        draft = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return str(client.chat.completions.create(
            model="gpt-4o", messages=[*MESSAGES, {"role": "assistant", "content": draft.choices[0].message.content}],
        ).choices[0].message.content)

    assert write() == "refined"
    first, second = rows(store)
    assert_row(first, task="draft_then_refine", provider="openai", model="gpt-4o-mini", tokens=(100, 50),
               final=False)
    assert_row(second, task="draft_then_refine", provider="openai", model="gpt-4o", tokens=(900, 300))
    assert first["call_id"] == second["call_id"] and second["call_duration_ms"] >= second["duration_ms"]
    assert first["prompt_version"] == second["prompt_version"] == "refine@1"


def test_sdk_default_retries_are_rows_of_the_same_attempt(store: str, fake: FakeProvider,
                                                          client: openai.OpenAI) -> None:
    fake.fail(429, headers={"retry-after-ms": "10"})
    fake.reply("after the wait", input_tokens=60, output_tokens=6)

    @llmlens.observe(task="patient")
    def call() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    call()
    refused, answered = rows(store)
    assert (refused["status"], refused["attempt"], refused["final"]) == ("rate_limited", 1, False)
    assert refused["cost_usd"] == 0.0 and refused["task"] == "patient"
    assert_row(answered, task="patient", provider="openai", model="gpt-4o-mini", tokens=(60, 6))
    assert refused["call_id"] == answered["call_id"]


def test_an_explicit_provider_wins_over_what_the_request_says(store: str, fake: FakeProvider,
                                                              client: openai.OpenAI) -> None:
    fake.reply("fast", input_tokens=1000, output_tokens=100)

    @llmlens.observe(task="groq_call", provider="groq")
    def call() -> Any:
        return client.chat.completions.create(model="llama-3.3-70b-versatile", messages=MESSAGES)

    call()
    (row,) = rows(store)
    assert_row(row, task="groq_call", provider="groq", model="llama-3.3-70b-versatile", tokens=(1000, 100))


def test_anthropic_messages_and_streams_count_cache_reads_and_writes(
        store: str, fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    fake.reply("plain", input_tokens=10, output_tokens=6, cache_read_tokens=300, cache_write_tokens=20)
    fake.reply("streamed answer", input_tokens=12, output_tokens=7, cache_read_tokens=200, cache_write_tokens=0)

    @llmlens.observe(task="claude")
    def both() -> str:
        plain = claude.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES)
        with claude.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES) as stream:
            text = "".join(stream.text_stream)
        return plain.content[0].text + " / " + text  # type: ignore[union-attr]

    assert both() == "plain / streamed answer"
    plain, streamed = rows(store)
    assert_row(plain, task="claude", provider="anthropic", model="claude-haiku-4-5", tokens=(330, 6),
               cache=(300, 20), final=False)
    assert_row(streamed, task="claude", provider="anthropic", model="claude-haiku-4-5", tokens=(212, 7),
               cache=(200, 0), streaming=True)
    assert plain["finish_reason"] == streamed["finish_reason"] == "stop"  # end_turn, as the conventions name it


def _openai_body(stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def test_httpx_used_directly_sync_and_async_is_captured(store: str, fake: FakeProvider) -> None:
    fake.reply("sync", input_tokens=11, output_tokens=1)
    fake.reply("async stream", input_tokens=22, output_tokens=2)

    @llmlens.observe(task="raw_httpx")
    def sync_call() -> Any:
        with httpx.Client() as http:
            return http.post(fake.url + "/v1/chat/completions", json=_openai_body()).json()

    @llmlens.observe(task="raw_httpx_async")
    async def async_call() -> str:
        async with httpx.AsyncClient() as http, http.stream(
                "POST", fake.url + "/v1/chat/completions", json=_openai_body(stream=True)) as response:
            return "".join([line async for line in response.aiter_lines()])

    assert sync_call()["usage"]["prompt_tokens"] == 11
    assert "[DONE]" in asyncio.run(async_call())
    plain, streamed = rows(store)
    assert_row(plain, task="raw_httpx", provider="openai", model="gpt-4o-mini", tokens=(11, 1))
    assert_row(streamed, task="raw_httpx_async", provider="openai", model="gpt-4o-mini", tokens=(22, 2),
               streaming=True)


def test_an_abandoned_stream_is_cancelled_with_what_was_seen(store: str, fake: FakeProvider,
                                                             claude: anthropic.Anthropic) -> None:
    fake.reply("a b c d e f g h", input_tokens=500, output_tokens=9, chunk_delay=0.01)
    fake.reply("i j k l m n o p", input_tokens=400, output_tokens=9, chunk_delay=0.01)

    def first_event(stream: Any) -> str:
        for event in stream:  # message_start: the input tokens are known, the answer is not
            return str(event.type)
        return ""

    @llmlens.observe(task="walk_away")
    def closed_early() -> str:
        stream = claude.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES, stream=True)
        try:
            return first_event(stream)
        finally:
            stream.close()

    @llmlens.observe(task="drop_it")
    def dropped() -> str:
        return first_event(claude.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES,
                                                  stream=True))

    assert closed_early() == dropped() == "message_start"
    gc.collect()
    by_task = {row["task"]: row for row in rows(store)}
    for task, tokens in (("walk_away", 500), ("drop_it", 400)):
        row = by_task[task]
        assert (row["status"], row["failure_reason"], row["final"]) == ("cancelled", "abandoned", True)
        assert row["input_tokens"] == tokens and row["response_model"] == "claude-haiku-4-5"
        assert row["cost_usd"] == pytest.approx(price("anthropic", "claude-haiku-4-5", row))


def test_a_validation_failure_lands_on_the_last_request_of_the_attempt(store: str, fake: FakeProvider,
                                                                       client: openai.OpenAI) -> None:
    fake.reply("thinking", input_tokens=50, output_tokens=10)
    fake.reply('{"title": "printer", "priority": "SUPER-URGENT"}', input_tokens=70, output_tokens=12)

    @llmlens.observe(task="extract_ticket", output=Ticket)
    def extract() -> Any:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with pytest.raises(llmlens.InvalidOutput):
        extract()
    first, last = rows(store)
    assert_row(first, task="extract_ticket", provider="openai", model="gpt-4o-mini", tokens=(50, 10), final=False)
    assert_row(last, task="extract_ticket", provider="openai", model="gpt-4o-mini", tokens=(70, 12),
               status="invalid_output")
    assert last["failure_reason"] == "priority: input should be 'low', 'medium' or 'high'"


def test_an_attempt_that_times_out_ends_its_request_row_as_timeout(store: str, fake: FakeProvider) -> None:
    fake.reply("too late", delay=3.0)

    async def main() -> None:
        async with openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="test") as sdk:

            @llmlens.observe(task="hurried", timeout=0.5)
            async def call() -> Any:
                return await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

            await call()

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    (row,) = rows(store)
    assert (row["status"], row["task"], row["final"], row["request_model"]) == ("timeout", "hurried", True,
                                                                                 "gpt-4o-mini")
    assert row["cost_usd"] == 0.0


def test_a_request_outside_any_observed_call_is_its_own_final_row(store: str, fake: FakeProvider,
                                                                  client: openai.OpenAI) -> None:
    fake.reply("unobserved", input_tokens=33, output_tokens=3)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (row,) = rows(store)
    # No task of its own (DESIGN: a request outside any observed call has none); the service keeps
    # its own column, so the row still says where it came from.
    assert_row(row, task=None, provider="openai", model="gpt-4o-mini", tokens=(33, 3))
    assert row["service_name"] == "llmlens-app"
    assert row["call_id"] == row["span_id"] and row["prompt_version"] is None


@pytest.mark.parametrize("mode", ["observed", "off"])
def test_capture_observed_records_only_observed_calls_and_off_records_none(
        sqlite_url: str, fake: FakeProvider, client: openai.OpenAI, mode: Literal["observed", "off"]) -> None:
    llmlens.configure(db_url=sqlite_url, capture=mode)

    @llmlens.observe(task="observed")
    def call() -> str:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return "text, so the decorator alone cannot see the usage"

    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    call()
    found = rows(sqlite_url)
    if mode == "observed":
        (row,) = found
        assert_row(row, task="observed", provider="openai", model="gpt-4o-mini", tokens=(12, 5))
    else:
        # Without capture the decorator's own attempt is the row, as for a client without httpx.
        (row,) = found
        assert row["task"] == "observed" and row["input_tokens"] is None


def test_record_usage_never_counts_a_request_the_http_layer_saw_a_second_time(
        store: str, fake: FakeProvider, client: openai.OpenAI) -> None:
    fake.reply("once", input_tokens=80, output_tokens=8)

    @llmlens.observe(task="belt_and_braces")
    def call() -> str:
        response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        llmlens.record_usage(response, input_tokens=80, output_tokens=8)
        return str(response.choices[0].message.content)

    assert call() == "once"
    (row,) = rows(store)
    assert_row(row, task="belt_and_braces", provider="openai", model="gpt-4o-mini", tokens=(80, 8))

