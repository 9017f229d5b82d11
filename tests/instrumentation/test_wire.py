"""Reading the wire: requests, JSON answers and SSE streams of every provider, in any pieces.

Wire data comes from the fake provider's format helpers (``wire_formats``), which write
what each provider sends, and from literal bodies for shapes the fake does not produce.
"""

from __future__ import annotations

import json
import random
import tracemalloc
from collections.abc import Iterable
from typing import Any

import pytest
import wire_formats as wf
from wire_formats import Reply

from llmlens import semconv as sc
from llmlens._wire import RequestInfo, ResponseReader, http_status, read_request, request_attributes

SSE = {"content-type": "text/event-stream; charset=utf-8"}
JSON = {"content-type": "application/json"}


def info(api: str, provider: str = "openai", stream: bool = True, model: str | None = "m") -> RequestInfo:
    return RequestInfo(provider=provider, api=api, operation="chat", model=model, stream=stream,
                       server_address="api.example.com", server_port=443)


def read(request: RequestInfo, body: bytes | Iterable[bytes], status: int = 200,
         headers: dict[str, str] | None = None, size: int | None = None) -> ResponseReader:
    """A reader fed ``body`` whole, in ``size``-byte pieces, or in the given pieces."""
    reader = ResponseReader(request, status, headers or (SSE if request.stream else JSON))
    if isinstance(body, bytes):
        pieces: Iterable[bytes] = [body] if size is None else [body[i:i + size] for i in range(0, len(body), size)]
    else:
        pieces = body
    for piece in pieces:
        reader.feed(piece)
    return reader


def tokens(result: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(result.get(k) for k in (sc.USAGE_INPUT_TOKENS, sc.USAGE_OUTPUT_TOKENS,
                                         sc.USAGE_CACHE_READ_INPUT_TOKENS, sc.USAGE_CACHE_WRITE_INPUT_TOKENS,
                                         sc.USAGE_REASONING_OUTPUT_TOKENS))


# --- requests ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("host", "path", "body", "expected"), [
    ("api.openai.com", "/v1/chat/completions", b'{"messages": [], "model": "gpt-4o", "stream": true}',
     ("openai", "openai.chat", "chat", "gpt-4o", True)),
    ("api.openai.com", "/v1/responses", b'{"model":"gpt-5","input":"hi"}',
     ("openai", "openai.responses", "chat", "gpt-5", False)),
    ("api.openai.com", "/v1/completions", b'{"model":"gpt-3.5-turbo-instruct","prompt":"x","stream":false}',
     ("openai", "openai.completions", "text_completion", "gpt-3.5-turbo-instruct", False)),
    ("api.openai.com", "/v1/embeddings", b'{"input":"x","model":"text-embedding-3-small"}',
     ("openai", "openai.embeddings", "embeddings", "text-embedding-3-small", False)),
    ("res.openai.azure.com", "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21",
     b'{"messages":[]}', ("azure.ai.openai", "openai.chat", "chat", "prod-4o", False)),
    ("api.anthropic.com", "/v1/messages", b'{"max_tokens":10,"messages":[],"model":"claude-x","stream":true}',
     ("anthropic", "anthropic.messages", "chat", "claude-x", True)),
    ("generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-flash:generateContent", b'{"contents":[]}',
     ("gcp.gemini", "gemini.generate", "generate_content", "gemini-2.5-flash", False)),
    ("generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", b"{}",
     ("gcp.gemini", "gemini.generate", "generate_content", "gemini-2.5-pro", True)),
    ("europe-west4-aiplatform.googleapis.com",
     "/v1/projects/p/locations/europe-west4/publishers/google/models/gemini-2.0-flash:streamGenerateContent",
     None, ("gcp.vertex_ai", "gemini.generate", "generate_content", "gemini-2.0-flash", True)),
    ("us-east5-aiplatform.googleapis.com",
     "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict",
     b'{"anthropic_version":"vertex-2023-10-16","messages":[]}',
     ("gcp.vertex_ai", "anthropic.messages", "chat", "claude-sonnet-4@20250514", True)),
    ("api.groq.com", "/openai/v1/chat/completions", b'{"model":"llama3-8b-8192","stream":true}',
     ("groq", "openai.chat", "chat", "llama3-8b-8192", True)),
    ("bedrock-runtime.us-east-1.amazonaws.com", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream",
     b'{"messages":[]}', ("aws.bedrock", "unknown", "chat", "anthropic.claude-3-haiku-20240307-v1:0", True)),
    ("api.openai.com", "/v1/images/generations", b'{"model":"gpt-image-1"}',
     ("openai", "unknown", "image_generation", "gpt-image-1", False)),
])
def test_a_request_to_a_model_api_says_provider_api_model_and_stream(
        host: str, path: str, body: bytes | None, expected: tuple[Any, ...]) -> None:
    request = read_request("POST", host, 443, path, body)
    assert request is not None
    assert (request.provider, request.api, request.operation, request.model, request.stream) == expected
    assert request.server_address == host and request.server_port == 443


