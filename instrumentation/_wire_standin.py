"""Temporary wire parsing for OpenAI and Anthropic JSON and SSE, until ``_wire`` replaces it.

Same interface as ``_wire``: :func:`read_request`, :class:`ResponseReader`, :func:`http_status`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmlens import _status
from llmlens import semconv as sc
from llmlens._usage import StreamUsage, extract

_KNOWN_HOSTS = {"api.openai.com": "openai", "api.anthropic.com": "anthropic", "api.groq.com": "groq"}
_OPERATIONS = (("/chat/completions", "chat", "openai"), ("/responses", "chat", "openai"),
               ("/embeddings", "embeddings", "openai"), ("/messages", "chat", "anthropic"))
_MAX_BODY = 8 << 20


@dataclass(frozen=True, slots=True)
class RequestInfo:
    provider: str | None
    operation: str
    model: str | None
    stream: bool
    server_address: str
    server_port: int | None
    attributes: dict[str, Any]


def read_request(method: str, host: str, port: int | None, path: str, body: bytes | None,
                 extra_hosts: Mapping[str, str] | None = None) -> RequestInfo | None:
    if method != "POST":
        return None
    found = next((entry for entry in _OPERATIONS if path.endswith(entry[0])), None)
    if found is None:
        return None
    operation, default_provider = found[1], found[2]
    provider = (extra_hosts or {}).get(f"{host}:{port}") or (extra_hosts or {}).get(host) or _KNOWN_HOSTS.get(
        host) or default_provider
    model, stream = None, False
    if body and body.startswith(b"{"):
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        model = doc.get("model") if isinstance(doc.get("model"), str) else None
        stream = doc.get("stream") is True
    attrs: dict[str, Any] = {sc.OPERATION_NAME: operation, sc.SERVER_ADDRESS: host, sc.REQUEST_STREAM: stream}
    if provider:
        attrs[sc.PROVIDER_NAME] = provider
    if model:
        attrs[sc.REQUEST_MODEL] = model
    if port is not None:
        attrs[sc.SERVER_PORT] = port
    return RequestInfo(provider, operation, model, stream, host, port, attrs)


class ResponseReader:
    def __init__(self, info: RequestInfo, status_code: int, headers: Mapping[str, str]) -> None:
        self.info = info
        self.status_code = status_code
        content_type = headers.get("content-type") or ""
        self.sse = "text/event-stream" in content_type
        self.first_content_at: float | None = None
        self.complete = False
        self._buffer = b""
        self._body: list[bytes] = []
        self._size = 0
        self._usage = StreamUsage()

    def feed(self, data: bytes) -> None:
        if not self.sse:
            self._size += len(data)
            if self._size <= _MAX_BODY:
                self._body.append(data)
            return
        buffer = self._buffer + data
        while True:
            cut = buffer.find(b"\n\n")
            if cut < 0:
                break
            event, buffer = buffer[:cut], buffer[cut + 2:]
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    self._data(line[5:].strip())
        self._buffer = buffer

    def _data(self, payload: bytes) -> None:
        if payload == b"[DONE]":
            self.complete = True
            return
        item = json.loads(payload)
        if not isinstance(item, dict):
            return
        kind = item.get("type")
        if self.first_content_at is None and (
                kind in ("content_block_delta", "response.output_text.delta")
                or any((c.get("delta") or {}).get("content") for c in item.get("choices") or ())):
            self.first_content_at = time.monotonic()
        if kind in ("message_stop", "response.completed", "response.incomplete", "response.failed"):
            self.complete = True
        self._usage.add(item)

    def result(self) -> dict[str, Any]:
        if self.sse:
            return dict(self._usage.attrs)
        if self.status_code >= 400 or not self._body or self._size > _MAX_BODY:
            return {}
        doc = json.loads(b"".join(self._body))
        self.complete = True
        if isinstance(doc, dict) and doc.get("object") == "list":  # embeddings
            usage = doc.get("usage") or {}
            out: dict[str, Any] = {}
            if isinstance(usage.get("prompt_tokens"), int):
                out[sc.USAGE_INPUT_TOKENS] = usage["prompt_tokens"]
            if isinstance(doc.get("model"), str):
                out[sc.RESPONSE_MODEL] = doc["model"]
            return out
        return extract(doc) if isinstance(doc, dict) else {}


def _outcome(reader: ResponseReader) -> tuple[str, str | None]:
    status, reason, _ = http_status(reader.status_code, {})
    return status, reason


ResponseReader.outcome = _outcome  # type: ignore[attr-defined]


def http_status(code: int, headers: Mapping[str, str]) -> tuple[str, str | None, float | None]:
    status = _status.status_from_http(code)
    if status is None:
        return _status.OK, None, None
    retry_after = None
    raw = headers.get("retry-after-ms")
    try:
        if raw is not None:
            retry_after = float(raw) / 1000.0
        elif headers.get("retry-after") is not None:
            retry_after = float(headers["retry-after"])
    except ValueError:
        retry_after = None
    return status, f"http {code}", retry_after
