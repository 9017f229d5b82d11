"""A fake model provider: a real HTTP server on 127.0.0.1 speaking OpenAI's and Anthropic's wire formats.

Tests point the real SDKs at it, so everything between the application and the socket
(SDK parsing, SSE decoding, error classes, retries, the SDKs' own tracing) is exercised::

    with FakeProvider() as fake:
        client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0)
        anthropic_client = anthropic.Anthropic(base_url=fake.url, api_key="test", max_retries=0)
        fake.fail(429, headers={"retry-after": "0.05"})     # the next request gets a 429
        fake.reply("hello", input_tokens=12, output_tokens=3)  # the one after: this answer
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

Endpoints: ``POST /v1/chat/completions`` (``stream=True`` answers SSE chunks, with a final
usage chunk when ``stream_options.include_usage`` is set), ``POST /v1/responses`` (not
streamed), ``POST /v1/messages`` (Anthropic; ``stream=True`` answers message_start /
content_block_* / message_delta / message_stop events, with cache read and creation
tokens). Each request takes the next scripted item (:meth:`reply` or :meth:`fail`),
or :attr:`default` when none is queued. :attr:`requests` records what was received.

The server is the standard library's threading HTTP server (starts in milliseconds, no
event loop to share with the test); responses are HTTP/1.0, one connection each.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["Failure", "FakeProvider", "Reply"]


@dataclass
class Reply:
    """A successful answer. Token counts are per provider semantics (see the fields)."""

    text: str = "Hello from the fake provider."
    input_tokens: int = 12  # OpenAI: prompt_tokens (cached included); Anthropic: uncached input only
    output_tokens: int = 5
    cached_tokens: int = 0  # OpenAI prompt_tokens_details.cached_tokens
    reasoning_tokens: int = 0  # OpenAI completion_tokens_details.reasoning_tokens
    cache_read_tokens: int = 0  # Anthropic cache_read_input_tokens
    cache_write_tokens: int = 0  # Anthropic cache_creation_input_tokens
    model: str | None = None  # default: the requested model
    delay: float = 0.0  # seconds before the response starts
    chunk_delay: float = 0.0  # seconds between streamed events
    finish_reason: str | None = None  # default "stop" / "end_turn"


@dataclass
class Failure:
    """An HTTP error answer in the provider's error format."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted failure"
    delay: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


