"""Every shape of function the decorator accepts, and what the span says about it."""

from __future__ import annotations

import asyncio
import inspect
import typing
from typing import TYPE_CHECKING

import pytest

import llmlens
from llmlens import semconv as sc

if TYPE_CHECKING:
    from conftest import Spans

CHAT = {"object": "chat.completion", "id": "chatcmpl-1", "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 8},
                  "completion_tokens_details": {"reasoning_tokens": 3}}}


def test_a_sync_call_without_retry_is_one_final_attempt_span(spans: Spans) -> None:
    @llmlens.observe(task="extract_ticket", prompt_version="ticket_prompt@3")
    def extract(text: str, model: str = "gpt-4o-mini") -> dict:
        return CHAT

    assert extract("x", model="gpt-4o-mini") is CHAT
    span = spans.one()
    attrs = dict(span.attributes or {})
    assert attrs[sc.SPAN_ROLE] == "attempt" and attrs[sc.ATTEMPT] == 1 and attrs[sc.FINAL] is True
    assert attrs[sc.CALL_ID] == format(span.context.span_id, "016x")
    assert attrs[sc.TASK] == "extract_ticket"
    assert attrs[sc.PROMPT_VERSION] == "ticket_prompt@3" and attrs[sc.PROMPT_NAME] == "ticket_prompt"
    assert attrs[sc.REQUEST_MODEL] == "gpt-4o-mini"
    assert attrs[sc.RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attrs[sc.RESPONSE_ID] == "chatcmpl-1"
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (20, 7)
    assert attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 8 and attrs[sc.USAGE_REASONING_OUTPUT_TOKENS] == 3
    assert attrs[sc.STATUS] == "ok"
    assert span.name == "extract_ticket"


def test_the_bare_decorator_works_and_names_the_span_after_the_function(spans: Spans) -> None:
    @llmlens.observe
    def summarise() -> str:
        return "text"

    assert summarise() == "text"
    assert spans.one().name.endswith("summarise")


def test_an_async_call_is_recorded_with_its_usage(spans: Spans) -> None:
    @llmlens.observe(task="a", model="gpt-4o-mini", provider="openai")
    async def call() -> dict:
        await asyncio.sleep(0)
        return CHAT

    assert asyncio.run(call()) is CHAT
    attrs = spans.one().attributes or {}
    assert attrs[sc.USAGE_INPUT_TOKENS] == 20 and attrs[sc.PROVIDER_NAME] == "openai"
    assert attrs[sc.REQUEST_MODEL] == "gpt-4o-mini"


def test_wraps_keeps_name_doc_signature_and_type_hints() -> None:
    def extract(text: str, *, retries: int = 1) -> dict[str, int]:
        """Extract things."""
        return {}

    wrapped = llmlens.observe(task="t")(extract)
    assert wrapped.__name__ == "extract" and wrapped.__doc__ == "Extract things."
    assert wrapped.__wrapped__ is extract  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(extract)
    assert typing.get_type_hints(wrapped) == typing.get_type_hints(extract)


def test_the_wrapper_keeps_the_kind_of_function() -> None:
    async def a() -> None: ...
    def g():  # type: ignore[no-untyped-def]
        yield 1
    async def ag():  # type: ignore[no-untyped-def]
        yield 1

    assert inspect.iscoroutinefunction(llmlens.observe(a))
    assert inspect.isgeneratorfunction(llmlens.observe(g))
    assert inspect.isasyncgenfunction(llmlens.observe(ag))


def test_methods_classmethods_and_staticmethods_are_observed(spans: Spans) -> None:
    class Client:
        factor = 2

        @llmlens.observe(task="method")
        def method(self, x: int) -> int:
            return x * self.factor

        @llmlens.observe(task="class")
        @classmethod
        def klass(cls, x: int) -> int:
            return x * cls.factor

        @llmlens.observe(task="static")
        @staticmethod
        def static(x: int) -> int:
            return x

    client = Client()
    assert (client.method(2), Client.klass(3), client.static(4)) == (4, 6, 4)
    assert sorted(s.attributes[sc.TASK] for s in spans.llmlens()) == ["class", "method", "static"]  # type: ignore[index]


def test_a_generator_is_one_span_that_ends_when_exhausted_with_time_to_first_item(spans: Spans) -> None:
    @llmlens.observe(task="gen")
    def tokens():  # type: ignore[no-untyped-def]
        yield "a"
        assert spans.llmlens() == [], "the span must stay open while the generator runs"
        yield "b"

    assert list(tokens()) == ["a", "b"]
    attrs = spans.one().attributes or {}
    assert attrs[sc.STATUS] == "ok" and attrs[sc.REQUEST_STREAM] is True
    assert attrs[sc.RESPONSE_TIME_TO_FIRST_CHUNK] >= 0


def test_a_generator_body_runs_with_its_span_current(spans: Spans) -> None:
    from opentelemetry import trace

    seen = []

    @llmlens.observe(task="gen")
    def tokens():  # type: ignore[no-untyped-def]
        seen.append(trace.get_current_span().get_span_context().span_id)
        yield 1
        seen.append(trace.get_current_span().get_span_context().span_id)
        yield 2

    list(tokens())
    assert seen == [spans.one().context.span_id] * 2


def test_a_generator_that_raises_ends_with_the_classified_status(spans: Spans) -> None:
    @llmlens.observe(task="gen")
    def tokens():  # type: ignore[no-untyped-def]
        yield 1
        raise TimeoutError("slow")

    with pytest.raises(TimeoutError):
        list(tokens())
    attrs = spans.one().attributes or {}
    assert attrs[sc.STATUS] == "timeout" and attrs[sc.FAILURE_REASON] == "TimeoutError"


def test_a_generator_closed_early_ends_as_cancelled(spans: Spans) -> None:
    @llmlens.observe(task="gen")
    def tokens():  # type: ignore[no-untyped-def]
        yield 1
        yield 2

    gen = tokens()
    next(gen)
    gen.close()
    assert spans.one().attributes[sc.STATUS] == "cancelled"  # type: ignore[index]


def test_send_reaches_the_wrapped_generator(spans: Spans) -> None:
    @llmlens.observe
    def echo():  # type: ignore[no-untyped-def]
        received = yield "ready"
        yield f"got {received}"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("x") == "got x"


def test_a_function_returning_a_generator_keeps_its_span_open_until_exhausted(spans: Spans) -> None:
    @llmlens.observe(task="returns-gen")
    def make():  # type: ignore[no-untyped-def]
        return (c for c in "ab")

    gen = make()
    assert spans.llmlens() == []
    assert list(gen) == ["a", "b"]
    assert spans.one().attributes[sc.STATUS] == "ok"  # type: ignore[index]


def test_an_async_generator_is_one_span_and_ends_when_exhausted(spans: Spans) -> None:
    @llmlens.observe(task="agen")
    async def tokens():  # type: ignore[no-untyped-def]
        yield "a"
        await asyncio.sleep(0)
        yield "b"

    async def consume() -> list[str]:
        return [t async for t in tokens()]

    assert asyncio.run(consume()) == ["a", "b"]
    attrs = spans.one().attributes or {}
    assert attrs[sc.STATUS] == "ok" and sc.RESPONSE_TIME_TO_FIRST_CHUNK in attrs


def test_an_async_generator_closed_early_ends_as_cancelled(spans: Spans) -> None:
    @llmlens.observe(task="agen")
    async def tokens():  # type: ignore[no-untyped-def]
        for i in range(10):
            yield i

    async def consume() -> None:
        gen = tokens()
        await gen.__anext__()
        await gen.aclose()

    asyncio.run(consume())
    assert spans.one().attributes[sc.STATUS] == "cancelled"  # type: ignore[index]


def test_record_usage_fills_in_what_the_return_value_does_not_say(spans: Spans) -> None:
    @llmlens.observe(task="custom")
    def call() -> str:
        llmlens.record_usage(input_tokens=100, output_tokens=10, cache_read_tokens=40, model="my-model",
                             provider="my-provider", finish_reason="stop")
        return "plain text"

    assert call() == "plain text"
    attrs = spans.one().attributes or {}
    assert attrs[sc.USAGE_INPUT_TOKENS] == 100 and attrs[sc.USAGE_OUTPUT_TOKENS] == 10
    assert attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 40
    assert attrs[sc.REQUEST_MODEL] == "my-model" and attrs[sc.PROVIDER_NAME] == "my-provider"
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",)


def test_record_usage_wins_over_the_response_and_accepts_a_response(spans: Spans) -> None:
    @llmlens.observe
    def call() -> dict:
        llmlens.record_usage({"type": "message", "model": "claude-x", "usage": {"input_tokens": 5, "output_tokens": 1}},
                             output_tokens=2)
        return CHAT

    call()
    attrs = spans.one().attributes or {}
    assert attrs[sc.USAGE_INPUT_TOKENS] == 5 and attrs[sc.USAGE_OUTPUT_TOKENS] == 2
    assert attrs[sc.RESPONSE_MODEL] == "claude-x"


def test_record_usage_inside_a_generator_reaches_its_span(spans: Spans) -> None:
    @llmlens.observe
    def gen():  # type: ignore[no-untyped-def]
        yield "x"
        llmlens.record_usage(input_tokens=3, output_tokens=4)

    list(gen())
    assert spans.one().attributes[sc.USAGE_OUTPUT_TOKENS] == 4  # type: ignore[index]


def test_record_usage_outside_an_observed_call_does_nothing(spans: Spans) -> None:
    llmlens.record_usage(input_tokens=1)
    assert spans.all() == []


def test_nested_observed_calls_are_spans_of_their_own(spans: Spans) -> None:
    @llmlens.observe(task="inner")
    def inner() -> dict:
        return CHAT

    @llmlens.observe(task="outer")
    def outer() -> dict:
        return inner()

    outer()
    by_task = {s.attributes[sc.TASK]: s for s in spans.llmlens()}  # type: ignore[index]
    assert by_task["inner"].parent.span_id == by_task["outer"].context.span_id  # type: ignore[union-attr]
    assert sc.MERGED_INTO not in (by_task["inner"].attributes or {})


def test_idempotency_key_is_recorded(spans: Spans) -> None:
    @llmlens.observe(idempotency_key="order-42")
    def call() -> str:
        return ""

    call()
    assert spans.one().attributes[sc.IDEMPOTENCY_KEY] == "order-42"  # type: ignore[index]


def test_a_key_function_is_applied_to_a_call_without_retries(spans: Spans) -> None:
    @llmlens.observe(idempotency_key=lambda order: f"order-{order}")
    def call(order: int) -> str:
        return ""

    call(7)
    assert spans.one().attributes[sc.IDEMPOTENCY_KEY] == "order-7"  # type: ignore[index]


def test_a_broken_key_function_does_not_break_the_call(spans: Spans) -> None:
    @llmlens.observe(idempotency_key=lambda order: 1 / 0)
    def call(order: int) -> str:
        return "answer"

    assert call(7) == "answer"
    assert sc.IDEMPOTENCY_KEY not in (spans.one().attributes or {})


def test_invalid_decorator_arguments_fail_at_definition_time() -> None:
    with pytest.raises(ValueError):
        llmlens.observe(timeout=0)
    with pytest.raises(ValueError):
        llmlens.RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError):
        llmlens.RetryPolicy(retry_on=frozenset({"cancelled"}))
    with pytest.raises(TypeError):
        llmlens.observe(output=42)(lambda: None)


