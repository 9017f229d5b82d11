"""Real openai and anthropic clients against the fake provider: plain calls and streams."""

from __future__ import annotations

import asyncio
import gc
from typing import TYPE_CHECKING, Any

import anthropic
import openai
import pytest
from fake_hosts import claude_url

import llmlens
from llmlens import semconv as sc

if TYPE_CHECKING:
    from conftest import Spans
    from fake_provider import FakeProvider

MESSAGES = [{"role": "user", "content": "hello"}]


def _attrs(spans: Spans) -> dict[str, Any]:
    return dict(spans.one().attributes or {})


def test_openai_chat_completion_records_tokens_model_and_provider(spans: Spans, fake: FakeProvider,
                                                                  openai_client: openai.OpenAI) -> None:
    fake.reply("hi", input_tokens=30, output_tokens=4, cached_tokens=10, reasoning_tokens=2)

    @llmlens.observe(task="chat")
    def call() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert call().choices[0].message.content == "hi"
    attrs = _attrs(spans)
    assert attrs[sc.PROVIDER_NAME] == "openai" and attrs[sc.RESPONSE_MODEL] == "gpt-4o-mini"
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (30, 4)
    assert attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 10 and attrs[sc.USAGE_REASONING_OUTPUT_TOKENS] == 2


def test_openai_responses_api_records_tokens(spans: Spans, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    fake.reply("hi", input_tokens=30, output_tokens=9, cached_tokens=5, reasoning_tokens=4)

    @llmlens.observe(task="responses")
    def call() -> Any:
        return openai_client.responses.create(model="gpt-4.1-mini", input="hello")

    assert call().output_text == "hi"
    attrs = _attrs(spans)
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (30, 9)
    assert attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 5 and attrs[sc.USAGE_REASONING_OUTPUT_TOKENS] == 4


def test_an_openai_stream_keeps_the_span_open_until_consumed_and_reads_the_usage_chunk(
        spans: Spans, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    fake.reply("one two three", input_tokens=11, output_tokens=3)

    @llmlens.observe(task="stream")
    def call() -> openai.Stream[Any]:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                     stream_options={"include_usage": True})

    stream = call()
    assert isinstance(stream, openai.Stream)
    assert spans.llmlens() == []
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "one two three"
    attrs = _attrs(spans)
    assert attrs[sc.STATUS] == "ok" and attrs[sc.REQUEST_STREAM] is True
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (11, 3)
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert 0 <= attrs[sc.RESPONSE_TIME_TO_FIRST_CHUNK] < 5


def test_an_openai_stream_used_as_a_context_manager_and_left_early_is_cancelled(
        spans: Spans, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    fake.reply("a b c d e f")

    @llmlens.observe(task="stream")
    def call() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)

    with call() as stream:
        next(iter(stream))
    attrs = _attrs(spans)
    assert attrs[sc.STATUS] == "cancelled" and attrs[sc.FAILURE_REASON] == "abandoned"


def test_a_stream_dropped_unread_ends_as_cancelled_when_collected(
        spans: Spans, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    @llmlens.observe(task="stream")
    def call() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)

    stream = call()
    next(stream)
    del stream
    gc.collect()
    assert _attrs(spans)[sc.STATUS] == "cancelled"


def test_async_openai_call(spans: Spans, fake: FakeProvider) -> None:
    fake.reply("x", input_tokens=7, output_tokens=1)

    @llmlens.observe(task="async")
    async def call() -> Any:
        async with openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
            return await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    asyncio.run(call())
    attrs = _attrs(spans)
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS], attrs[sc.STATUS]) == (7, 1, "ok")


def test_an_async_openai_stream_returned_to_the_caller_is_traced(spans: Spans, fake: FakeProvider) -> None:
    fake.reply("y z", input_tokens=8, output_tokens=2)
    client = openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0)

    @llmlens.observe(task="astream")
    async def call() -> openai.AsyncStream[Any]:
        return await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                    stream_options={"include_usage": True})

    async def main() -> None:
        stream = await call()
        assert isinstance(stream, openai.AsyncStream)
        assert [c async for c in stream]
        await client.close()

    asyncio.run(main())
    attrs = _attrs(spans)
    assert attrs[sc.USAGE_INPUT_TOKENS] == 8 and attrs[sc.STATUS] == "ok"


def test_anthropic_message_counts_cache_reads_and_writes_as_input(
        spans: Spans, fake: FakeProvider, anthropic_client: anthropic.Anthropic) -> None:
    fake.reply("hi", input_tokens=10, output_tokens=4, cache_read_tokens=200, cache_write_tokens=50)

    @llmlens.observe(task="claude")
    def call() -> Any:
        return anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES)

    call()
    attrs = _attrs(spans)
    assert attrs[sc.PROVIDER_NAME] == "anthropic" and attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.USAGE_INPUT_TOKENS] == 260
    assert attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 200 and attrs[sc.USAGE_CACHE_WRITE_INPUT_TOKENS] == 50


