"""The status taxonomy from real SDK errors, retries with backoff and Retry-After, and timeouts."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import anthropic
import openai
import pytest
from fake_hosts import claude_url

import llmlens
from llmlens import semconv as sc
from llmlens._retry import RetryPolicy, retry_after_seconds

if TYPE_CHECKING:
    from conftest import Spans
    from fake_provider import FakeProvider

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(("status", "expected", "exception"), [
    (429, "rate_limited", "RateLimitError"),
    (500, "provider_error", "InternalServerError"),
    (503, "provider_error", "InternalServerError"),
    (400, "client_error", "BadRequestError"),
    (401, "client_error", "AuthenticationError"),
])
def test_openai_http_errors_map_to_the_taxonomy_and_pass_through_unchanged(
        spans: Spans, fake: FakeProvider, openai_client: openai.OpenAI, status: int, expected: str,
        exception: str) -> None:
    fake.fail(status)

    @llmlens.observe(task="t")
    def call() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with pytest.raises(openai.APIStatusError) as caught:
        call()
    assert type(caught.value).__name__ == exception and caught.value.status_code == status
    row = spans.one().attributes or {}
    assert row[sc.STATUS] == expected and row[sc.HTTP_STATUS_CODE] == status and row[sc.FINAL] is True
    # The attempt (the row's context) records the exception the caller got.
    (span,) = spans.attempts()
    attrs = span.attributes or {}
    assert attrs[sc.STATUS] == expected and attrs[sc.FAILURE_REASON] == exception
    assert attrs[sc.ERROR_TYPE] == exception
    assert span.status.is_ok is False
    assert [e.name for e in span.events] == ["exception"]
    # The SDK's message echoes the response body: not recorded with capture off.
    assert "scripted failure" not in str(span.events[0].attributes)


@pytest.mark.parametrize(("status", "expected"), [(529, "provider_error"), (429, "rate_limited"),
                                                  (400, "client_error")])
def test_anthropic_errors_map_to_the_taxonomy(spans: Spans, fake: FakeProvider,
                                              anthropic_client: anthropic.Anthropic, status: int,
                                              expected: str) -> None:
    fake.fail(status)

    @llmlens.observe(task="t")
    def call() -> Any:
        return anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)

    with pytest.raises(anthropic.APIStatusError):
        call()
    assert spans.one().attributes[sc.STATUS] == expected  # type: ignore[index]


def test_an_sdk_timeout_is_a_timeout(spans: Spans, fake: FakeProvider) -> None:
    fake.reply("late", delay=0.5)
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0, timeout=0.1)

    @llmlens.observe(task="t")
    def call() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with pytest.raises(openai.APITimeoutError):
        call()
    client.close()
    assert spans.one().attributes[sc.STATUS] == "timeout"  # type: ignore[index]


def test_the_async_timeout_cancels_the_call_for_real(spans: Spans, fake: FakeProvider) -> None:
    # The answer would come after 30 s; the provider stops waiting once the client hangs up.
    fake.reply("late", delay=30.0)

    @llmlens.observe(task="t", timeout=0.1)
    async def call() -> Any:
        async with openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:
            return await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(call())
    # Raised without waiting for the answer: not a measure of speed, so a busy machine passes.
    assert time.monotonic() - started < 30
    attrs = spans.one().attributes or {}
    assert attrs[sc.STATUS] == "timeout" and attrs[sc.FAILURE_REASON] == "TimeoutError"


def test_a_cancelled_task_is_cancelled(spans: Spans) -> None:
    @llmlens.observe(task="t")
    async def call() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(call())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    attrs = spans.one().attributes or {}
    assert attrs[sc.STATUS] == "cancelled" and attrs[sc.FAILURE_REASON] == "CancelledError"


def test_an_unknown_exception_is_error_and_is_the_same_object(spans: Spans) -> None:
    boom = KeyError("x")

    @llmlens.observe
    def call() -> None:
        raise boom

    with pytest.raises(KeyError) as caught:
        call()
    assert caught.value is boom
    assert spans.one().attributes[sc.STATUS] == "error"  # type: ignore[index]


def test_a_429_with_retry_after_is_retried_as_a_second_attempt_under_one_call(
        spans: Spans, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    fake.fail(429, headers={"retry-after": "0.05"})
    fake.reply("ok", input_tokens=10, output_tokens=2)

    @llmlens.observe(task="t", retry=RetryPolicy(max_retries=2, base_delay=0.0), idempotency_key=lambda q: f"k-{q}")
    def call(q: str) -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    started = time.monotonic()
    call("a")
    assert time.monotonic() - started >= 0.05, "Retry-After must be honoured"
    all_spans = spans.llmlens()
    logical = [s for s in all_spans if s.attributes[sc.SPAN_ROLE] == "call"]  # type: ignore[index]
    # One request per attempt here: the request rows carry what the attempts decided.
    attempts = sorted(spans.rows(), key=lambda s: s.attributes[sc.ATTEMPT])  # type: ignore[index]
    assert len(logical) == 1 and len(attempts) == 2
    call_id = format(logical[0].context.span_id, "016x")
    first, second = (dict(a.attributes or {}) for a in attempts)
    assert (first[sc.STATUS], first[sc.FINAL], first[sc.ATTEMPT]) == ("rate_limited", False, 1)
    assert (second[sc.STATUS], second[sc.FINAL], second[sc.ATTEMPT]) == ("ok", True, 2)
    assert first[sc.CALL_ID] == second[sc.CALL_ID] == call_id
    assert second[sc.RETRY_REASON] == "rate_limited" and sc.RETRY_REASON not in first
    assert first[sc.IDEMPOTENCY_KEY] == second[sc.IDEMPOTENCY_KEY] == "k-a"
    assert second[sc.CALL_DURATION_MS] >= 50 and sc.CALL_DURATION_MS not in first
    assert second[sc.USAGE_INPUT_TOKENS] == 10 and first[sc.MAX_ATTEMPTS] == 3
    parent = dict(logical[0].attributes or {})
    assert (parent[sc.STATUS], parent[sc.ATTEMPT]) == ("ok", 2)
    assert sc.USAGE_INPUT_TOKENS not in parent, "the logical span must not carry tokens"
    attempt_spans = spans.attempts()
    assert len(attempt_spans) == 2
    assert all(a.parent.span_id == logical[0].context.span_id for a in attempt_spans)  # type: ignore[union-attr]
    assert all(sc.USAGE_INPUT_TOKENS not in (a.attributes or {}) for a in attempt_spans)


def test_retries_stop_at_the_cap_and_the_last_error_is_raised(spans: Spans, fake: FakeProvider,
                                                              openai_client: openai.OpenAI) -> None:
    for _ in range(3):
        fake.fail(500)

    @llmlens.observe(task="t", retry=RetryPolicy(max_retries=2, base_delay=0.001))
    def call() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with pytest.raises(openai.InternalServerError):
        call()
    for kind in (spans.attempts(), spans.rows()):
        assert sorted((a.attributes[sc.ATTEMPT], a.attributes[sc.FINAL]) for a in kind) == [  # type: ignore[index]
            (1, False), (2, False), (3, True)]
    assert len(fake.requests) == 3


def test_statuses_not_in_retry_on_are_not_retried(spans: Spans, fake: FakeProvider,
                                                  openai_client: openai.OpenAI) -> None:
    fake.fail(400)

    @llmlens.observe(retry=3)
    def call() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with pytest.raises(openai.BadRequestError):
        call()
    assert len(fake.requests) == 1


def test_a_retry_after_longer_than_max_delay_ends_the_retries(fake: FakeProvider, spans: Spans,
                                                              openai_client: openai.OpenAI) -> None:
    fake.fail(429, headers={"retry-after": "120"})

    @llmlens.observe(retry=RetryPolicy(max_retries=2, max_delay=1.0))
    def call() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with pytest.raises(openai.RateLimitError):
        call()
    assert len(fake.requests) == 1


def test_async_retries_with_anthropic_overloaded(spans: Spans, fake: FakeProvider) -> None:
    fake.fail(529, headers={"retry-after-ms": "10"})
    fake.reply("fine", input_tokens=3, output_tokens=1)

    @llmlens.observe(task="a", retry=RetryPolicy(max_retries=1, base_delay=0.0))
    async def call() -> Any:
        async with anthropic.AsyncAnthropic(base_url=claude_url(fake), api_key="test", max_retries=0,
                                            open_telemetry=False) as client:
            return await client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)

    asyncio.run(call())
    statuses = sorted((s.attributes[sc.SPAN_ROLE], s.attributes.get(sc.ATTEMPT), s.attributes[sc.STATUS])  # type: ignore[index,union-attr]
                      for s in spans.llmlens())
    assert statuses == [("attempt", 1, "provider_error"), ("attempt", 2, "ok"), ("call", 2, "ok"),
                        ("request", 1, "provider_error"), ("request", 2, "ok")]


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(max_retries=5, base_delay=1.0, max_delay=5.0)
    assert policy.delay(1, rand=lambda: 1.0) == 1.0
    assert policy.delay(3, rand=lambda: 1.0) == 4.0
    assert policy.delay(5, rand=lambda: 1.0) == 5.0
    assert policy.delay(3, rand=lambda: 0.0) == 0.0
    assert RetryPolicy(jitter=False, base_delay=0.5).delay(2) == 1.0


def test_retry_after_is_read_from_seconds_milliseconds_and_http_dates() -> None:
    class Response:
        def __init__(self, headers: dict[str, str]) -> None:
            self.headers = headers

    class Error(Exception):
        def __init__(self, headers: dict[str, str]) -> None:
            self.response = Response(headers)

    assert retry_after_seconds(Error({"retry-after": "2"})) == 2.0
    assert retry_after_seconds(Error({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    assert retry_after_seconds(Error({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}), now=1445412480.0) == 10.0
    assert retry_after_seconds(Error({"retry-after": "soon"})) is None
    assert retry_after_seconds(ValueError()) is None
    assert RetryPolicy(base_delay=0).delay(1, Error({"retry-after": "0.3"})) == 0.3


def test_an_async_attempt_that_times_out_is_retried_and_the_retry_succeeds(spans: Spans, fake: FakeProvider) -> None:
    fake.reply("late", delay=3.0)
    fake.reply("fast", input_tokens=4, output_tokens=1)

    async def main() -> Any:
        # The client is made outside the attempts: only the requests race the deadline.
        async with openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0) as client:

            @llmlens.observe(task="t", timeout=1.0, retry=RetryPolicy(max_retries=1, base_delay=0.0))
            async def call() -> Any:
                return await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

            return await call()

    assert asyncio.run(main()).choices[0].message.content == "fast"
    attempts = sorted((s.attributes[sc.ATTEMPT], s.attributes[sc.STATUS])  # type: ignore[index]
                      for s in spans.llmlens() if s.attributes[sc.SPAN_ROLE] == "attempt")  # type: ignore[index]
    assert attempts == [(1, "timeout"), (2, "ok")]
    # Each attempt's request is its row: the cut-off one ends as the attempt's timeout.
    assert sorted((r.attributes[sc.ATTEMPT], r.attributes[sc.STATUS]) for r in spans.rows()) == [  # type: ignore[index]
        (1, "timeout"), (2, "ok")]


def test_a_stream_returned_by_a_retried_call_ends_the_call_when_consumed(
        spans: Spans, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    fake.fail(503)
    fake.reply("a b", input_tokens=6, output_tokens=2)

    @llmlens.observe(task="t", retry=RetryPolicy(max_retries=1, base_delay=0.0))
    def call() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                     stream_options={"include_usage": True})

    stream = call()
    assert [s for s in spans.llmlens() if s.attributes[sc.SPAN_ROLE] == "call"] == []  # type: ignore[index]
    list(stream)
    by_role = {(s.attributes[sc.SPAN_ROLE], s.attributes.get(sc.ATTEMPT)): s.attributes for s in spans.llmlens()}  # type: ignore[index,union-attr]
    assert by_role[("request", 2)][sc.USAGE_INPUT_TOKENS] == 6 and by_role[("request", 2)][sc.FINAL] is True
    assert by_role[("request", 1)][sc.STATUS] == "provider_error" and by_role[("request", 1)][sc.FINAL] is False
    assert by_role[("call", 2)][sc.STATUS] == "ok"


def test_http_library_errors_are_classified_by_name_for_httpx_and_httpx2() -> None:
    import httpx
    import httpx2

    from llmlens._status import classify_exception

    for module in (httpx, httpx2):
        assert classify_exception(module.ReadTimeout("slow"))[0] == "timeout"
        assert classify_exception(module.ConnectError("refused"))[0] == "provider_error"
    assert classify_exception(TimeoutError())[0] == "timeout"  # what asyncio.timeout raises
    assert classify_exception(asyncio.CancelledError()) == ("cancelled", "CancelledError")


def test_a_connection_failure_is_a_provider_error(spans: Spans) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again on exit: nothing listens there
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="test", max_retries=0)

    @llmlens.observe
    def call() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with pytest.raises(openai.APIConnectionError):
        call()
    client.close()
    assert spans.one().attributes[sc.STATUS] == "provider_error"  # type: ignore[index]