@pytest.mark.parametrize(("method", "host", "path"), [
    ("GET", "api.openai.com", "/v1/models"), ("POST", "api.openai.com", "/v1/files"),
    ("POST", "api.openai.com", "/v1/batches"), ("POST", "api.openai.com", "/v1/moderations"),
    ("POST", "api.anthropic.com", "/v1/messages/count_tokens"), ("POST", "api.anthropic.com", "/v1/messages/batches"),
    ("POST", "api.openai.com", "/v1/threads/thread_1/messages"),
    ("POST", "generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-flash:countTokens"),
    ("POST", "example.com", "/v1/chat/completions"), ("POST", "127.0.0.1:8000", "/v1/chat/completions"),
])
def test_requests_that_are_not_billed_generations_are_not_read(method: str, host: str, path: str) -> None:
    assert read_request(method, host, None, path, b'{"model": "x"}') is None


def test_a_self_hosted_server_is_read_through_the_users_host_map() -> None:
    request = read_request("POST", "127.0.0.1:8000", None, "/v1/chat/completions", b'{"model":"qwen"}',
                           {"127.0.0.1:8000": "vllm"})
    assert request is not None and (request.provider, request.model, request.server_port) == ("vllm", "qwen", 8000)
    assert request_attributes(request) == {sc.PROVIDER_NAME: "vllm", sc.OPERATION_NAME: "chat",
                                           sc.REQUEST_STREAM: False, sc.SERVER_ADDRESS: "127.0.0.1",
                                           sc.REQUEST_MODEL: "qwen", sc.SERVER_PORT: 8000}