class FakeProvider:
    """The server. Use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self) -> None:
        self.default = Reply()
        self.requests: list[Received] = []
        self._queue: deque[Reply | Failure] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # scripting ------------------------------------------------------------------------------
    def reply(self, text: str | None = None, **fields: Any) -> Reply:
        """Queue a successful answer for the next request (fields: see :class:`Reply`)."""
        item = Reply(**({"text": text} if text is not None else {}), **fields)
        with self._lock:
            self._queue.append(item)
        return item

    def fail(self, status: int, *, headers: dict[str, str] | None = None, message: str = "scripted failure",
             delay: float = 0.0) -> Failure:
        """Queue an HTTP error (429 with ``retry-after``, 500, 529 overloaded, 400 ...)."""
        item = Failure(status, dict(headers or {}), message, delay)
        with self._lock:
            self._queue.append(item)
        return item

    def _next(self) -> Reply | Failure:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    # lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Self:
        provider = self

        class Handler(_Handler):
            fake = provider

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeProvider
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = self.path.split("?", 1)[0]
        self.fake.requests.append(Received("POST", path, {k.lower(): v for k, v in self.headers.items()}, body))
        item = self.fake._next()
        if item.delay:
            time.sleep(item.delay)
        anthropic = path.endswith("/messages")
        try:
            if isinstance(item, Failure):
                self._failure(item, anthropic)
            elif anthropic:
                self._anthropic(item, body or {})
            elif path.endswith("/responses"):
                self._responses(item, body or {})
            elif path.endswith("/chat/completions"):
                self._chat(item, body or {})
            else:
                self._json(404, {"error": {"message": "no such endpoint", "type": "not_found_error"}})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client walked away (an abandoned stream); nothing to answer

    # formats -----------------------------------------------------------------------------------
    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_fake")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _failure(self, item: Failure, anthropic: bool) -> None:
        kind = _ERROR_TYPES.get(item.status, "api_error")
        if anthropic:
            payload: Any = {"type": "error", "error": {"type": kind, "message": item.message}}
        else:
            payload = {"error": {"message": item.message, "type": kind, "param": None, "code": kind}}
        self._json(item.status, payload, item.headers)

    def _sse_start(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.end_headers()

    def _event(self, data: Any, event: str | None, delay: float) -> None:
        if delay:
            time.sleep(delay)
        text = data if isinstance(data, str) else json.dumps(data)
        prefix = f"event: {event}\n" if event else ""
        self.wfile.write(f"{prefix}data: {text}\n\n".encode())
        self.wfile.flush()

    @staticmethod
    def _pieces(text: str) -> list[str]:
        words = text.split(" ")
        return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]

    def _chat(self, item: Reply, body: dict[str, Any]) -> None:
        model = item.model or body.get("model") or "gpt-4o-mini"
        usage = {"prompt_tokens": item.input_tokens, "completion_tokens": item.output_tokens,
                 "total_tokens": item.input_tokens + item.output_tokens,
                 "prompt_tokens_details": {"cached_tokens": item.cached_tokens},
                 "completion_tokens_details": {"reasoning_tokens": item.reasoning_tokens}}
        finish = item.finish_reason or "stop"
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            self._json(200, {**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": item.text}, "finish_reason": finish}],
                "usage": usage})
            return
        self._sse_start()
        chunk = {**base, "object": "chat.completion.chunk"}
        self._event({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                           "finish_reason": None}]}, None, item.chunk_delay)
        for piece in self._pieces(item.text):
            self._event({**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]},
                        None, item.chunk_delay)
        self._event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}, None,
                    item.chunk_delay)
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event({**chunk, "choices": [], "usage": usage}, None, item.chunk_delay)
        self._event("[DONE]", None, 0)

    def _responses(self, item: Reply, body: dict[str, Any]) -> None:
        model = item.model or body.get("model") or "gpt-4o-mini"
        self._json(200, {
            "id": "resp_fake", "object": "response", "created_at": int(time.time()), "model": model,
            "status": "completed", "error": None, "incomplete_details": None, "instructions": None,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "metadata": {},
            "output": [{"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": item.text, "annotations": []}]}],
            "usage": {"input_tokens": item.input_tokens, "output_tokens": item.output_tokens,
                      "total_tokens": item.input_tokens + item.output_tokens,
                      "input_tokens_details": {"cached_tokens": item.cached_tokens},
                      "output_tokens_details": {"reasoning_tokens": item.reasoning_tokens}}})

    def _anthropic(self, item: Reply, body: dict[str, Any]) -> None:
        model = item.model or body.get("model") or "claude-haiku-4-5"
        usage = {"input_tokens": item.input_tokens, "output_tokens": item.output_tokens,
                 "cache_read_input_tokens": item.cache_read_tokens,
                 "cache_creation_input_tokens": item.cache_write_tokens}
        stop = item.finish_reason or "end_turn"
        message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                   "stop_reason": stop, "stop_sequence": None, "usage": usage,
                   "content": [{"type": "text", "text": item.text}]}
        if not body.get("stream"):
            self._json(200, message)
            return
        self._sse_start()
        delay = item.chunk_delay
        start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        self._event({"type": "message_start", "message": start}, "message_start", delay)
        self._event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                    "content_block_start", delay)
        self._event({"type": "ping"}, "ping", 0)
        for piece in self._pieces(item.text):
            self._event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                        "content_block_delta", delay)
        self._event({"type": "content_block_stop", "index": 0}, "content_block_stop", delay)
        self._event({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                     "usage": {"output_tokens": item.output_tokens}}, "message_delta", delay)
        self._event({"type": "message_stop"}, "message_stop", delay)