def test_anthropic_raw_stream_reads_usage_from_start_and_delta_events(
        spans: Spans, fake: FakeProvider, anthropic_client: anthropic.Anthropic) -> None:
    fake.reply("a b", input_tokens=10, output_tokens=9, cache_read_tokens=5)

    @llmlens.observe(task="claude-stream")
    def call() -> Any:
        return anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES,
                                                stream=True)

    events = [e.type for e in call()]
    assert events[-1] == "message_stop"
    attrs = _attrs(spans)
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (15, 9)
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",) and sc.RESPONSE_TIME_TO_FIRST_CHUNK in attrs


def test_anthropic_message_stream_helper_through_text_stream(
        spans: Spans, fake: FakeProvider, anthropic_client: anthropic.Anthropic) -> None:
    fake.reply("a b c", input_tokens=10, output_tokens=3, cache_write_tokens=4)

    @llmlens.observe(task="claude-helper")
    def call() -> Any:
        return anthropic_client.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES)

    manager = call()
    assert isinstance(manager, anthropic.lib.streaming.MessageStreamManager)
    with manager as stream:
        assert "".join(stream.text_stream) == "a b c"
        assert stream.get_final_message().usage.output_tokens == 3
    attrs = _attrs(spans)
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (14, 3)
    assert attrs[sc.STATUS] == "ok"


def test_anthropic_message_stream_left_early_is_cancelled(
        spans: Spans, fake: FakeProvider, anthropic_client: anthropic.Anthropic) -> None:
    fake.reply("a b c d e f g")

    @llmlens.observe(task="claude-helper")
    def call() -> Any:
        return anthropic_client.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES)

    with call() as stream:
        for _event in stream:
            break
    assert _attrs(spans)[sc.STATUS] == "cancelled"


def test_async_anthropic_call_and_message_stream(spans: Spans, fake: FakeProvider) -> None:
    fake.reply("x", input_tokens=3, output_tokens=1, cache_read_tokens=1)
    fake.reply("y", input_tokens=4, output_tokens=2, cache_read_tokens=1)
    client = anthropic.AsyncAnthropic(base_url=claude_url(fake), api_key="test", max_retries=0,
                                      open_telemetry=False)

    @llmlens.observe(task="aclaude")
    async def call() -> Any:
        return await client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)

    @llmlens.observe(task="aclaude-stream")
    def stream() -> Any:
        return client.messages.stream(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)

    async def main() -> None:
        await call()
        async with stream() as s:
            assert await s.get_final_text() == "y"
        await client.close()

    asyncio.run(main())
    tokens = {s.attributes[sc.TASK]: s.attributes[sc.USAGE_INPUT_TOKENS] for s in spans.rows()}  # type: ignore[index]
    assert tokens == {"aclaude": 4, "aclaude-stream": 5}


def test_a_sync_stream_still_read_after_the_timeout_is_closed_with_timeout(
        spans: Spans, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    fake.reply("a b c d e f", chunk_delay=0.05)

    @llmlens.observe(task="slow-stream", timeout=0.12)
    def call() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)

    with pytest.raises(TimeoutError):
        for _chunk in call():
            pass
    assert _attrs(spans)[sc.STATUS] == "timeout"


def test_an_anthropic_stream_dropped_half_read_is_cancelled_without_waiting_for_the_cycle_collector(
        spans: Spans, fake: FakeProvider, anthropic_client: anthropic.Anthropic) -> None:
    fake.reply("a b c d e f g h")

    @llmlens.observe(task="claude-stream")
    def call() -> Any:
        return anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES,
                                                stream=True)

    gc.disable()
    try:
        stream = call()
        next(stream)
        del stream
        attrs = _attrs(spans)
    finally:
        gc.enable()
    assert attrs[sc.STATUS] == "cancelled"


def test_a_sync_function_returning_an_async_call_is_recorded_when_awaited(spans: Spans, fake: FakeProvider) -> None:
    fake.reply("x", input_tokens=21, output_tokens=2)
    client = openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0)

    @llmlens.observe(task="deferred")
    def call() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    async def main() -> None:
        response = await call()
        assert response.choices[0].message.content == "x"
        await client.close()

    asyncio.run(main())
    attrs = _attrs(spans)
    assert attrs[sc.USAGE_INPUT_TOKENS] == 21 and attrs[sc.STATUS] == "ok"


def test_the_openai_chat_stream_helper_is_traced_until_the_block_ends(
        spans: Spans, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    fake.reply("a b c", input_tokens=13, output_tokens=3)

    @llmlens.observe(task="helper")
    def call() -> Any:
        return openai_client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES,
                                                     stream_options={"include_usage": True})

    with call() as stream:
        assert spans.llmlens() == []
        for _event in stream:
            pass
        assert stream.get_final_completion().choices[0].message.content == "a b c"
    attrs = _attrs(spans)
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS], attrs[sc.STATUS]) == (13, 3, "ok")