def test_the_model_is_found_after_a_huge_message_list_and_never_inside_content() -> None:
    content = 'say "model": "evil" and stream: true ' * 20_000  # ~800 KB of user text, escaped in JSON
    body = json.dumps({"messages": [{"role": "user", "content": content}], "model": "gpt-4o",
                       "tools": [{"type": "function", "function": {"parameters": {"properties": {
                           "model": {"type": "string"}}}}}]}).encode()
    request = read_request("POST", "api.openai.com", 443, "/v1/chat/completions", body)
    assert request is not None and request.model == "gpt-4o" and request.stream is False
    escaped = json.dumps({"model": 'a"b\\c/é'}).encode()
    request = read_request("POST", "api.openai.com", 443, "/v1/chat/completions", escaped)
    assert request is not None and request.model == 'a"b\\c/é'


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe garbage", b'{"model": 12}', b"[" * 100_000, None])
def test_a_request_body_that_is_not_json_still_makes_a_request(body: bytes | None) -> None:
    request = read_request("POST", "api.openai.com", 443, "/v1/chat/completions", body)
    assert request is not None and request.model is None


# --- answers of every provider shape ----------------------------------------------------------
CASES: list[tuple[str, str, Any, tuple[Any, ...], str]] = [
    # (id, api, bytes, tokens (input, output, cache read, cache write, reasoning), finish)
    ("openai chat json", "openai.chat",
     wf.openai_chat_json(Reply(input_tokens=1220, output_tokens=100, cached_tokens=1152, reasoning_tokens=64,
                               finish_reason="length"), "gpt-4o-2024-08-06"),
     (1220, 100, 1152, None, 64), "length"),
    ("openai chat sse with usage", "openai.chat",
     b"".join(wf.openai_chat_stream(Reply(input_tokens=12, output_tokens=5, cached_tokens=3), "gpt-4o", True)),
     (12, 5, 3, None, 0), "stop"),
    ("openai chat sse, tool calls, no text", "openai.chat",
     b"".join(wf.openai_chat_stream(Reply("", tool_calls=[("f", {"a": 1})], input_tokens=75, output_tokens=51),
                                    "gpt-4o", True)), (75, 51, 0, None, 0), "tool_call"),
    ("groq x_groq usage", "openai.chat",
     b"".join(wf.openai_chat_stream(Reply(flavor="groq", input_tokens=18, output_tokens=73), "llama3-8b-8192")),
     (18, 73, None, None, None), "stop"),
    ("mistral usage on the finish chunk", "openai.chat",
     b"".join(wf.openai_chat_stream(Reply(flavor="mistral", input_tokens=11, output_tokens=80), "mistral-tiny")),
     (11, 80, None, None, None), "stop"),
    ("deepseek cache hits and reasoning", "openai.chat",
     b"".join(wf.openai_chat_stream(Reply(flavor="deepseek", thinking="hmm", input_tokens=17, output_tokens=47,
                                          cached_tokens=5, reasoning_tokens=34), "deepseek-reasoner", True)),
     (17, 47, 5, None, 34), "stop"),
    ("legacy completions sse", "openai.completions",
     b"".join(wf.completions_stream(Reply(input_tokens=4, output_tokens=2), "gpt-3.5-turbo-instruct", True)),
     (4, 2, 0, None, 0), "stop"),
    ("embeddings", "openai.embeddings", wf.embeddings_json(Reply(input_tokens=8), "text-embedding-3-small", 3),
     (8, None, None, None, None), ""),
    ("responses json", "openai.responses",
     wf.responses_json(Reply(input_tokens=1515, output_tokens=8, cached_tokens=1390, reasoning_tokens=2), "gpt-4o"),
     (1515, 8, 1390, None, 2), "stop"),
    ("responses sse completed", "openai.responses",
     b"".join(wf.responses_stream(Reply(input_tokens=44, output_tokens=288, reasoning_tokens=9), "gpt-5")),
     (44, 288, 0, None, 9), "stop"),
    ("responses sse incomplete", "openai.responses",
     b"".join(wf.responses_stream(Reply(finish_reason="max_output_tokens", input_tokens=9, output_tokens=16),
                                  "gpt-4o")),
     (9, 16, 0, None, 0), "length"),
    ("responses sse tool call", "openai.responses",
     b"".join(wf.responses_stream(Reply("", tool_calls=[("f", {})], input_tokens=9, output_tokens=3), "gpt-4o")),
     (9, 3, 0, None, 0), "tool_call"),
    ("anthropic json with cache", "anthropic.messages",
     wf.anthropic_json(Reply(input_tokens=4, output_tokens=187, cache_read_tokens=1163, cache_write_tokens=10),
                       "claude-3-5-sonnet"), (1177, 187, 1163, 10, None), "stop"),
    ("anthropic sse thinking and tools", "anthropic.messages",
     b"".join(wf.anthropic_stream(Reply("ok", thinking="let me see", tool_calls=[("f", {"q": "x"})],
                                        input_tokens=52, output_tokens=216, cache_write_tokens=1165), "claude-x")),
     (1217, 216, 0, 1165, None), "tool_call"),
    ("gemini json", "gemini.generate",
     wf.gemini_json(Reply(input_tokens=8, output_tokens=1910, reasoning_tokens=1477, cached_tokens=2),
                    "gemini-2.5-flash"),
     (8, 1910, 2, None, 1477), "stop"),
    ("gemini sse crlf", "gemini.generate",
     b"".join(wf.gemini_stream(Reply(input_tokens=8, output_tokens=2581, reasoning_tokens=2193, thinking="t"),
                               "gemini-2.5-flash", vertex=True)), (8, 2581, None, None, 2193), "stop"),
    ("gemini sse api key shape", "gemini.generate",
     b"".join(wf.gemini_stream(Reply(input_tokens=8, output_tokens=20, finish_reason="MAX_TOKENS"), "gemini-2.5-pro")),
     (8, 20, None, None, None), "length"),
]


def _expect(result: dict[str, Any], expected_tokens: tuple[Any, ...], finish: str) -> None:
    assert tokens(result) == expected_tokens
    assert result.get(sc.RESPONSE_FINISH_REASONS, ("",))[-1] == finish
    assert result.get(sc.RESPONSE_MODEL)


@pytest.mark.parametrize(("api", "body", "expected_tokens", "finish"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_provider_answer_yields_its_usage_model_and_finish_reason(
        api: str, body: bytes, expected_tokens: tuple[Any, ...], finish: str) -> None:
    stream = body.startswith((b"data:", b"event:"))
    request = info(api, stream=stream)
    whole = read(request, body)
    _expect(whole.result(), expected_tokens, finish)
    assert whole.complete and whole.provider_error is None and whole.outcome() == ("ok", None)
    rng = random.Random(len(body))
    pieces, i = [], 0
    while i < len(body):
        step = rng.randint(1, 40)
        pieces.append(body[i:i + step])
        i += step
    assert read(request, pieces).result() == whole.result()
    assert (whole.first_content_at is not None) == (stream and api != "openai.embeddings")


SPLIT_CASES = [c for c in CASES if c[0] in ("openai chat sse with usage", "anthropic sse thinking and tools",
                                            "gemini sse crlf", "groq x_groq usage")]


@pytest.mark.parametrize(("api", "body"), [c[1:3] for c in SPLIT_CASES], ids=[c[0] for c in SPLIT_CASES])
def test_a_stream_split_at_every_byte_boundary_reads_the_same(api: str, body: bytes) -> None:
    request = info(api)
    expected = read(request, body).result()
    for cut in range(1, len(body)):
        assert read(request, [body[:cut], body[cut:]]).result() == expected, cut
    assert read(request, body, size=1).result() == expected


def test_sse_framing_variants_read_the_same() -> None:
    events = [json.dumps({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"content": "hi"},
                                                                  "finish_reason": None}]}),
              json.dumps({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 3, "completion_tokens": 1}})]
    plain = "".join(f"data: {e}\n\n" for e in events) + "data: [DONE]\n\n"
    crlf = plain.replace("\n", "\r\n")
    cr = plain.replace("\n", "\r")
    # comments (keep-alives), no space after the colon, a multi-line data field, an id: line
    odd = (": keep-alive\n\n" + f"id: 1\ndata:{events[0]}\n\n"
           + "data: " + events[1].replace(', "usage"', '\ndata: , "usage"') + "\n\n: bye\ndata: [DONE]\n\n")
    expected = read(info("openai.chat"), plain.encode()).result()
    assert tokens(expected)[:2] == (3, 1)
    for variant in (crlf, cr, odd):
        for size in (1, 2, 3, 7, 1000):
            reader = read(info("openai.chat"), variant.encode(), size=size)
            assert reader.result() == expected and reader.complete


