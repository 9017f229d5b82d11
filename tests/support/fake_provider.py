"""A fake model provider: a real HTTP server on 127.0.0.1 speaking the providers' wire formats.

Tests point the real SDKs at it, so everything between the application and the socket
(SDK parsing, SSE decoding, error classes, retries, the SDKs' own tracing) is exercised::

    with FakeProvider() as fake:
        client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test", max_retries=0)
        anthropic_client = anthropic.Anthropic(base_url=fake.url, api_key="test", max_retries=0)
        fake.fail(429, headers={"retry-after": "0.05"})     # the next request gets a 429
        fake.reply("hello", input_tokens=12, output_tokens=3)  # the one after: this answer
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

Endpoints (by the end of the path, so any prefix works: ``/v1``, Groq's ``/openai/v1``):

- ``/chat/completions``: OpenAI Chat Completions, JSON or SSE (``stream``); a usage chunk
  when ``stream_options.include_usage`` is set; :attr:`Reply.flavor` picks the Groq,
  Mistral or DeepSeek dialect; ``/completions`` (legacy), ``/embeddings``;
- ``/responses``: OpenAI Responses, JSON or SSE;
- ``/messages``: Anthropic Messages, JSON or SSE (thinking, tool use, cache tokens, ping);
- ``.../models/{model}:generateContent`` and ``:streamGenerateContent`` (``?alt=sse`` for SSE
  with CRLF-separated events, otherwise a streamed JSON array), under Gemini's
  ``/v1beta/models/`` or Vertex AI's ``/v1/projects/{p}/locations/{l}/publishers/google/models/``.

Each request takes the next scripted item (:meth:`reply` or :meth:`fail`, so "429 then
200" is ``fail(429)`` then ``reply()``), or :attr:`default` when none is queued.
:attr:`requests` records what was received. The bytes themselves come from
:mod:`wire_formats`, which tests can also call directly to get wire data without a server.

Failures: :meth:`fail` answers in the provider's error shape (by path) with any status and
headers (``retry-after``, ``retry-after-ms``). Streams can end badly: ``stream_error``
sends the provider's mid-stream error event, ``stop_after=n`` drops the connection after
``n`` events, ``hang_after=n`` stalls after ``n`` events until the client goes away or the
server stops (and ``delay`` stalls before the headers), for abandoned-stream and timeout
tests.

The server is the standard library's threading HTTP server (starts in milliseconds, no
event loop to share with the test). By default responses are HTTP/1.0, one connection
each. ``FakeProvider(keep_alive=True)`` serves HTTP/1.1 keep-alive with ``TCP_NODELAY``
and writes a JSON response's headers and body in one ``send``: with separate writes and
Nagle on, the client's delayed ACK stalls each response ~40 ms, which would hide any
overhead a benchmark is meant to measure.
"""

from __future__ import annotations

import gzip
import json
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs

import wire_formats as wf
from wire_formats import Reply

__all__ = ["Failure", "FakeProvider", "Received", "Reply"]

# How long a scripted stall lasts at most when nothing ends it first.
_MAX_STALL = 60.0


@dataclass
class Failure:
    """An HTTP error answer in the provider's error format."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted failure"
    delay: float = 0.0
    error_type: str | None = None  # default: the provider's type for the status
    code: str | None = None  # OpenAI "code" (default per status, e.g. model_not_found for 404)
    gzip: bool = False


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    query: str = ""
    raw: bytes = b""
    client_port: int = 0  # the client's TCP port: equal ports mean a reused keep-alive connection


class FakeProvider:
    """The server. Use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self, keep_alive: bool = False) -> None:
        self.default = Reply()
        self.requests: list[Received] = []
        self.keep_alive = keep_alive
        self._queue: deque[Reply | Failure] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
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
             delay: float = 0.0, error_type: str | None = None, code: str | None = None,
             gzip: bool = False) -> Failure:
        """Queue an HTTP error (429 with ``retry-after``, 500, 529 overloaded, 400 ...)."""
        item = Failure(status, dict(headers or {}), message, delay, error_type, code, gzip)
        with self._lock:
            self._queue.append(item)
        return item

    def script(self, items: Iterable[Reply | Failure]) -> None:
        """Queue several answers at once, in order."""
        with self._lock:
            self._queue.extend(items)

    def reset(self) -> None:
        """Forget the script and the received requests; answer :class:`Reply` defaults again."""
        with self._lock:
            self._queue.clear()
        self.requests.clear()
        self.default = Reply()

    def _next(self) -> Reply | Failure:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    # lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Self:
        provider = self

        class Handler(_Handler):
            fake = provider
            protocol_version = "HTTP/1.1" if provider.keep_alive else "HTTP/1.0"

        self._closing.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # releases stalled handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _ClientGone(Exception):
    pass


def _gemini_model(path: str) -> str:
    return path.rsplit("/models/", 1)[-1].split(":", 1)[0] or "gemini-2.5-flash"


