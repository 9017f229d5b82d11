"""What each provider API says in its answers: per-API readers of events and bodies.

:class:`Facts` accumulates what a response told so far (model, id, finish reasons,
tokens, the provider's error name); the ``*_event`` functions read one SSE event of an
API and the ``*_body`` functions one parsed JSON answer. :mod:`llmlens._wire` frames the
bytes and calls them. Tokens are normalised to the GenAI conventions here: input includes
cached input (Anthropic reports cache reads and writes on top of ``input_tokens``, so they
are added), output includes reasoning (Gemini reports thoughts apart from candidates, so
they are added).

Hot path: a Chat Completions stream is mostly plain content deltas, which teach nothing
once the first one is seen, so such events are recognised with a byte search and not
parsed (``_CHAT_NEEDS_PARSE``); Anthropic and Responses events are told apart by their
``event:`` name and only the few that carry facts are parsed.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Final

from llmlens import semconv as sc
from llmlens._finish import finish_reason

# A chunk that may carry usage, a finish reason or an error (values, not the nulls OpenAI
# writes on every chunk once usage is asked for), or Groq's x_groq block.
_CHAT_NEEDS_PARSE: Final = re.compile(rb'"(?:usage|finish_reason|error)"\s*:\s*[{"\[]|"x_groq"')


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _str(value: Any) -> str | None:
    return value[:256] if type(value) is str and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else {}


class Facts:
    """What a response said so far. Every field is optional: an abandoned stream has few."""

    __slots__ = ("_anthropic", "cache_read", "cache_write", "complete", "error", "finish", "first_content_at",
                 "input", "model", "output", "reasoning", "response_id")

    def __init__(self) -> None:
        self.model: str | None = None
        self.response_id: str | None = None
        self.finish: dict[int, str] = {}  # choice index -> provider's reason
        self.input: int | None = None
        self.output: int | None = None
        self.cache_read: int | None = None
        self.cache_write: int | None = None
        self.reasoning: int | None = None
        self.error: str | None = None
        self.complete = False
        self.first_content_at: float | None = None
        self._anthropic: dict[str, int] = {}

    def content(self) -> None:
        if self.first_content_at is None:
            self.first_content_at = time.monotonic()

    def names(self, model: Any, response_id: Any) -> None:
        if self.model is None:
            self.model = _str(model)
        if self.response_id is None:
            self.response_id = _str(response_id)

    def set_error(self, error: Any) -> None:
        """The provider's error name from an error object (never its message)."""
        if type(error) is dict:
            for key in ("code", "type", "status"):
                value = error.get(key)
                if type(value) is str and value:
                    self.error = value[:64]
                    return
            if type(error.get("code")) is int:
                self.error = str(error["code"])
                return
        elif type(error) is str and error:
            self.error = error[:64]
            return
        self.error = self.error or "error"

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if self.model is not None:
            attrs[sc.RESPONSE_MODEL] = self.model
        if self.response_id is not None:
            attrs[sc.RESPONSE_ID] = self.response_id
        if self.finish:
            reasons = tuple(r for r in (finish_reason(self.finish[i]) for i in sorted(self.finish)) if r)
            if reasons:
                attrs[sc.RESPONSE_FINISH_REASONS] = reasons
        for key, value in ((sc.USAGE_INPUT_TOKENS, self.input), (sc.USAGE_OUTPUT_TOKENS, self.output),
                           (sc.USAGE_CACHE_READ_INPUT_TOKENS, self.cache_read),
                           (sc.USAGE_CACHE_WRITE_INPUT_TOKENS, self.cache_write),
                           (sc.USAGE_REASONING_OUTPUT_TOKENS, self.reasoning)):
            if value is not None:
                attrs[key] = value
        if self.error is not None:
            attrs[sc.PROVIDER_ERROR] = self.error
        return attrs

    # --- usage shapes ----------------------------------------------------------------------
    def openai_usage(self, usage: Any) -> None:
        """Chat Completions, legacy completions, embeddings and the OpenAI-compatible providers."""
        if type(usage) is not dict:
            return
        prompt = _int(usage.get("prompt_tokens"))
        if prompt is not None:
            self.input = prompt
        completion = _int(usage.get("completion_tokens"))
        if completion is not None:
            self.output = completion
        cached = _int(_dict(usage.get("prompt_tokens_details")).get("cached_tokens"))
        if cached is None:
            cached = _int(usage.get("prompt_cache_hit_tokens"))  # DeepSeek
        if cached is not None:
            self.cache_read = cached
        reasoning = _int(_dict(usage.get("completion_tokens_details")).get("reasoning_tokens"))
        if reasoning is not None:
            self.reasoning = reasoning

    def responses_usage(self, usage: Any) -> None:
        if type(usage) is not dict:
            return
        self.input = _int(usage.get("input_tokens"))
        self.output = _int(usage.get("output_tokens"))
        self.cache_read = _int(_dict(usage.get("input_tokens_details")).get("cached_tokens"))
        self.reasoning = _int(_dict(usage.get("output_tokens_details")).get("reasoning_tokens"))

    def anthropic_usage(self, usage: Any) -> None:
        # message_delta's usage is cumulative and its absent or null fields mean "unchanged".
        if type(usage) is not dict:
            return
        raw = self._anthropic
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            value = _int(usage.get(key))
            if value is not None:
                raw[key] = value
        read = raw.get("cache_read_input_tokens")
        write = raw.get("cache_creation_input_tokens")
        uncached = raw.get("input_tokens")
        if uncached is not None:
            self.input = uncached + (read or 0) + (write or 0)
        self.output = raw.get("output_tokens")
        self.cache_read = read
        self.cache_write = write

    def gemini_usage(self, usage: Any) -> None:
        if type(usage) is not dict:
            return
        prompt = _int(usage.get("promptTokenCount"))
        candidates = _int(usage.get("candidatesTokenCount"))
        thoughts = _int(usage.get("thoughtsTokenCount"))
        if prompt is None and candidates is None and thoughts is None:
            return  # Vertex's intermediate chunks say only {"trafficType": ...}
        tool_prompt = _int(usage.get("toolUsePromptTokenCount"))
        if prompt is not None:
            self.input = prompt + (tool_prompt or 0)
        if candidates is not None or thoughts is not None:
            self.output = (candidates or 0) + (thoughts or 0)
        if thoughts is not None:
            self.reasoning = thoughts
        cached = _int(usage.get("cachedContentTokenCount"))
        if cached is not None:
            self.cache_read = cached