def test_time_to_first_token_waits_for_real_content() -> None:
    request = info("openai.chat")
    frames = wf.openai_chat_stream(Reply("hello world"), "gpt-4o")
    reader = read(request, frames[:1])  # the role-only first chunk
    assert reader.first_content_at is None and reader.result()[sc.RESPONSE_MODEL] == "gpt-4o"
    reader.feed(frames[1])
    assert reader.first_content_at is not None
    anthropic = wf.anthropic_stream(Reply("x"), "claude-x")
    reader = read(info("anthropic.messages"), anthropic[:3])  # message_start, content_block_start, ping
    assert reader.first_content_at is None
    reader.feed(anthropic[3])
    assert reader.first_content_at is not None


def test_an_abandoned_stream_reports_what_was_seen_and_is_not_complete() -> None:
    frames = wf.anthropic_stream(Reply("a b c d", input_tokens=10, output_tokens=40, cache_read_tokens=5), "claude-x")
    reader = read(info("anthropic.messages"), frames[:5])
    result = reader.result()
    assert not reader.complete and reader.first_content_at is not None
    assert result[sc.RESPONSE_MODEL] == "claude-x" and result[sc.USAGE_INPUT_TOKENS] == 15
    assert result[sc.USAGE_OUTPUT_TOKENS] == 1  # message_start's count: the final one never came
    chat = wf.openai_chat_stream(Reply("a b c", input_tokens=3), "gpt-4o", include_usage=True)
    reader = read(info("openai.chat"), chat[:-3])
    assert not reader.complete and sc.USAGE_INPUT_TOKENS not in reader.result()