class _Handler(BaseHTTPRequestHandler):
    fake: FakeProvider

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def setup(self) -> None:
        super().setup()
        if self.fake.keep_alive:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path, _, query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fake.requests.append(Received("POST", path, headers, body, query, raw, self.client_address[1]))
        item = self.fake._next()
        try:
            if item.delay:
                self._stall(item.delay)
            request = body if isinstance(body, dict) else {}
            if isinstance(item, Failure):
                self._failure(item, path)
            else:
                self._answer(item, path, query, request)
        except (BrokenPipeError, ConnectionResetError, _ClientGone):
            self.close_connection = True  # the client walked away (an abandoned stream)

    # dispatch ----------------------------------------------------------------------------------
    def _answer(self, reply: Reply, path: str, query: str, body: dict[str, Any]) -> None:
        model = reply.model or body.get("model")
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if ":generateContent" in path or ":streamGenerateContent" in path:
            model = reply.model or _gemini_model(path)
            vertex = "/publishers/" in path
            if ":streamGenerateContent" in path:
                alt_sse = parse_qs(query).get("alt") == ["sse"]
                frames = wf.gemini_stream(reply, model, sse_format=alt_sse, vertex=vertex)
                self._stream(reply, frames, "text/event-stream" if alt_sse else "application/json; charset=UTF-8")
            else:
                self._json(200, wf.gemini_json(reply, model), reply.headers, reply.gzip, reply.stop_after)
        elif path.endswith("/messages"):
            model = model or "claude-haiku-4-5"
            if stream:
                self._stream(reply, wf.anthropic_stream(reply, model))
            else:
                self._json(200, wf.anthropic_json(reply, model), reply.headers, reply.gzip, reply.stop_after)
        elif path.endswith("/responses"):
            model = model or "gpt-4o-mini"
            if stream:
                self._stream(reply, wf.responses_stream(reply, model))
            else:
                self._json(200, wf.responses_json(reply, model), reply.headers, reply.gzip, reply.stop_after)
        elif path.endswith("/chat/completions"):
            model = model or "gpt-4o-mini"
            if stream:
                self._stream(reply, wf.openai_chat_stream(reply, model, include_usage))
            else:
                self._json(200, wf.openai_chat_json(reply, model), reply.headers, reply.gzip, reply.stop_after)
        elif path.endswith("/completions"):
            model = model or "gpt-3.5-turbo-instruct"
            if stream:
                self._stream(reply, wf.completions_stream(reply, model, include_usage))
            else:
                self._json(200, wf.completions_json(reply, model), reply.headers, reply.gzip, reply.stop_after)
        elif path.endswith("/embeddings"):
            inputs = body.get("input")
            count = len(inputs) if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else 1
            dimensions = body.get("dimensions") if isinstance(body.get("dimensions"), int) else None
            payload = wf.embeddings_json(reply, model or "text-embedding-3-small", count, dimensions)
            self._json(200, payload, reply.headers, reply.gzip, reply.stop_after)
        else:
            self._json(404, wf.error_json("openai", 404, "no such endpoint", code="unknown_url"))

    def _failure(self, item: Failure, path: str) -> None:
        if path.endswith("/messages"):
            api = "anthropic"
        elif ":generateContent" in path or ":streamGenerateContent" in path:
            api = "gemini"
        else:
            api = "openai"
        body = wf.error_json(api, item.status, item.message, item.error_type, item.code)
        self._json(item.status, body, item.headers, item.gzip)

    # writing -----------------------------------------------------------------------------------
    def _stall(self, seconds: float) -> None:
        """Wait ``seconds``, ending early (by raising) when the client hangs up or the server stops."""
        deadline = time.monotonic() + min(seconds, _MAX_STALL)
        while (left := deadline - time.monotonic()) > 0:
            if self.fake._closing.wait(min(left, 0.02)):
                raise _ClientGone
            readable, _, _ = select.select([self.connection], [], [], 0)
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                raise _ClientGone  # EOF: the client closed its end

    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        """The status line and headers, buffered rather than written (see the module docstring)."""
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        buffered: list[bytes] = getattr(self, "_headers_buffer", [])
        self._headers_buffer = []
        return b"".join(buffered) + b"\r\n"

    def _json(self, status: int, data: bytes, headers: dict[str, str] | None = None, compress: bool = False,
              stop_after: int | None = None) -> None:
        head = {"content-type": "application/json", "request-id": "req_fake", "x-request-id": "req_fake"}
        if compress and "gzip" in self.headers.get("accept-encoding", ""):
            data = gzip.compress(data, compresslevel=5)
            head["content-encoding"] = "gzip"
        head["content-length"] = str(len(data))
        if not self.fake.keep_alive:
            head["connection"] = "close"
        head.update(headers or {})
        if stop_after is not None:  # promise the whole body, send half, hang up
            self.wfile.write(self._head(status, head) + data[: len(data) // 2])
            self.close_connection = True
            return
        self.wfile.write(self._head(status, head) + data)

    def _stream(self, reply: Reply, frames: list[bytes], content_type: str = "text/event-stream") -> None:
        chunked = self.fake.keep_alive
        head = {"content-type": content_type, "cache-control": "no-cache", "request-id": "req_fake",
                "x-request-id": "req_fake", **reply.headers}
        if chunked:
            head["transfer-encoding"] = "chunked"
        else:
            head["connection"] = "close"
        pending = self._head(200, head)
        for n, frame in enumerate(frames):
            if reply.stop_after is not None and n >= reply.stop_after:
                self.wfile.write(pending)
                self.close_connection = True  # no terminal event, no final chunk
                return
            if reply.hang_after is not None and n >= reply.hang_after:
                self.wfile.write(pending)
                self._stall(_MAX_STALL)
            if reply.chunk_delay and n:
                self.wfile.write(pending)
                pending = b""
                self._stall(reply.chunk_delay)
            pending += b"%x\r\n%s\r\n" % (len(frame), frame) if chunked else frame
            self.wfile.write(pending)
            pending = b""
        self.wfile.write(pending + (b"0\r\n\r\n" if chunked else b""))
        if not chunked:
            self.close_connection = True

