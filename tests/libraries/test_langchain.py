"""LangChain's ChatOpenAI inside an observed call: one priced row per request, each with the task.

Runs in both test environments: on openai 3.x over ``httpx2`` here, and on openai 2.x over
``httpx`` in the compat environment, so both HTTP stacks are covered by the same flows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_provider import FakeProvider
from langchain_openai import ChatOpenAI
from stored_rows import assert_priced_row, assert_timing, stored_rows

import llmlens

MODEL = "gpt-4o-mini"


@pytest.fixture
def chat(fake: FakeProvider) -> Iterator[ChatOpenAI]:
    # The SDK's default retries stay on: llmlens no longer needs them off.
    yield ChatOpenAI(model=MODEL, base_url=fake.url + "/v1", api_key="test", stream_usage=True)


def test_langchain_invoke_returning_only_the_text_is_one_priced_row_with_the_task(
        store_url: str, fake: FakeProvider, chat: ChatOpenAI) -> None:
    fake.reply("A short summary.", input_tokens=1200, output_tokens=40, cached_tokens=1024)

    @llmlens.observe(task="summarize", prompt_version="summary@2")
    def summarize(text: str) -> str:
        return str(chat.invoke(f"Summarize: {text}").content)

    assert summarize("a long document") == "A short summary."
    [row] = stored_rows(store_url)
    assert (row["task"], row["prompt_version"], row["status"]) == ("summarize", "summary@2", "ok")
    assert (row["attempt"], row["final"]) == (1, True)
    assert_priced_row(row, "openai", MODEL, input_tokens=1200, output_tokens=40, cache_read_tokens=1024)
    assert_timing(row, streaming=False)


def test_langchain_batch_of_three_is_three_priced_rows_of_one_call_all_with_the_task(
        store_url: str, fake: FakeProvider, chat: ChatOpenAI) -> None:
    for n in (1, 2, 3):
        fake.reply(f"answer {n}", input_tokens=100 * n, output_tokens=10 * n)

    @llmlens.observe(task="classify_batch")
    def classify(items: list[str]) -> list[str]:
        return [str(message.content) for message in chat.batch(items)]

    assert len(classify(["first", "second", "third"])) == 3
    rows = stored_rows(store_url)
    assert len(rows) == 3
    # The batch runs in a thread pool, so which request got which scripted answer varies.
    for row in rows:
        n = row["output_tokens"] // 10
        assert_priced_row(row, "openai", MODEL, input_tokens=100 * n, output_tokens=10 * n)
        assert_timing(row, streaming=False)
    assert sorted(r["output_tokens"] for r in rows) == [10, 20, 30]
    assert {(r["task"], r["attempt"], r["status"]) for r in rows} == {("classify_batch", 1, "ok")}
    assert len({r["call_id"] for r in rows}) == 1 and rows[0]["call_id"] is not None
    assert sum(r["final"] for r in rows) == 1, "the call is counted once, by one final row"


def test_langchain_stream_consumed_inside_the_call_is_one_streaming_row_with_usage_and_ttft(
        store_url: str, fake: FakeProvider, chat: ChatOpenAI) -> None:
    fake.reply("one two three four five", input_tokens=300, output_tokens=5, cached_tokens=256)

    @llmlens.observe(task="chat_stream")
    def answer(question: str) -> str:
        return "".join(str(chunk.content) for chunk in chat.stream(question))

    assert answer("count to five") == "one two three four five"
    [row] = stored_rows(store_url)
    assert (row["task"], row["status"], row["attempt"], row["final"]) == ("chat_stream", "ok", 1, True)
    assert_priced_row(row, "openai", MODEL, input_tokens=300, output_tokens=5, cache_read_tokens=256)
    assert_timing(row, streaming=True)
    assert fake.requests[0].body["stream_options"] == {"include_usage": True}