@pytest.mark.parametrize(("api", "frames", "error", "status"), [
    ("anthropic.messages", wf.anthropic_stream(Reply("x", stream_error="overloaded_error"), "claude-x"),
     "overloaded_error", "provider_error"),
    ("openai.chat", wf.openai_chat_stream(Reply("x", stream_error="server_error"), "gpt-4o"),
     "server_error", "provider_error"),
    ("openai.responses", wf.responses_stream(Reply("x", stream_error="server_error"), "gpt-4o"),
     "server_error", "provider_error"),
    ("openai.responses", [wf.sse({"type": "response.created", "response": {"id": "r", "model": "gpt-4o"}},
                                 "response.created"),
                          wf.sse({"type": "error", "code": "rate_limit_exceeded", "message": "slow down"}, "error")],
     "rate_limit_exceeded", "rate_limited"),
    ("gemini.generate", wf.gemini_stream(Reply("x y", stream_error="INTERNAL"), "gemini-2.5-flash"),
     "INTERNAL", "provider_error"),
])
def test_an_error_inside_a_200_stream_ends_it_with_the_providers_error_name(
        api: str, frames: list[bytes], error: str, status: str) -> None:
    reader = read(info(api), frames)
    assert reader.complete and reader.provider_error == error
    assert reader.result()[sc.PROVIDER_ERROR] == error
    assert reader.outcome() == (status, error)
    if api == "openai.responses" and len(frames) > 2:
        assert reader.result()[sc.RESPONSE_FINISH_REASONS] == ("error",)


def test_gemini_stream_without_alt_sse_is_one_json_array_read_per_element() -> None:
    body = b"".join(wf.gemini_stream(Reply("a b c", input_tokens=8, output_tokens=30, reasoning_tokens=20),
                                     "gemini-2.5-flash", sse_format=False))
    request = info("gemini.generate", provider="gcp.gemini")
    headers = {"content-type": "application/json; charset=UTF-8"}
    reader = ResponseReader(request, 200, headers)
    reader.feed(body[: body.index(b"\r\n")])  # the first element, not yet closed by a separator
    reader.feed(body[body.index(b"\r\n"):body.index(b"\r\n") + 1])
    assert reader.first_content_at is not None and not reader.complete
    for size in (1, 5, 64, len(body)):
        whole = read(request, body, headers=headers, size=size)
        assert tokens(whole.result()) == (8, 30, None, None, 20) and whole.complete


@pytest.mark.parametrize(("api", "status", "body", "error", "outcome"), [
    ("openai.chat", 404, wf.error_json("openai", 404, "The model `x` does not exist"), "model_not_found",
     "client_error"),
    ("openai.chat", 429, wf.error_json("openai", 429), "rate_limit_exceeded", "rate_limited"),
    ("openai.responses", 400, wf.error_json("openai", 400), "invalid_request_error", "client_error"),
    ("anthropic.messages", 529, wf.error_json("anthropic", 529), "overloaded_error", "provider_error"),
    ("anthropic.messages", 400, wf.error_json("anthropic", 400), "invalid_request_error", "client_error"),
    ("gemini.generate", 429, wf.error_json("gemini", 429), "RESOURCE_EXHAUSTED", "rate_limited"),
    ("gemini.generate", 500, b"[" + wf.error_json("gemini", 500) + b"]", "INTERNAL", "provider_error"),
    ("openai.chat", 502, b"<html>Bad gateway</html>", None, "provider_error"),
])
def test_error_answers_give_the_providers_error_name_and_never_its_message(
        api: str, status: int, body: bytes, error: str | None, outcome: str) -> None:
    reader = read(info(api, stream=True), body, status=status, headers=JSON, size=7)
    result = reader.result()
    assert result.get(sc.PROVIDER_ERROR) == error
    assert reader.outcome() == (outcome, error or f"HTTP {status}")
    assert "does not exist" not in repr(result)


