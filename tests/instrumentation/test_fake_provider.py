"""The fake provider speaks each wire format well enough for the real SDKs and httpx to read it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from fake_provider import FakeProvider, Reply


@pytest.fixture
def oai(fake: FakeProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0)


@pytest.fixture
def claude(fake: FakeProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.url, api_key="test", max_retries=0)


@pytest.fixture
def http(fake: FakeProvider) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=5) as client:
        yield client


def _sse_data(text: str) -> list[Any]:
    """The JSON of each ``data:`` line of an SSE body (CRLF or LF), [DONE] as a string."""
    events = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith("data: "):
            data = line[6:]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


MESSAGES = [{"role": "user", "content": "hi"}]


def test_openai_chat_reports_cached_and_reasoning_tokens_where_the_sdk_reads_them(
        fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.reply("an answer", input_tokens=40, output_tokens=9, cached_tokens=16, reasoning_tokens=4)
    result = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert result.choices[0].message.content == "an answer"
    assert result.usage is not None and result.usage.prompt_tokens == 40
    assert result.usage.prompt_tokens_details and result.usage.prompt_tokens_details.cached_tokens == 16
    assert result.usage.completion_tokens_details and result.usage.completion_tokens_details.reasoning_tokens == 4


def test_openai_chat_stream_sends_a_usage_chunk_only_when_asked(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.reply("one two three", input_tokens=11, output_tokens=3)
    fake.reply("one two three", input_tokens=11, output_tokens=3)
    asked = list(oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,  # type: ignore[arg-type]
                                             stream=True, stream_options={"include_usage": True}))
    plain = list(oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,  # type: ignore[arg-type]
                                             stream=True))
    assert asked[-1].choices == [] and asked[-1].usage is not None and asked[-1].usage.completion_tokens == 3
    assert all(chunk.usage is None for chunk in plain)
    assert "".join(c.choices[0].delta.content or "" for c in plain if c.choices) == "one two three"


def test_a_tool_call_stream_carries_arguments_and_no_text(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.reply("", tool_calls=[("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})])
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,  # type: ignore[arg-type]
                                              stream=True))
    arguments: dict[int, str] = {}
    for chunk in chunks:
        for call in chunk.choices[0].delta.tool_calls or ():
            arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")  # type: ignore[union-attr]
    assert {i: json.loads(a) for i, a in arguments.items()} == {0: {"city": "Paris"}, 1: {"zone": "CET"}}
    assert not any(c.choices[0].delta.content for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_responses_stream_ends_with_the_completed_response_and_its_usage(
        fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.reply("two words", input_tokens=1515, output_tokens=8, cached_tokens=1390)
    events = list(oai.responses.create(model="gpt-4o", input="hi", stream=True))
    assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "two words"
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.usage is not None and final.response.usage.input_tokens_details.cached_tokens == 1390


def test_a_response_cut_by_max_output_tokens_ends_incomplete(fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.reply("cut short", finish_reason="max_output_tokens")
    fake.reply("cut short", finish_reason="max_output_tokens")
    events = list(oai.responses.create(model="gpt-4o", input="hi", stream=True))
    assert events[-1].type == "response.incomplete"
    whole = oai.responses.create(model="gpt-4o", input="hi")
    assert whole.status == "incomplete" and whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"


def test_embeddings_answer_one_vector_per_input_with_prompt_tokens_only(
        fake: FakeProvider, oai: openai.OpenAI) -> None:
    fake.reply(input_tokens=8)
    result = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=16)
    assert [len(item.embedding) for item in result.data] == [16, 16]
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (8, 8)


def test_anthropic_stream_reports_cache_tokens_thinking_and_tools(
        fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    fake.reply("the answer", thinking="let me think", tool_calls=[("lookup", {"q": "x"})], input_tokens=4,
               output_tokens=216, cache_read_tokens=1165, cache_write_tokens=10)
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=500, messages=MESSAGES) as stream:  # type: ignore[arg-type]
        kinds = [event.type for event in stream]
        message = stream.get_final_message()
    assert "ping" not in kinds  # the helper swallows pings; they were sent (see the raw test below)
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[2].input == {"q": "x"}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens,
            usage.output_tokens) == (4, 1165, 10, 216)


def test_anthropic_mid_stream_error_reaches_the_sdk_as_an_api_error(
        fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    fake.reply("partial", stream_error="overloaded_error")
    with pytest.raises(anthropic.APIStatusError) as failure:
        for _ in claude.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES,  # type: ignore[arg-type]
                                        stream=True):
            pass
    assert "overloaded_error" in str(failure.value.body)


def test_anthropic_raw_stream_has_pings_and_usage_split_between_start_and_delta(
        fake: FakeProvider, http: httpx.Client) -> None:
    fake.reply("a b", input_tokens=7, output_tokens=30, cache_read_tokens=100)
    response = http.post("/v1/messages", json={"model": "claude-x", "stream": True, "messages": MESSAGES})
    events = _sse_data(response.text)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and "ping" in kinds and kinds[-1] == "message_stop"
    assert events[0]["message"]["usage"] == {"input_tokens": 7, "cache_creation_input_tokens": 0,
                                             "cache_read_input_tokens": 100, "output_tokens": 1}
    assert next(e for e in events if e["type"] == "message_delta")["usage"] == {"output_tokens": 30}


@pytest.mark.parametrize(("flavor", "where"), [("groq", "x_groq"), ("mistral", "finish"), ("deepseek", "finish")])
def test_openai_compatible_dialects_put_usage_where_that_provider_does(
        fake: FakeProvider, http: httpx.Client, flavor: str, where: str) -> None:
    fake.reply("hi there", flavor=flavor, input_tokens=18, output_tokens=73, cached_tokens=2, reasoning_tokens=5,
               thinking="hmm" if flavor == "deepseek" else None)
    body = {"model": "m", "stream": True, "messages": MESSAGES, "stream_options": {"include_usage": True}}
    chunks = [c for c in _sse_data(http.post("/openai/v1/chat/completions", json=body).text) if c != "[DONE]"]
    finish = chunks[-1]
    assert finish["choices"][0]["finish_reason"] == "stop"
    usage = finish["x_groq"]["usage"] if where == "x_groq" else finish["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (18, 73)
    assert all("usage" not in c for c in chunks) if flavor == "groq" else True
    if flavor == "deepseek":
        assert usage["prompt_cache_hit_tokens"] == 2 and "prompt_tokens_details" not in usage
        assert any(c["choices"][0]["delta"].get("reasoning_content") for c in chunks)


@pytest.mark.parametrize("prefix", ["/v1beta/models/gemini-2.5-flash",
                                    "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash"])
def test_gemini_answers_generate_content_and_both_stream_shapes(
        fake: FakeProvider, http: httpx.Client, prefix: str) -> None:
    reply = {"input_tokens": 8, "output_tokens": 1910, "reasoning_tokens": 1477, "cached_tokens": 4}
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    fake.reply("a poem about it", **reply)
    whole = http.post(prefix + ":generateContent", json=body).json()
    assert whole["modelVersion"] == "gemini-2.5-flash"
    assert whole["usageMetadata"] == {"promptTokenCount": 8, "candidatesTokenCount": 433, "totalTokenCount": 1918,
                                      "thoughtsTokenCount": 1477, "cachedContentTokenCount": 4}
    fake.reply("a poem about it", **reply)
    streamed = http.post(prefix + ":streamGenerateContent?alt=sse", json=body)
    assert "\r\n\r\n" in streamed.text and streamed.headers["content-type"] == "text/event-stream"
    chunks = _sse_data(streamed.text)
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == "a poem about it"
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["thoughtsTokenCount"] == 1477
    fake.reply("a poem about it", **reply)
    array = http.post(prefix + ":streamGenerateContent", json=body).json()
    assert isinstance(array, list) and array[-1]["usageMetadata"]["candidatesTokenCount"] == 433


def test_a_429_then_200_script_is_retried_by_the_sdk_after_retry_after_ms(fake: FakeProvider) -> None:
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=1)
    fake.fail(429, headers={"retry-after-ms": "10"})
    fake.reply("after the retry")
    result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert result.choices[0].message.content == "after the retry"
    assert len(fake.requests) == 2


@pytest.mark.parametrize(("status", "sdk_error", "kind"), [
    (429, anthropic.RateLimitError, "rate_limit_error"), (529, anthropic.OverloadedError, "overloaded_error"),
    (400, anthropic.BadRequestError, "invalid_request_error"), (404, anthropic.NotFoundError, "not_found_error"),
    (500, anthropic.InternalServerError, "api_error")])
def test_anthropic_errors_have_anthropic_shape_and_map_to_the_sdk_classes(
        fake: FakeProvider, claude: anthropic.Anthropic, status: int, sdk_error: type[Exception], kind: str) -> None:
    fake.fail(status, headers={"retry-after": "1"})
    with pytest.raises(sdk_error) as failure:
        claude.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)  # type: ignore[arg-type]
    assert failure.value.body == {"type": "error", "error": {"type": kind, "message": "scripted failure"}}  # type: ignore[attr-defined]


def test_openai_and_gemini_errors_have_their_own_shapes(fake: FakeProvider, oai: openai.OpenAI,
                                                        http: httpx.Client) -> None:
    fake.fail(404, message="no such model")
    with pytest.raises(openai.NotFoundError) as failure:
        oai.chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
    assert failure.value.code == "model_not_found"
    fake.fail(429)
    answer = http.post("/v1beta/models/gemini-2.5-flash:generateContent", json={})
    assert answer.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_gzip_is_sent_only_to_clients_that_accept_it(fake: FakeProvider, http: httpx.Client) -> None:
    fake.reply("zipped", gzip=True)
    answer = http.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.json()["choices"][0]["message"]["content"] == "zipped"
    fake.reply("zipped", gzip=True)
    raw = http.post("/v1/chat/completions", json={"model": "m"}, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in raw.headers and raw.json()["model"] == "m"
    fake.fail(500, gzip=True)
    failed = http.post("/v1/responses", json={"model": "m"})
    assert failed.headers["content-encoding"] == "gzip"
    assert failed.status_code == 500 and failed.json()["error"]["type"] == "server_error"


def test_keep_alive_mode_reuses_one_connection_for_json_and_streams() -> None:
    with FakeProvider(keep_alive=True) as fake, httpx.Client(base_url=fake.url) as http:
        fake.reply("first")
        fake.reply("second and third")
        assert http.post("/v1/chat/completions", json={"model": "m"}).json()["model"] == "m"
        streamed = http.post("/v1/chat/completions", json={"model": "m", "stream": True})
        assert _sse_data(streamed.text)[-1] == "[DONE]"
        assert streamed.headers["transfer-encoding"] == "chunked"
        assert fake.requests[0].client_port == fake.requests[1].client_port


def test_a_stream_can_stop_midway_without_its_terminal_event(fake: FakeProvider, http: httpx.Client) -> None:
    fake.reply("a b c d e f", stop_after=3)
    events = _sse_data(http.post("/v1/chat/completions", json={"model": "m", "stream": True}).text)
    assert len(events) == 3 and "[DONE]" not in events


def test_a_hanging_stream_times_the_client_out_after_the_events_it_sent(fake: FakeProvider) -> None:
    fake.reply("a b c d", hang_after=2)
    with httpx.Client(base_url=fake.url, timeout=httpx.Timeout(5, read=0.2)) as http:
        with http.stream("POST", "/v1/chat/completions", json={"model": "m", "stream": True}) as response:
            received = b""
            with pytest.raises(httpx.ReadTimeout):
                for piece in response.iter_bytes():
                    received += piece
    assert len(_sse_data(received.decode())) == 2


def test_the_format_helpers_give_the_same_bytes_without_a_server() -> None:
    from wire_formats import anthropic_stream, openai_chat_json

    body = json.loads(openai_chat_json(Reply("x", input_tokens=3), model="gpt-4o"))
    assert body["usage"]["prompt_tokens"] == 3 and body["model"] == "gpt-4o"
    frames = anthropic_stream(Reply("x"), model="claude-x")
    assert frames[0].startswith(b"event: message_start\ndata: ") and frames[-1].endswith(b"\n\n")


@pytest.mark.parametrize(("path", "body", "reply", "expected"), [
    ("/v1/chat/completions", {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}},
     {"input_tokens": 30, "output_tokens": 4, "cached_tokens": 10}, (30, 4, 10)),
    ("/v1/responses", {"model": "gpt-4o", "stream": True, "input": "hi"}, {"input_tokens": 9, "output_tokens": 2},
     (9, 2, 0)),
    ("/v1/messages", {"model": "claude-x", "stream": True, "max_tokens": 5},
     {"input_tokens": 3, "output_tokens": 7, "cache_read_tokens": 100}, (103, 7, 100)),
    ("/v1/projects/p/locations/l/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse", {},
     {"input_tokens": 8, "output_tokens": 30, "reasoning_tokens": 20, "thinking": "t"}, (8, 30, None)),
    ("/v1beta/models/gemini-2.5-flash:streamGenerateContent", {}, {"input_tokens": 8, "output_tokens": 3},
     (8, 3, None)),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"]}, {"input_tokens": 6, "gzip": True},
     (6, None, None)),
])
@pytest.mark.parametrize("keep_alive", [False, True])
def test_the_wire_reader_reads_what_the_fake_provider_serves_over_a_socket(
        path: str, body: dict[str, Any], reply: dict[str, Any], expected: tuple[Any, ...], keep_alive: bool) -> None:
    from llmlens import semconv as sc
    from llmlens._wire import ResponseReader, read_request

    with FakeProvider(keep_alive=keep_alive) as fake, httpx.Client(base_url=fake.url) as http:
        fake.reply("a few words here", **reply)
        host = fake.url.removeprefix("http://")
        provider = "gcp.vertex_ai" if ":" in path.rpartition("/")[2] else "openai"
        info = read_request("POST", host, None, path, json.dumps(body).encode(), {host: provider})
        assert info is not None
        with http.stream("POST", path, json=body) as response:
            reader = ResponseReader(info, response.status_code, response.headers)
            for piece in response.iter_bytes():
                reader.feed(piece)
        result = reader.result()
    assert (result.get(sc.USAGE_INPUT_TOKENS), result.get(sc.USAGE_OUTPUT_TOKENS),
            result.get(sc.USAGE_CACHE_READ_INPUT_TOKENS)) == expected
    assert reader.complete and result.get(sc.RESPONSE_MODEL)
    assert (reader.first_content_at is not None) == info.stream


def test_the_wire_reader_reads_a_scripted_error_and_its_retry_after(fake: FakeProvider, http: httpx.Client) -> None:
    from llmlens._wire import ResponseReader, http_status, read_request

    fake.fail(429, headers={"retry-after-ms": "250"}, gzip=True)
    host = fake.url.removeprefix("http://")
    info = read_request("POST", host, None, "/v1/messages", b'{"model":"claude-x"}', {host: "anthropic"})
    assert info is not None
    response = http.post("/v1/messages", json={"model": "claude-x"})
    reader = ResponseReader(info, response.status_code, response.headers)
    reader.feed(response.content)
    assert http_status(response.status_code, response.headers) == ("rate_limited", "HTTP 429", 0.25)
    assert reader.outcome() == ("rate_limited", "rate_limit_error")
