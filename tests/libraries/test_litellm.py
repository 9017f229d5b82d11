"""LiteLLM inside an observed call: each completion, streamed or not, is one priced row.

LiteLLM reaches OpenAI through the openai SDK and Anthropic through its own ``httpx``
client, so the provider of a row must come from each request, not from LiteLLM's classes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import litellm
import pytest
from fake_hosts import claude_url
from fake_provider import FakeProvider
from stored_rows import assert_priced_row, assert_timing, stored_rows

import llmlens

MESSAGES = [{"role": "user", "content": "Say hello."}]
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5"

# Third-party warnings LiteLLM itself triggers, each matched by its message:
# - it declares TypedDicts with ``ReadOnly`` items (its GitHub Copilot module, imported lazily by
#   every completion, and its message types) and pydantic warns once per class it builds on them;
# - its stream wrapper reads every field name on chunk instances, including ``model_fields`` and
#   ``model_computed_fields``, whose access on an instance pydantic deprecates.
pytestmark = [
    pytest.mark.filterwarnings(
        r"ignore:Items? .* on TypedDict class '\w+' (is|are) using the `ReadOnly` qualifier:UserWarning"),
    pytest.mark.filterwarnings(
        r"ignore:Accessing the '(model_fields|model_computed_fields)' attribute on the instance is deprecated"
        ":pydantic.warnings.PydanticDeprecatedSince211"),
]


@pytest.fixture(autouse=True)
def _main_thread_event_loop() -> Iterator[None]:
    """Give LiteLLM the event loop it asks for, and close it after the test.

    A sync completion dispatches LiteLLM's service logging through ``asyncio.get_event_loop()``
    in the calling thread: without a loop there, that creates one and never closes it (and
    Python 3.12+ warns). The leaked loop would be collected during some later test.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _complete(fake: FakeProvider, provider: str, *, stream: bool) -> str:
    """One LiteLLM completion against the fake, returning only the text (as apps do)."""
    if provider == "openai":
        target: dict[str, Any] = {"model": f"openai/{OPENAI_MODEL}", "api_base": fake.url + "/v1"}
    else:
        target = {"model": f"anthropic/{ANTHROPIC_MODEL}", "api_base": claude_url(fake)}
    if not stream:
        response: Any = litellm.completion(messages=MESSAGES, api_key="test", **target)
        return str(response.choices[0].message.content)
    chunks = litellm.completion(messages=MESSAGES, api_key="test", stream=True,
                                stream_options={"include_usage": True}, **target)
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def _script(fake: FakeProvider, provider: str) -> dict[str, int]:
    """Queue one answer; return the tokens its row must carry (input includes the cache)."""
    if provider == "openai":
        fake.reply("Hello there friend", input_tokens=900, output_tokens=4, cached_tokens=512)
        return {"input_tokens": 900, "output_tokens": 4, "cache_read_tokens": 512}
    fake.reply("Hello there friend", input_tokens=40, output_tokens=4, cache_read_tokens=800,
               cache_write_tokens=160)
    return {"input_tokens": 1000, "output_tokens": 4, "cache_read_tokens": 800, "cache_write_tokens": 160}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_litellm_completion_is_one_priced_row_with_the_task_whether_streamed_or_not(
        store_url: str, fake: FakeProvider, provider: str, stream: bool) -> None:
    tokens = _script(fake, provider)

    @llmlens.observe(task="greet", prompt_version="greet@1")
    def greet() -> str:
        return _complete(fake, provider, stream=stream)

    assert greet() == "Hello there friend"
    [row] = stored_rows(store_url)
    assert (row["task"], row["prompt_version"], row["status"]) == ("greet", "greet@1", "ok")
    assert (row["attempt"], row["final"]) == (1, True)
    model = OPENAI_MODEL if provider == "openai" else ANTHROPIC_MODEL
    assert_priced_row(row, provider, model, **tokens)
    assert_timing(row, streaming=stream)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_an_anthropic_litellm_call_after_an_openai_one_is_labelled_anthropic(
        store_url: str, fake: FakeProvider, stream: bool) -> None:
    openai_tokens = _script(fake, "openai")
    anthropic_tokens = _script(fake, "anthropic")
    later_openai_tokens = _script(fake, "openai")

    @llmlens.observe(task="compare_models")
    def compare() -> list[str]:
        return [_complete(fake, p, stream=stream) for p in ("openai", "anthropic", "openai")]

    assert compare() == ["Hello there friend"] * 3
    rows = stored_rows(store_url)
    assert [r["provider"] for r in rows] == ["openai", "anthropic", "openai"]
    assert_priced_row(rows[0], "openai", OPENAI_MODEL, **openai_tokens)
    assert_priced_row(rows[1], "anthropic", ANTHROPIC_MODEL, **anthropic_tokens)
    assert_priced_row(rows[2], "openai", OPENAI_MODEL, **later_openai_tokens)
    assert {(r["task"], r["attempt"], r["status"]) for r in rows} == {("compare_models", 1, "ok")}
    assert [r["final"] for r in rows] == [False, False, True]
    for row in rows:
        assert_timing(row, streaming=stream)