# --- status -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "headers", "expected"), [
    (200, {}, ("ok", None, None)),
    (201, {"retry-after": "3"}, ("ok", None, None)),
    (429, {"retry-after": "2"}, ("rate_limited", "HTTP 429", 2.0)),
    (429, {"retry-after": "2", "retry-after-ms": "150"}, ("rate_limited", "HTTP 429", 0.15)),
    (429, {"retry-after": "soon"}, ("rate_limited", "HTTP 429", None)),
    (429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, ("rate_limited", "HTTP 429", 0.0)),
    (500, {}, ("provider_error", "HTTP 500", None)),
    (503, {"retry-after": "30"}, ("provider_error", "HTTP 503", 30.0)),
    (529, {}, ("provider_error", "HTTP 529", None)),
    (400, {}, ("client_error", "HTTP 400", None)),
    (404, {}, ("client_error", "HTTP 404", None)),
    (408, {}, ("timeout", "HTTP 408", None)),
    (302, {}, ("error", "HTTP 302", None)),
])
def test_http_status_maps_onto_the_taxonomy_with_retry_after(
        code: int, headers: dict[str, str], expected: tuple[Any, ...]) -> None:
    assert http_status(code, headers) == expected


def test_a_retry_after_date_in_the_future_is_seconds_from_now() -> None:
    import time
    from email.utils import formatdate

    _, _, seconds = http_status(429, {"retry-after": formatdate(time.time() + 120, usegmt=True)})
    assert seconds is not None and 100 < seconds <= 120


# --- hostile and huge input -------------------------------------------------------------------
HOSTILE = [
    b"\x00\xff\xfe" * 1000, b"data: {" * 1000, b"data: " + b"[" * 200_000 + b"\n\n",
    b"data: {\"choices\": \"not a list\", \"usage\": [1, 2]}\n\n",
    b"data: {\"usage\": {\"prompt_tokens\": \"12\"}}\n\n",
    b"event: message_start\ndata: {\"type\": \"message_start\", \"message\": [1]}\n\n",
    b"event: message_delta\ndata: {\"type\": \"message_delta\", \"delta\": null, \"usage\": 5}\n\n",
    b"data: {\"candidates\": [null, 1, {\"content\": 7, \"finishReason\": 3}], \"usageMetadata\": \"x\"}\n\n",
    b"data: " + b"x" * 100_000, b"\r" * 10_000, b"data: [DONE]\n\ndata: [DONE]\n\n", "data: é😀\n\n".encode(),
]


@pytest.mark.parametrize("api", ["openai.chat", "openai.responses", "anthropic.messages", "gemini.generate",
                                 "openai.embeddings", "unknown"])
@pytest.mark.parametrize("stream", [True, False])
def test_malformed_truncated_and_hostile_input_never_raises(api: str, stream: bool) -> None:
    for body in HOSTILE:
        for status in (200, 500):
            for size in (1, 13, len(body)) if len(body) < 10_000 else (997, len(body)):
                reader = read(info(api, stream=stream), body, status=status, size=size)
                assert isinstance(reader.result(), dict)
                assert isinstance(reader.outcome(), tuple) and isinstance(reader.complete, bool)
    truncated = wf.openai_chat_json(Reply(), "gpt-4o")[:-20]
    assert read(info("openai.chat", stream=False), truncated).result()[sc.RESPONSE_MODEL] == "gpt-4o"


def test_a_huge_json_answer_is_read_in_bounded_memory() -> None:
    vectors = 1000  # ~10 MB of embeddings
    body = wf.embeddings_json(Reply(input_tokens=123_456), "text-embedding-3-large", vectors, 1536)
    assert len(body) > 8 << 20
    request = info("openai.embeddings", stream=False)
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    tracemalloc.start()
    try:
        reader = ResponseReader(request, 200, JSON)
        for piece in pieces:
            reader.feed(piece)
        result = reader.result()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, peak
    assert result[sc.USAGE_INPUT_TOKENS] == 123_456 and result[sc.RESPONSE_MODEL] == "text-embedding-3-large"
    assert reader.complete