def _loads(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


# --- OpenAI Chat Completions, legacy completions, OpenAI-compatible providers -----------------
def _chat_choice(facts: Facts, choice: Any) -> None:
    if type(choice) is not dict:
        return
    if facts.first_content_at is None:
        delta = choice.get("delta")
        if type(delta) is dict:
            if (delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
                    or delta.get("tool_calls") or delta.get("function_call") or delta.get("refusal")
                    or delta.get("audio")):
                facts.content()
        elif choice.get("text"):  # legacy completions
            facts.content()
    reason = choice.get("finish_reason")
    if type(reason) is str and reason:
        index = choice.get("index")
        facts.finish[index if type(index) is int else 0] = reason


def chat_event(facts: Facts, event: bytes | None, data: bytes) -> None:
    if data[:1] != b"{":
        data = data.strip()
        if data == b"[DONE]":
            facts.complete = True
        if data[:1] != b"{":
            return
    if facts.first_content_at is not None and facts.model is not None:
        # Compact JSON (what providers send) is checked with substring searches, several
        # times faster than the regex, which serves JSON written with spaces.
        if b'": ' in data or b'" :' in data:
            if _CHAT_NEEDS_PARSE.search(data) is None:
                return  # one more content delta
        elif not (b'usage":{' in data or b'reason":"' in data or b'error":' in data or b"x_groq" in data):
            return
    chunk = _loads(data)
    if type(chunk) is not dict:
        return
    error = chunk.get("error")
    if error:
        facts.set_error(error)
        facts.complete = True
        return
    _chat_object(facts, chunk)


def chat_body(facts: Facts, body: Any) -> None:
    """A ``chat.completion``, ``text_completion`` or embeddings list."""
    if type(body) is dict:
        _chat_object(facts, body)


def _chat_object(facts: Facts, obj: dict[str, Any]) -> None:
    # A stream's chunk and a whole answer carry the same fields: names, choices with their
    # finish reasons, usage (at the top, or in Groq's x_groq block).
    facts.names(obj.get("model"), obj.get("id"))
    choices = obj.get("choices")
    if type(choices) is list:
        for choice in choices:
            _chat_choice(facts, choice)
    facts.openai_usage(obj.get("usage"))
    groq = obj.get("x_groq")
    if type(groq) is dict:
        facts.openai_usage(groq.get("usage"))


# --- OpenAI Responses ---------------------------------------------------------------------------
_RESPONSES_TERMINAL: Final = frozenset({"response.completed", "response.incomplete", "response.failed"})


def responses_body(facts: Facts, response: Any) -> None:
    if type(response) is not dict:
        return
    facts.names(response.get("model"), response.get("id"))
    status = response.get("status")
    if status == "incomplete":
        reason = _dict(response.get("incomplete_details")).get("reason")
        facts.finish[0] = reason if type(reason) is str and reason else "incomplete"
    elif status == "failed":
        facts.finish[0] = "error"
        facts.set_error(response.get("error"))
    elif status == "completed":
        output = response.get("output")
        calls = type(output) is list and any(
            type(item) is dict and str(item.get("type", "")).endswith("_call") for item in output)
        facts.finish[0] = "tool_call" if calls else "stop"
    facts.responses_usage(response.get("usage"))
    error = response.get("error")
    if error and facts.error is None:
        facts.set_error(error)


def responses_event(facts: Facts, event: bytes | None, data: bytes) -> None:
    kind = event.decode("ascii", "replace") if event else None
    if kind is not None and kind.endswith(".delta"):
        facts.content()
        return
    if kind is not None and kind not in _RESPONSES_TERMINAL and kind not in (
            "response.created", "response.in_progress", "error"):
        return
    if kind in ("response.created", "response.in_progress") and facts.model is not None:
        return
    payload = _loads(data)
    if type(payload) is not dict:
        return
    kind = kind or payload.get("type")
    if type(kind) is str and kind.endswith(".delta"):
        facts.content()
    elif kind == "error":
        facts.set_error(payload)
        facts.complete = True
    elif kind in _RESPONSES_TERMINAL:
        responses_body(facts, payload.get("response"))
        facts.complete = True
    elif kind in ("response.created", "response.in_progress"):
        response = _dict(payload.get("response"))
        facts.names(response.get("model"), response.get("id"))


# --- Anthropic Messages -------------------------------------------------------------------------
def anthropic_body(facts: Facts, message: Any) -> None:
    if type(message) is not dict:
        return
    if message.get("type") == "error":
        facts.set_error(message.get("error"))
        return
    facts.names(message.get("model"), message.get("id"))
    reason = message.get("stop_reason")
    if type(reason) is str and reason:
        facts.finish[0] = reason
    facts.anthropic_usage(message.get("usage"))


def anthropic_event(facts: Facts, event: bytes | None, data: bytes) -> None:
    if event == b"content_block_delta":
        facts.content()
        return
    if event in (b"ping", b"content_block_start", b"content_block_stop"):
        return
    if event == b"message_stop":
        facts.complete = True
        return
    payload = _loads(data)
    if type(payload) is not dict:
        return
    kind = payload.get("type")
    if kind == "message_start":
        anthropic_body(facts, payload.get("message"))
    elif kind == "message_delta":
        reason = _dict(payload.get("delta")).get("stop_reason")
        if type(reason) is str and reason:
            facts.finish[0] = reason
        facts.anthropic_usage(payload.get("usage"))
    elif kind == "content_block_delta":
        facts.content()
    elif kind == "message_stop":
        facts.complete = True
    elif kind == "error":
        facts.set_error(payload.get("error"))
        facts.complete = True


# --- Google Gemini / Vertex AI ------------------------------------------------------------------
def gemini_body(facts: Facts, chunk: Any) -> None:
    """One ``GenerateContentResponse`` (a whole answer, or one chunk of a stream)."""
    if type(chunk) is list:  # a whole JSON-array stream, or an error wrapped in one
        for item in chunk:
            gemini_body(facts, item)
        return
    if type(chunk) is not dict:
        return
    error = chunk.get("error")
    if error:
        facts.set_error(error)
        facts.complete = True
        return
    facts.names(chunk.get("modelVersion"), chunk.get("responseId"))
    candidates = chunk.get("candidates")
    if type(candidates) is list:
        for position, candidate in enumerate(candidates):
            if type(candidate) is not dict:
                continue
            if facts.first_content_at is None and _dict(candidate.get("content")).get("parts"):
                facts.content()
            reason = candidate.get("finishReason")
            if type(reason) is str and reason:
                index = candidate.get("index")
                facts.finish[index if type(index) is int else position] = reason
                facts.complete = True
    facts.gemini_usage(chunk.get("usageMetadata"))


def gemini_event(facts: Facts, event: bytes | None, data: bytes) -> None:
    if (facts.first_content_at is not None and facts.model is not None and b"TokenCount" not in data
            and b"finishReason" not in data and b'"error"' not in data):
        return  # more text, with no usage (Vertex sends only trafficType until the end)
    gemini_body(facts, _loads(data))


# --- anything else on a model API: read usage by its common names ---------------------------------
def generic_body(facts: Facts, body: Any) -> None:
    if type(body) is list and body:
        body = body[0]
    if type(body) is not dict:
        return
    if body.get("error"):
        facts.set_error(body["error"])
        return
    facts.names(body.get("model"), body.get("id"))
    usage = body.get("usage")
    if type(usage) is dict:
        if "prompt_tokens" in usage:
            facts.openai_usage(usage)
        elif "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:
            facts.anthropic_usage(usage)
        elif "input_tokens" in usage:
            facts.responses_usage(usage)
        elif "inputTokens" in usage:  # Bedrock Converse: cache reads and writes on top, as Anthropic
            facts.anthropic_usage({"input_tokens": usage.get("inputTokens"),
                                   "output_tokens": usage.get("outputTokens"),
                                   "cache_read_input_tokens": usage.get("cacheReadInputTokens"),
                                   "cache_creation_input_tokens": usage.get("cacheWriteInputTokens")})
    elif type(body.get("usageMetadata")) is dict:
        facts.gemini_usage(body["usageMetadata"])
    for key in ("stop_reason", "stopReason"):
        if type(body.get(key)) is str and body[key]:
            facts.finish[0] = body[key]


def generic_event(facts: Facts, event: bytes | None, data: bytes) -> None:
    if data.strip() == b"[DONE]":
        facts.complete = True
        return
    if facts.first_content_at is None:
        facts.content()
    generic_body(facts, _loads(data))
