"""What crosses the wire to a model API: requests, JSON answers and SSE streams, read as they pass.

Pure and dependency-free (the standard library only), for the HTTP-layer capture:

- :func:`read_request` says whether a request goes to a model API and what it asks
  (provider, API, operation, model, stream) from the method, host, path and body;
- :class:`ResponseReader` is fed the decoded body bytes in whatever pieces the app reads
  them and tells, at any moment, what the answer said (model, id, finish reasons, usage,
  the provider's error name) and when its first content arrived (time to first token);
- :func:`http_status` maps an HTTP status and its ``Retry-After`` onto the status taxonomy.

Nothing here raises into the caller: any failure to read is logged once and the facts
seen so far are kept. Nothing is buffered whole: an SSE stream keeps only its incomplete
last line; a JSON answer up to :data:`JSON_PARSE_LIMIT` is parsed whole, a larger one
(embeddings of many inputs run to tens of MB) keeps a bounded head and tail, which is
where every provider puts the model, id, finish reason and usage.

Interface (relied on by the capture hooks; extend, do not rename): :class:`RequestInfo`,
:func:`read_request`, :class:`ResponseReader` (``feed``, ``result``, ``first_content_at``,
``complete``), :func:`http_status`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import unquote

from llmlens import _status
from llmlens import _wire_apis as apis
from llmlens import semconv as sc
from llmlens._hosts import provider_for, split_host

__all__ = ["JSON_PARSE_LIMIT", "RequestInfo", "ResponseReader", "http_status", "read_request",
           "request_attributes"]

logger = logging.getLogger("llmlens")

# Request bodies: the model and stream flags are searched in at most this many bytes.
REQUEST_SCAN_LIMIT: Final = 1 << 20
# JSON answers up to this size are parsed whole; past it only a head and a tail are kept.
JSON_PARSE_LIMIT: Final = 256 << 10
_KEEP: Final = 64 << 10  # bytes of head and of tail kept of a larger answer
# A single SSE line longer than this (no provider sends one) is dropped, not buffered.
MAX_EVENT_BYTES: Final = 16 << 20

_MODEL_KEY: Final = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,256})"')
_STREAM_TRUE: Final = re.compile(rb'"stream"\s*:\s*true')
_WARNED: set[str] = set()


def _log_once(key: str, message: str) -> None:
    if key in _WARNED:
        logger.debug("llmlens: %s", message)
        return
    _WARNED.add(key)
    logger.warning("llmlens: %s (reported once; the request is recorded with what was read)", message)


@dataclass(slots=True)
class RequestInfo:
    """One request to a model API, as far as its URL and body tell."""

    provider: str
    api: str  # "openai.chat" | "openai.responses" | "openai.completions" | "openai.embeddings" |
    # "anthropic.messages" | "gemini.generate" | "unknown" (a model API path we cannot read)
    operation: str  # gen_ai.operation.name: "chat", "text_completion", "embeddings", "generate_content"...
    model: str | None
    stream: bool
    server_address: str
    server_port: int | None


# Path endings of OpenAI-shaped APIs, whatever the prefix (/v1, /openai/v1, /inference/v1,
# /openai/deployments/{name}, /api/v1, /compatibility/v1 ...).
_OPENAI_PATHS: Final = (
    ("/chat/completions", "openai.chat", "chat"),
    ("/responses", "openai.responses", "chat"),
    ("/embeddings", "openai.embeddings", "embeddings"),
    ("/completions", "openai.completions", "text_completion"),  # after /chat/completions
)
# Billed endpoints whose answers carry no usage we read: still a row (a request was billed).
_OTHER_PATHS: Final = (
    ("/images/generations", "image_generation"), ("/images/edits", "image_generation"),
    ("/audio/speech", "audio"), ("/audio/transcriptions", "audio"), ("/audio/translations", "audio"),
    ("/rerank", "rerank"), ("/v2/chat", "chat"), ("/v1/chat", "chat"), ("/v2/embed", "embeddings"),
)


def _gemini_model(path: str) -> str | None:
    model = path.rpartition("/models/")[2].partition(":")[0]
    return unquote(model)[:256] or None


def _route(provider: str, path: str) -> tuple[str, str, str | None, bool] | None:
    """(api, operation, model from the URL, stream from the URL), or None when not billed."""
    if ":" in path.rpartition("/")[2]:  # Google's custom methods: .../models/{model}:{method}
        method = path.rpartition(":")[2]
        if method in ("generateContent", "streamGenerateContent"):
            return "gemini.generate", "generate_content", _gemini_model(path), method == "streamGenerateContent"
        if method in ("rawPredict", "streamRawPredict") and "/publishers/anthropic/" in path:
            return "anthropic.messages", "chat", _gemini_model(path), method == "streamRawPredict"
        if method in ("embedContent", "batchEmbedContents", "predict"):
            return "unknown", "embeddings", _gemini_model(path), False
        return None  # countTokens and the like are free
    for ending, api, operation in _OPENAI_PATHS:
        if path.endswith(ending):
            model = None
            if "/deployments/" in path:  # Azure OpenAI: the deployment names the model
                model = unquote(path.partition("/deployments/")[2].partition("/")[0]) or None
            return api, operation, model, False
    if path.endswith("/messages") and "/threads/" not in path:
        return "anthropic.messages", "chat", None, False
    if provider == "aws.bedrock" and path.startswith("/model/"):
        model_id, _, action = path[7:].partition("/")
        if action in ("converse", "converse-stream", "invoke", "invoke-with-response-stream"):
            return "unknown", "chat", unquote(model_id) or None, action.endswith("stream")
        return None
    for ending, operation in _OTHER_PATHS:
        if path.endswith(ending):
            return "unknown", operation, None, False
    return None


def _scan_body(body: bytes) -> tuple[str | None, bool]:
    """The model and stream flag of a JSON request body, without parsing it.

    Inside a JSON string every quote is escaped, so ``"model":"..."`` can only be a key;
    the first one is the request's (SDKs write it before tools and metadata).
    """
    if len(body) > REQUEST_SCAN_LIMIT:
        body = body[:REQUEST_SCAN_LIMIT]
    model = None
    match = _MODEL_KEY.search(body)
    if match is not None:
        raw = match.group(1)
        try:
            model = json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode("utf-8")
        except ValueError:
            model = None
    return model, _STREAM_TRUE.search(body) is not None


def read_request(method: str, host: str, port: int | None, path: str, body: bytes | None,
                 extra_hosts: Mapping[str, str] | None = None) -> RequestInfo | None:
    """What a request asks of a model API, or None when it is not a billed model request.

    ``path`` may carry the query string. Only POSTs to generation and embedding
    endpoints are requests (listing models, files, batches: None).

    >>> info = read_request("POST", "api.openai.com", 443, "/v1/chat/completions",
    ...                     b'{"model": "gpt-4o-mini", "stream": true, "messages": []}')
    >>> (info.provider, info.api, info.model, info.stream)
    ('openai', 'openai.chat', 'gpt-4o-mini', True)
    """
    try:
        if method.upper() != "POST":
            return None
        path = path.partition("?")[0]
        name, port = split_host(host, port)
        provider = provider_for(name, path, extra_hosts, port)
        if provider is None:
            return None
        route = _route(provider, path)
        if route is None:
            return None
        api, operation, url_model, url_stream = route
        body_model, body_stream = _scan_body(body) if body else (None, False)
        return RequestInfo(provider=provider, api=api, operation=operation, model=body_model or url_model,
                           stream=url_stream or body_stream, server_address=name, server_port=port)
    except Exception as exc:  # never let reading a request break it
        _log_once("request", f"could not read a request to {host!r}: {type(exc).__name__}")
        return None


def request_attributes(info: RequestInfo) -> dict[str, Any]:
    """The span attributes a request gives before any answer."""
    attrs: dict[str, Any] = {sc.PROVIDER_NAME: info.provider, sc.OPERATION_NAME: info.operation,
                             sc.REQUEST_STREAM: info.stream, sc.SERVER_ADDRESS: info.server_address}
    if info.model is not None:
        attrs[sc.REQUEST_MODEL] = info.model
    if info.server_port is not None:
        attrs[sc.SERVER_PORT] = info.server_port
    return attrs


# --- status -------------------------------------------------------------------------------------
def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms``, else ``retry-after`` in seconds or as an HTTP date; None when absent or bad."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            seconds = float(value) / 1000.0
            if 0 <= seconds < 1e9:
                return seconds
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
        return seconds if 0 <= seconds < 1e9 else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - time.time(), 0.0)


def http_status(status_code: int, headers: Mapping[str, str]) -> tuple[str, str | None, float | None]:
    """(status, failure_reason, retry_after_seconds) of an HTTP answer.

    >>> http_status(429, {"retry-after": "2"})
    ('rate_limited', 'HTTP 429', 2.0)
    """
    try:
        retry_after = retry_after_seconds(headers) if status_code >= 400 else None
    except Exception:
        retry_after = None
    if 200 <= status_code < 300:
        return _status.OK, None, None
    status = _status.status_from_http(status_code) or _status.ERROR
    return status, f"HTTP {status_code}", retry_after


def error_status(provider_error: str) -> str:
    """The status of a request whose answer (or stream) carried an error but no error HTTP status."""
    status = _status.status_from_error_type(provider_error)
    if status != _status.ERROR:
        return status
    lowered = provider_error.lower()
    if "invalid" in lowered or "not_found" in lowered or "permission" in lowered:
        return _status.CLIENT_ERROR
    if lowered in ("resource_exhausted", "quota_exceeded", "insufficient_quota"):
        return _status.RATE_LIMITED
    return _status.PROVIDER_ERROR  # the provider failed mid-answer


# --- responses ------------------------------------------------------------------------------------
_Handler = Callable[[apis.Facts, "bytes | None", bytes], None]
_EVENT_HANDLERS: Final[dict[str, _Handler]] = {
    "openai.chat": apis.chat_event, "openai.completions": apis.chat_event,
    "openai.responses": apis.responses_event, "anthropic.messages": apis.anthropic_event,
    "gemini.generate": apis.gemini_event,
}
_BODY_HANDLERS: Final[dict[str, Callable[[apis.Facts, Any], None]]] = {
    "openai.chat": apis.chat_body, "openai.completions": apis.chat_body, "openai.embeddings": apis.chat_body,
    "openai.responses": apis.responses_body, "anthropic.messages": apis.anthropic_body,
    "gemini.generate": apis.gemini_body,
}
_SSE, _JSON, _JSON_SEQ, _OPAQUE = 1, 2, 3, 4
# Fields a large answer's head and tail are searched for (see _salvage).
_TAIL_FINISH: Final = re.compile(rb'"(?:finish_reason|stop_reason|finishReason)"\s*:\s*"(\w{1,64})"')
_HEAD_STRINGS: Final = re.compile(rb'"(model|modelVersion|id|responseId|status|reason)"\s*:\s*"([^"\\]{1,256})"')
_USAGE_KEY: Final = re.compile(rb'"(usage|usageMetadata|x_groq)"\s*:\s*\{')


class ResponseReader:
    """Reads one answer from a model API as the app reads it.

    ``feed`` takes decoded body bytes (content-encoding already undone) in any pieces;
    ``result()`` may be called at any time, and an abandoned stream reports what was seen.
    """

    __slots__ = ("_after_cr", "_buffer", "_data", "_event", "_facts", "_head", "_mode", "_on_body", "_on_event",
                 "_parsed", "_parts", "_parts_size", "_seq_pos", "_size", "_skip_line", "_tail", "info",
                 "status_code")

    def __init__(self, info: RequestInfo, status_code: int, headers: Mapping[str, str]) -> None:
        self.info = info
        self.status_code = status_code
        self._facts = apis.Facts()
        self._on_event = _EVENT_HANDLERS.get(info.api, apis.generic_event)
        self._on_body = _BODY_HANDLERS.get(info.api, apis.generic_body)
        content_type = str(headers.get("content-type", "")).lower()
        if status_code >= 400:
            self._mode = _JSON  # error bodies are JSON even when a stream was asked for
        elif "eventstream" in content_type:
            self._mode = _OPAQUE  # AWS's binary event stream (Bedrock converse-stream): not read
        elif "text/event-stream" in content_type:
            self._mode = _SSE
        elif info.stream and info.api == "gemini.generate":
            self._mode = _JSON_SEQ  # streamGenerateContent without alt=sse: one JSON array, read per element
        elif info.stream and "json" not in content_type:
            self._mode = _SSE
        else:
            self._mode = _JSON
        self._parts: list[bytes] = []  # SSE: the pieces of the unfinished last line
        self._parts_size = 0
        self._tail = b""  # JSON: the last bytes of a large answer
        self._event: bytes | None = None
        self._data: bytes | None = None
        self._skip_line = False
        self._after_cr = False
        self._buffer = bytearray()
        self._head = b""
        self._size = 0
        self._parsed = False
        self._seq_pos = 0

    @property
    def first_content_at(self) -> float | None:
        """``time.monotonic()`` when the first content (text, tool call, reasoning) arrived."""
        return self._facts.first_content_at

    @property
    def complete(self) -> bool:
        """Whether the answer reached its end: a stream's terminal event, or a whole JSON body read."""
        if self._mode == _JSON and self._size and not self._parsed:
            self._parse_json()
        return self._facts.complete

    @property
    def provider_error(self) -> str | None:
        """The provider's name for an error it reported (in an error body or mid-stream), if any."""
        if self._mode == _JSON and not self._parsed:
            self._parse_json()
        return self._facts.error

    def outcome(self) -> tuple[str, str | None]:
        """(status, failure_reason) from the HTTP status and any error the answer carried."""
        error = self.provider_error
        if not 200 <= self.status_code < 300:
            status, reason, _ = http_status(self.status_code, {})
            return status, error or reason
        if error is not None:
            return error_status(error), error
        return _status.OK, None

    def feed(self, data: bytes) -> None:
        """Read the next piece of the decoded body. Never raises."""
        if not data:
            return
        try:
            if self._mode == _SSE:
                self._feed_sse(bytes(data))
            elif self._mode == _JSON_SEQ:
                self._feed_seq(bytes(data))
            elif self._mode == _JSON:
                self._feed_json(bytes(data))
        except Exception as exc:
            _log_once(f"feed:{self.info.api}", f"could not read a {self.info.api} answer: {type(exc).__name__}")

    def result(self) -> dict[str, Any]:
        """Span attributes of what the answer said so far (model, id, finish reasons, usage, error)."""
        try:
            if self._mode == _JSON and not self._parsed:
                self._parse_json()
            return self._facts.attributes()
        except Exception as exc:
            _log_once(f"result:{self.info.api}", f"could not read a {self.info.api} answer: {type(exc).__name__}")
            return {}

    # --- SSE ---------------------------------------------------------------------------------------
    def _feed_sse(self, data: bytes) -> None:
        if self._after_cr:
            # The last piece ended in CR, already taken as a line end: if this one starts
            # with LF, the two were one CRLF.
            self._after_cr = False
            if data[:1] == b"\n":
                data = data[1:]
        if data[:6] == b"data: " and not self._parts and self._data is None:
            # The common piece: exactly one whole "data:" event (SDKs read event by event),
            # ended by LF LF or, as Google sends them, CRLF CRLF: dispatched without the
            # general line loop.
            end = data.find(b"\n")
            if end == len(data) - 2 and data[-1:] == b"\n" and b"\r" not in data:
                event = self._event
                self._event = None
                self._on_event(self._facts, event, data[6:-2])
                return
            if end == len(data) - 3 and data.endswith(b"\r\n\r\n") and data.find(b"\r") == end - 1:
                event = self._event
                self._event = None
                self._on_event(self._facts, event, data[6:-4])
                return
        if b"\n" not in data and b"\r" not in data:
            # The middle of a line: keep the piece and join once the line ends, so a long
            # line read in small pieces costs linear time, not quadratic.
            if not self._skip_line:
                self._parts.append(data)
                self._parts_size += len(data)
                if self._parts_size > MAX_EVENT_BYTES:
                    self._drop_line()
            return
        if self._parts:
            self._parts.append(data)
            buffer = b"".join(self._parts)
            self._parts = []
            self._parts_size = 0
        else:
            buffer = data
        if b"\r" in buffer:  # CRLF and a lone CR end lines too
            self._after_cr = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        tail = lines.pop()
        if tail:
            self._parts.append(tail)
            self._parts_size = len(tail)
            if self._parts_size > MAX_EVENT_BYTES:
                self._drop_line()
        for line in lines:
            if self._skip_line:  # the rest of an oversized line
                self._skip_line = False
                continue
            if not line:
                if self._data is not None:
                    data_ = self._data
                    event = self._event
                    self._data = self._event = None
                    self._on_event(self._facts, event, data_)
                else:
                    self._event = None
                continue
            if line[0] == 58:  # ":" starts a comment (keep-alives)
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                if self._data is None:
                    self._data = value
                elif len(self._data) < MAX_EVENT_BYTES:
                    self._data += b"\n" + value
            elif name == b"event":
                self._event = value

    def _drop_line(self) -> None:
        _log_once("sse-line", f"an SSE line of a {self.info.api} stream passed {MAX_EVENT_BYTES} bytes")
        self._parts = []
        self._parts_size = 0
        self._skip_line = True

    # --- one JSON answer ---------------------------------------------------------------------------
    def _feed_json(self, data: bytes) -> None:
        self._parsed = False
        self._size += len(data)
        if self._size <= JSON_PARSE_LIMIT:
            self._buffer += data
            return
        if not self._head:  # just past the limit: keep the head, roll the tail from here on
            self._head = (bytes(self._buffer[:_KEEP]) + data[:_KEEP])[:_KEEP]
            self._tail = (bytes(self._buffer[-_KEEP:]) + data[-_KEEP:])[-_KEEP:]
            self._buffer = bytearray()
            return
        tail = self._tail + data[-_KEEP:]
        self._tail = tail[-_KEEP:] if len(tail) > _KEEP else tail

    def _parse_json(self) -> None:
        self._parsed = True
        facts = self._facts
        if self._head:
            self._salvage()
            return
        if not self._buffer:
            return
        body = apis._loads(bytes(self._buffer))
        if body is None:
            _log_once(f"json:{self.info.api}", f"a {self.info.api} answer was not complete JSON")
            self._salvage_from(bytes(self._buffer), bytes(self._buffer))
            return
        facts.complete = True
        if self.status_code >= 400:
            error = body[0] if type(body) is list and body else body
            if type(error) is dict:  # {"error": {...}} (OpenAI, Gemini) or {"type": "error", "error": {...}}
                facts.set_error(error.get("error", error))
            return
        self._on_body(facts, body)
        facts.first_content_at = None  # a whole answer has no first token to time

    def _salvage(self) -> None:
        """Facts of an answer too large to parse, from its head and tail only."""
        self._salvage_from(self._head, self._tail)

    def _salvage_from(self, head: bytes, tail: bytes) -> None:
        facts = self._facts
        strings: dict[bytes, bytes] = {}
        for key, value in _HEAD_STRINGS.findall(head) + _HEAD_STRINGS.findall(tail):
            strings.setdefault(key, value)
        model = strings.get(b"model") or strings.get(b"modelVersion")
        response_id = strings.get(b"id") or strings.get(b"responseId")
        facts.names(model.decode("utf-8", "replace") if model else None,
                    response_id.decode("utf-8", "replace") if response_id else None)
        for index, reason in enumerate(_TAIL_FINISH.findall(tail)):
            facts.finish[index] = reason.decode("ascii")
        if self.info.api == "openai.responses" and strings.get(b"status") and not facts.finish:
            status = strings[b"status"]
            reason = strings.get(b"reason") if status == b"incomplete" else None
            facts.finish[0] = (reason or status).decode("ascii", "replace")
        for match in reversed(list(_USAGE_KEY.finditer(tail))):
            try:
                usage, _ = json.JSONDecoder().raw_decode(tail[match.end() - 1:].decode("utf-8", "replace"))
            except ValueError:
                continue
            wrapper = {match.group(1).decode(): usage}
            if self.info.api == "anthropic.messages":
                facts.anthropic_usage(usage)
            elif self.info.api == "openai.responses":
                facts.responses_usage(usage)
            elif self.info.api == "gemini.generate":
                facts.gemini_usage(usage)
            else:
                apis.chat_body(facts, wrapper)
            break
        if self.status_code < 400 and tail.rstrip().endswith((b"}", b"]")):
            facts.complete = True

    # --- a streamed JSON array (Gemini without alt=sse) ---------------------------------------------
    def _feed_seq(self, data: bytes) -> None:
        self._buffer += data
        if b"}" not in data:
            return  # no element can have ended in this piece
        decoder = json.JSONDecoder()
        while True:
            pending = bytes(self._buffer[self._seq_pos:])
            stripped = pending.lstrip(b" \t\r\n[,")
            if not stripped or stripped[:1] == b"]":
                if stripped[:1] == b"]":
                    self._facts.complete = True
                break
            text = stripped.decode("utf-8", "ignore")
            try:
                element, end = decoder.raw_decode(text)
            except ValueError:
                if len(pending) > JSON_PARSE_LIMIT * 16:
                    _log_once("json-seq", "a streamed JSON array element passed the size limit")
                    self._buffer = bytearray()
                    self._seq_pos = 0
                break
            consumed = len(pending) - len(stripped) + len(text[:end].encode("utf-8"))
            self._seq_pos += consumed
            apis.gemini_body(self._facts, element)
        if self._seq_pos > _KEEP:  # drop what was read; keep only the unfinished element
            del self._buffer[:self._seq_pos]
            self._seq_pos = 0