def test_a_long_stream_keeps_only_its_unfinished_line() -> None:
    request = info("openai.chat")
    frames = wf.openai_chat_stream(Reply("word " * 20_000, input_tokens=1, output_tokens=20_000), "gpt-4o", True)
    tracemalloc.start()
    try:
        reader = ResponseReader(request, 200, SSE)
        for frame in frames:
            reader.feed(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 << 10, peak
    assert tokens(reader.result())[:2] == (1, 20_000)


def test_a_large_answer_of_each_api_is_read_from_its_head_and_tail() -> None:
    long_text = "lorem ipsum " * 60_000
    for api, body, expected in [
        ("anthropic.messages", wf.anthropic_json(Reply(long_text, input_tokens=5, output_tokens=9000,
                                                       cache_read_tokens=7), "claude-x"), (12, 9000, 7, 0, None)),
        ("gemini.generate", wf.gemini_json(Reply(long_text, input_tokens=5, output_tokens=9000, reasoning_tokens=10),
                                           "gemini-2.5-pro"), (5, 9000, None, None, 10)),
        ("openai.chat", wf.openai_chat_json(Reply(long_text, input_tokens=5, output_tokens=9000), "gpt-4o"),
         (5, 9000, 0, None, 0)),
        ("openai.responses", wf.responses_json(Reply(long_text, input_tokens=5, output_tokens=9000), "gpt-4o"),
         (5, 9000, 0, None, 0)),
    ]:
        for size in (65536, 100_003, None):  # the limit crossed between pieces, inside one, by the first
            result = read(info(api, stream=False), body, size=size).result()
            assert tokens(result) == expected, (api, size)
            assert result[sc.RESPONSE_MODEL] and result[sc.RESPONSE_FINISH_REASONS] == ("stop",), (api, size)
    cut = wf.responses_json(Reply(long_text, finish_reason="max_output_tokens"), "gpt-4o")
    result = read(info("openai.responses", stream=False), cut).result()
    assert result[sc.RESPONSE_FINISH_REASONS] == ("length",)


def test_sse_data_with_extra_whitespace_is_still_read() -> None:
    padded = b"data:  " + wf.openai_chat_json(Reply(input_tokens=2, output_tokens=1), "gpt-4o") + b"  \n\n"
    assert tokens(read(info("openai.chat"), padded).result())[:2] == (2, 1)


# --- one finish-reason vocabulary for capture, return values and the collector ------------------
@pytest.mark.parametrize(("provider_word", "word"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_call"),
    ("tool_calls", "tool_call"), ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
    ("refusal", "content_filter"), ("max_output_tokens", "length"), ("pause_turn", "pause_turn")])
def test_capture_return_values_and_the_collector_use_one_finish_reason_vocabulary(
        provider_word: str, word: str) -> None:
    from llmlens._usage import extract
    from llmlens.collector.normalize import normalize
    from llmlens.collector.record import SpanRecord

    reader = read(info("anthropic.messages", stream=False),
                  wf.anthropic_json(Reply(finish_reason=provider_word), "claude-x"))
    assert reader.result()[sc.RESPONSE_FINISH_REASONS] == (word,)
    assert extract({"type": "message", "stop_reason": provider_word, "model": "claude-x"})[
        sc.RESPONSE_FINISH_REASONS] == [word]
    record = SpanRecord(trace_id="0" * 32, span_id="1" * 16, parent_span_id=None, name="chat",
                        start_time_unix_nano=1, end_time_unix_nano=2, status_code=0, status_message="",
                        attributes={sc.OPERATION_NAME: "chat", "anthropic.message.stop_reason": provider_word},
                        resource_attributes={}, scope_name="com.anthropic.sdk.python", events=())
    row = normalize(record)
    assert row is not None and row["finish_reason"] == word


def test_a_model_api_answer_of_no_known_shape_is_read_by_common_usage_names() -> None:
    converse = {"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}}, "stopReason": "end_turn",
                "usage": {"inputTokens": 30, "outputTokens": 5, "cacheReadInputTokens": 100,
                          "cacheWriteInputTokens": 0}}
    result = read(info("unknown", provider="aws.bedrock", stream=False), json.dumps(converse).encode()).result()
    assert tokens(result) == (130, 5, 100, 0, None) and result[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    image = {"created": 1, "data": [{"b64_json": "AAAA"}],
             "usage": {"input_tokens": 50, "output_tokens": 4160, "input_tokens_details": {"text_tokens": 50}}}
    result = read(info("unknown", stream=False), json.dumps(image).encode()).result()
    assert tokens(result)[:2] == (50, 4160)
