"""What lands in the store: one row per provider request, through the real SDKs and the real exporter.

These are the issue's "must show" cases, read back with ``open_store(url).fetch_rows()``.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Literal

import anthropic
import openai
import pydantic
import pytest
from fake_hosts import claude_url
from opentelemetry.sdk.trace import TracerProvider

import llmlens
from llmlens.collector.queries import summary
from llmlens.collector.store import open_store

if TYPE_CHECKING:
    from fake_provider import FakeProvider

MESSAGES = [{"role": "user", "content": "hello"}]


class Ticket(pydantic.BaseModel):
    title: str
    priority: Literal["low", "medium", "high"]


@pytest.fixture
def store_url(sqlite_url: str, provider: TracerProvider) -> str:
    llmlens.configure(db_url=sqlite_url, tracer_provider=provider)
    return sqlite_url


def _rows(url: str) -> list[dict[str, Any]]:
    assert llmlens.flush()
    return open_store(url).fetch_rows()


def _openai_calls(client: openai.OpenAI) -> tuple[Any, Any]:
    @llmlens.observe(task="extract_ticket", prompt_version="ticket_prompt@3")
    def plain() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    @llmlens.observe(task="stream_ticket", prompt_version="ticket_prompt@4")
    def streamed() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                              stream_options={"include_usage": True})

    return plain, streamed


def test_openai_sync_plain_and_streaming_calls_are_rows_with_tokens_model_task_and_status(
        store_url: str, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    fake.reply("a", input_tokens=100, output_tokens=20, cached_tokens=40)
    fake.reply("b c", input_tokens=50, output_tokens=5)
    plain, streamed = _openai_calls(openai_client)
    plain()
    assert list(streamed())
    rows = {r["task"]: r for r in _rows(store_url)}
    assert set(rows) == {"extract_ticket", "stream_ticket"}
    first, second = rows["extract_ticket"], rows["stream_ticket"]
    assert (first["input_tokens"], first["output_tokens"], first["cache_read_tokens"]) == (100, 20, 40)
    assert (first["response_model"], first["provider"], first["status"]) == ("gpt-4o-mini", "openai", "ok")
    assert first["prompt_version"] == "ticket_prompt@3" and first["final"] is True and first["attempt"] == 1
    assert first["cost_usd"] is not None and first["cost_usd"] > 0
    assert (second["input_tokens"], second["output_tokens"], second["status"]) == (50, 5, "ok")
    assert second["streaming"] is True and second["time_to_first_token_ms"] is not None
    assert second["prompt_version"] == "ticket_prompt@4"


def test_openai_async_plain_and_streaming_calls_are_rows(store_url: str, fake: FakeProvider) -> None:
    fake.reply("a", input_tokens=11, output_tokens=2)
    fake.reply("b", input_tokens=12, output_tokens=3)
    client = openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0)

    @llmlens.observe(task="async_plain", prompt_version="p@1")
    async def plain() -> Any:
        return await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    @llmlens.observe(task="async_stream", prompt_version="p@1")
    async def streamed() -> Any:
        return await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                    stream_options={"include_usage": True})

    async def main() -> None:
        await plain()
        async for _chunk in await streamed():
            pass
        await client.close()

    asyncio.run(main())
    rows = {r["task"]: r for r in _rows(store_url)}
    assert (rows["async_plain"]["input_tokens"], rows["async_plain"]["status"]) == (11, "ok")
    assert (rows["async_stream"]["input_tokens"], rows["async_stream"]["output_tokens"]) == (12, 3)
    assert rows["async_stream"]["streaming"] is True


def test_anthropic_sync_and_async_plain_and_streaming_calls_are_rows_with_cache_tokens(
        store_url: str, fake: FakeProvider, anthropic_client: anthropic.Anthropic) -> None:
    for _ in range(4):
        fake.reply("hi there", input_tokens=10, output_tokens=6, cache_read_tokens=300, cache_write_tokens=20)
    aclient = anthropic.AsyncAnthropic(base_url=claude_url(fake), api_key="test", max_retries=0,
                                       open_telemetry=False)

    @llmlens.observe(task="claude_plain", prompt_version="c@1")
    def plain() -> Any:
        return anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES)

    @llmlens.observe(task="claude_stream", prompt_version="c@1")
    def streamed() -> Any:
        return anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES,
                                                stream=True)

    @llmlens.observe(task="claude_async", prompt_version="c@1")
    async def aplain() -> Any:
        return await aclient.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES)

    @llmlens.observe(task="claude_async_stream", prompt_version="c@1")
    async def astreamed() -> Any:
        return await aclient.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES,
                                             stream=True)

    async def amain() -> None:
        await aplain()
        async for _event in await astreamed():
            pass
        await aclient.close()

    plain()
    list(streamed())
    asyncio.run(amain())
    rows = _rows(store_url)
    assert sorted(r["task"] for r in rows) == ["claude_async", "claude_async_stream", "claude_plain", "claude_stream"]
    for row in rows:
        assert (row["input_tokens"], row["output_tokens"]) == (330, 6), row["task"]
        assert (row["cache_read_tokens"], row["cache_write_tokens"]) == (300, 20)
        assert (row["provider"], row["response_model"], row["status"]) == ("anthropic", "claude-haiku-4-5", "ok")
        assert row["cost_usd"] is not None
    assert {r["task"]: r["streaming"] for r in rows}["claude_stream"] is True


def test_a_429_retried_then_ok_is_one_call_and_two_rows_with_the_wasted_attempt_visible(
        store_url: str, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    fake.fail(429, headers={"retry-after": "0.05"})
    fake.reply("ok", input_tokens=100, output_tokens=10)

    @llmlens.observe(task="extract_ticket", prompt_version="ticket_prompt@3",
                     retry=llmlens.RetryPolicy(max_retries=2, base_delay=0.0))
    def extract() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    extract()
    rows = sorted(_rows(store_url), key=lambda r: r["attempt"])
    assert len(rows) == 2
    first, second = rows
    assert (first["attempt"], first["status"], first["final"]) == (1, "rate_limited", False)
    assert (second["attempt"], second["status"], second["final"]) == (2, "ok", True)
    assert first["call_id"] == second["call_id"] is not None
    assert sum(1 for r in rows if r["final"]) == 1, "the call counts once"
    assert second["call_duration_ms"] >= 50
    assert all(r["task"] == "extract_ticket" and r["prompt_version"] == "ticket_prompt@3" for r in rows)
    # A refused request is not billed: a known zero, not an unknown (NULL) cost.
    assert first["cost_usd"] == 0.0 and second["cost_usd"] > 0
    totals = summary(open_store(store_url).engine)
    assert (totals["calls"], totals["requests"], totals["retried_calls"]) == (1, 2, 1)
    assert totals["spend_usd"] == pytest.approx(second["cost_usd"])
    assert totals["wasted_spend_usd"] == 0.0 and totals["unpriced_requests"] == 0


def test_an_attempt_retried_for_invalid_output_is_billed_and_shows_as_wasted_spend(
        store_url: str, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    fake.reply('{"title": "printer", "priority": "SUPER-URGENT"}', input_tokens=1000, output_tokens=200)
    fake.reply('{"title": "printer", "priority": "high"}', input_tokens=1000, output_tokens=200)

    @llmlens.observe(task="extract_ticket", output=Ticket,
                     retry=llmlens.RetryPolicy(max_retries=1, base_delay=0.0,
                                               retry_on=frozenset({"invalid_output"})))
    def extract() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    extract()
    assert llmlens.current_output(Ticket).priority == "high"
    first, second = sorted(_rows(store_url), key=lambda r: r["attempt"])
    assert (first["status"], first["final"], second["status"], second["final"]) == (
        "invalid_output", False, "ok", True)
    assert first["cost_usd"] == pytest.approx(0.00027)  # 1000 in, 200 out on gpt-4o-mini
    totals = summary(open_store(store_url).engine)
    assert (totals["calls"], totals["requests"], totals["failed_calls"]) == (1, 2, 0)
    assert totals["spend_usd"] == pytest.approx(2 * 0.00027)
    assert totals["wasted_spend_usd"] == pytest.approx(first["cost_usd"])


def test_a_validation_failure_is_invalid_output_and_no_output_text_reaches_the_store(
        store_url: str, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    fake.reply('{"title": "SECRET-TITLE-TEXT", "priority": "SUPER-URGENT"}', input_tokens=40, output_tokens=12)

    @llmlens.observe(task="extract_ticket", output=Ticket)
    def extract() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with pytest.raises(llmlens.InvalidOutput):
        extract()
    (row,) = _rows(store_url)
    assert row["status"] == "invalid_output"
    assert row["failure_reason"] == "priority: input should be 'low', 'medium' or 'high'"
    assert row["input_tokens"] == 40
    dumped = json.dumps(row, default=str)
    assert "SECRET-TITLE-TEXT" not in dumped and "SUPER-URGENT" not in dumped


def test_with_capture_on_a_prompt_with_an_email_and_a_card_number_is_stored_redacted(
        sqlite_url: str, provider: TracerProvider, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    llmlens.configure(db_url=sqlite_url, tracer_provider=provider, capture_content=True)

    @llmlens.observe(task="support")
    def answer(messages: list[dict[str, str]]) -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=messages)

    answer(messages=[{"role": "user", "content": "I am jane.doe@example.com, card 4111 1111 1111 1111"}])
    (row,) = _rows(sqlite_url)
    dumped = json.dumps(row, default=str)
    assert "jane.doe@example.com" not in dumped and "4111 1111" not in dumped
    assert "[EMAIL]" in dumped and "[CARD]" in dumped
    assert row["prompt_hash"]
