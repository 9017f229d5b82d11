"""The HTTP hooks themselves: what they patch, when, and that the application never notices them."""

from __future__ import annotations

import asyncio
import contextvars
import gzip
import json
import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import httpx2
import openai
import pytest

import llmlens
from llmlens import _hooks
from llmlens import semconv as sc

if TYPE_CHECKING:
    from conftest import Spans
    from fake_provider import FakeProvider

MESSAGES = [{"role": "user", "content": "hello"}]
CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 17, "completion_tokens": 2}}


def test_configure_hooks_both_libraries_and_reset_puts_them_back() -> None:
    originals = {lib: lib.Client._send_single_request for lib in (httpx, httpx2)}
    llmlens.configure(exporter=_memory())
    assert _hooks.installed() == ["httpx", "httpx2"]
    assert all(lib.Client._send_single_request is not originals[lib] for lib in (httpx, httpx2))
    llmlens.configure(exporter=_memory())  # idempotent: still one layer
    assert httpx.Client._send_single_request.__llmlens_original__ is originals[httpx]  # type: ignore[attr-defined]
    llmlens.configure(exporter=_memory(), capture="off")
    assert _hooks.installed() == []
    assert all(lib.Client._send_single_request is originals[lib] for lib in (httpx, httpx2))


def test_a_library_imported_after_configure_is_hooked_when_it_loads(tmp_path: Any) -> None:
    script = ("import sys, llmlens; llmlens.configure(db_url='sqlite:///' + sys.argv[1]);"
              "assert 'httpx2' not in sys.modules; import httpx2;"
              "print(hasattr(httpx2.AsyncClient._send_single_request, '__llmlens_original__'))")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.db")], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "True"


def test_a_client_created_before_configure_is_captured(fake: FakeProvider) -> None:
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test")
    memory = _memory()
    llmlens.configure(exporter=memory)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.close()
    assert llmlens.flush()
    (span,) = memory.get_finished_spans()
    assert span.attributes[sc.SPAN_ROLE] == "request" and span.attributes[sc.USAGE_INPUT_TOKENS] == 12  # type: ignore[index]


def test_a_gzip_response_through_a_custom_transport_is_read_and_the_app_gets_its_bytes(spans: Spans) -> None:
    body = json.dumps(CHAT).encode()
    packed = gzip.compress(body)

    class Chunks(httpx.SyncByteStream):  # arrives in pieces, as from a socket
        def __iter__(self) -> Any:
            yield packed[:10]
            yield packed[10:]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip", "content-type": "application/json"},
                              stream=Chunks())

    @llmlens.observe(task="gzip")
    def call() -> Any:
        with httpx.Client(transport=httpx.MockTransport(handler)) as http:
            return http.post("https://api.openai.com/v1/chat/completions",
                             json={"model": "gpt-4o-mini", "messages": MESSAGES})

    response = call()
    assert response.content == body and response.json() == CHAT
    attrs = spans.one().attributes or {}
    assert (attrs[sc.PROVIDER_NAME], attrs[sc.SERVER_ADDRESS], attrs[sc.TASK]) == ("openai", "api.openai.com", "gzip")
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (17, 2)


def test_a_response_llmlens_cannot_parse_reaches_the_app_untouched(spans: Spans) -> None:
    garbage = b"data: {not json\n\ndata: [DONE]\n\n"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=garbage)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        response = http.post("https://api.openai.com/v1/chat/completions",
                             json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True})
    assert response.content == garbage
    attrs = spans.one().attributes or {}
    assert attrs[sc.STATUS] == "ok" and sc.USAGE_INPUT_TOKENS not in attrs


def test_requests_that_are_not_to_a_model_api_are_left_alone(spans: Spans, fake: FakeProvider) -> None:
    with httpx.Client() as http:
        http.post(fake.url + "/v1/files", content=b"x")
        http.get(fake.url + "/v1/chat/completions")
    assert spans.llmlens() == []


def test_a_thread_pool_fan_out_belongs_to_the_call_when_the_context_is_propagated(
        spans: Spans, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    def summarise(doc: str) -> str:
        return str(openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                   .choices[0].message.content)

    @llmlens.observe(task="summarise_all")
    def summarise_all(docs: list[str]) -> list[str]:
        with ThreadPoolExecutor(max_workers=3) as pool:
            helper = list(pool.map(llmlens.propagate(summarise), docs))
            context = contextvars.copy_context()
            by_hand = [pool.submit(context.copy().run, summarise, doc).result() for doc in docs[:1]]
        return helper + by_hand

    assert len(summarise_all(["a", "b", "c", "d"])) == 5
    rows = spans.rows()
    assert len(rows) == 5 and {r.attributes[sc.TASK] for r in rows} == {"summarise_all"}  # type: ignore[index]
    assert len({r.attributes[sc.CALL_ID] for r in rows}) == 1  # type: ignore[index]
    assert sorted(r.attributes[sc.FINAL] for r in rows) == [False] * 4 + [True]  # type: ignore[index]
    (attempt,) = spans.attempts()
    assert attempt.attributes[sc.REQUESTS] == 5  # type: ignore[index]


def test_concurrent_requests_of_one_async_attempt_are_all_rows_and_one_is_final(spans: Spans,
                                                                                 fake: FakeProvider) -> None:
    async def main() -> None:
        async with openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="test") as client:

            @llmlens.observe(task="gather")
            async def both() -> list[Any]:
                return list(await asyncio.gather(*(client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES) for _ in range(3))))

            await both()

    asyncio.run(main())
    rows = spans.rows()
    assert len(rows) == 3 and all(r.attributes[sc.TASK] == "gather" for r in rows)  # type: ignore[index]
    assert sorted(r.attributes[sc.FINAL] for r in rows) == [False, False, True]  # type: ignore[index]


def test_a_worker_without_the_context_makes_rows_without_the_task(spans: Spans, fake: FakeProvider,
                                                                  openai_client: openai.OpenAI) -> None:
    @llmlens.observe(task="fan_out")
    def fan_out() -> None:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(openai_client.chat.completions.create, model="gpt-4o-mini", messages=MESSAGES).result()

    fan_out()
    request = next(r for r in spans.rows() if r.attributes[sc.SPAN_ROLE] == "request")  # type: ignore[index]
    assert sc.TASK not in (request.attributes or {})


def test_observe_without_configure_records_nothing_and_warns_once(caplog: pytest.LogCaptureFixture,
                                                                  fake: FakeProvider,
                                                                  openai_client: openai.OpenAI) -> None:
    @llmlens.observe(task="t")
    def call() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with caplog.at_level(logging.WARNING, logger="llmlens"):
        call()
        call()
    warnings = [r.getMessage() for r in caplog.records if r.name == "llmlens"]
    assert len(warnings) == 1 and "llmlens.configure()" in warnings[0]
    assert _hooks.installed() == []


def _memory() -> Any:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()