def test_an_async_generator_that_outlives_its_timeout_is_cut_off_for_real(spans: Spans) -> None:
    @llmlens.observe(task="agen", timeout=0.1)
    async def tokens():  # type: ignore[no-untyped-def]
        yield "a"
        await asyncio.sleep(5)
        yield "b"

    async def consume() -> list[str]:
        return [t async for t in tokens()]

    with pytest.raises(TimeoutError):
        asyncio.run(consume())
    assert spans.one().attributes[sc.STATUS] == "timeout"  # type: ignore[index]


def test_a_sync_call_is_never_interrupted_by_its_timeout(spans: Spans) -> None:
    import time

    @llmlens.observe(timeout=0.01)
    def slow() -> str:
        time.sleep(0.05)
        return "paid for, so returned"

    assert slow() == "paid for, so returned"
    assert spans.one().attributes[sc.STATUS] == "ok"  # type: ignore[index]


def test_an_explicit_provider_wins_over_the_one_the_response_class_implies(spans: Spans) -> None:
    class ChatCompletion:  # what the openai SDK returns for a Groq endpoint, as far as its module says
        __module__ = "openai.types.chat.chat_completion"
        object = "chat.completion"
        model = "llama-3.3-70b-versatile"
        id = "x"
        choices = ()
        usage = None

    @llmlens.observe(task="groq", provider="groq")
    def call() -> ChatCompletion:
        return ChatCompletion()

    call()
    assert spans.one().attributes[sc.PROVIDER_NAME] == "groq"  # type: ignore[index]

