"""An in-process stand-in for model providers, for ``llmlens demo``: no network, no keys.

It answers in the shapes the real SDKs return (OpenAI Chat Completions, Anthropic
Messages, Google GenAI ``generateContent``, and the OpenAI and Anthropic stream events),
as plain dicts, and fails the way they fail: exceptions named like the SDKs' and carrying
``status_code`` and a response with headers, which is all llmlens looks at to classify
them. Latency is real but compressed: a request of simulated ``t`` ms sleeps
``t / time_scale`` ms, so the decorator measures genuine (scaled) durations.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final


class _Response:
    """What SDK errors hang off ``.response``: a status and headers (retry-after)."""

    def __init__(self, status_code: int, headers: dict[str, str]) -> None:
        self.status_code = status_code
        self.headers = headers


class APIStatusError(Exception):
    """Base of the HTTP errors, as in the openai and anthropic SDKs."""

    status_code: int = 500

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.response = _Response(self.status_code, headers or {})


class RateLimitError(APIStatusError):
    status_code = 429

    def __init__(self, message: str = "Rate limit reached for requests", retry_after: str = "0") -> None:
        super().__init__(message, {"retry-after": retry_after})


class InternalServerError(APIStatusError):
    status_code = 500


class OverloadedError(APIStatusError):
    status_code = 529  # Anthropic's "overloaded"


class ServiceUnavailableError(APIStatusError):
    status_code = 503


class APITimeoutError(Exception):
    """The client gave up waiting (no HTTP status), as ``openai.APITimeoutError``."""

    def __init__(self, message: str = "Request timed out.") -> None:
        super().__init__(message)


@dataclass(frozen=True)
class ModelProfile:
    """How a simulated model answers: response shape and speed."""

    name: str
    shape: str  # "openai", "anthropic" or "google"
    ttft_ms: float  # typical time to first token
    tokens_per_second: float


MODELS: Final[dict[str, ModelProfile]] = {
    p.name: p for p in (
        ModelProfile("gpt-4o-mini", "openai", 380, 95),
        ModelProfile("gpt-4o", "openai", 520, 70),
        ModelProfile("claude-sonnet-4-5", "anthropic", 950, 60),
        ModelProfile("claude-3-5-haiku-latest", "anthropic", 420, 125),
        ModelProfile("gemini-2.0-flash", "google", 300, 190),
        # A self-hosted fine-tune: no public price, so the demo gives it one (an override).
        ModelProfile("acme-support-llama-8b", "openai", 160, 45),
    )
}


@dataclass(frozen=True)
class Usage:
    """Token counts of one request. ``input`` includes ``cache_read`` and ``cache_write``."""

    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0


@dataclass
class FakeProvider:
    """Answers requests for any model in :data:`MODELS`.

    Randomness (latency, ids) comes from the ``rng`` each request passes in, so a caller
    running requests on many threads still gets the same answers for the same seed.
    """

    time_scale: float = 50.0
    _ids: Iterator[int] = field(default_factory=itertools.count)

    @staticmethod
    def latency_ms(model: str, output_tokens: int, rng: random.Random) -> tuple[float, float]:
        """(time to first token, total) in simulated ms, with a long right tail."""
        profile = MODELS[model]
        ttft = profile.ttft_ms * rng.lognormvariate(0, 0.35)
        total = ttft + 1000 * output_tokens / profile.tokens_per_second * rng.lognormvariate(0, 0.2)
        return ttft, total

    def wait(self, simulated_ms: float) -> None:
        time.sleep(simulated_ms / 1000 / self.time_scale)

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):012d}"

    def complete(self, model: str, text: str, usage: Usage, rng: random.Random, *,
                 failure: Exception | None = None) -> dict[str, Any]:
        """One non-streamed request: sleep its latency, then answer or raise ``failure``."""
        _, total = self.latency_ms(model, usage.output, rng)
        if failure is not None:
            # Errors come back fast, except timeouts, which take the client's whole deadline.
            self.wait(30_000 if isinstance(failure, APITimeoutError) else total * 0.15)
            raise failure
        self.wait(total)
        shape = MODELS[model].shape
        if shape == "anthropic":
            return self._anthropic(model, text, usage)
        if shape == "google":
            return self._google(model, text, usage)
        return self._openai(model, text, usage)

    def stream(self, model: str, text: str, usage: Usage, rng: random.Random, *,
               failure: Exception | None = None) -> Iterator[dict[str, Any]]:
        """A streamed request: the provider's events, the first after the time to first token.

        A ``failure`` is raised where SDKs raise it, when the stream is opened.
        """
        ttft, total = self.latency_ms(model, usage.output, rng)
        pieces = _split(text, 6)
        if failure is not None:
            self.wait(ttft * 0.5)
            raise failure
        self.wait(ttft)
        if MODELS[model].shape == "anthropic":
            yield from self._anthropic_events(model, pieces, usage, (total - ttft) / len(pieces))
        else:
            yield from self._openai_chunks(model, pieces, usage, (total - ttft) / len(pieces))

    # --- response shapes ---------------------------------------------------------------------

    def _openai(self, model: str, text: str, usage: Usage) -> dict[str, Any]:
        return {
            "id": self._id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()),
            "model": _dated(model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": _openai_usage(usage),
        }

    def _anthropic(self, model: str, text: str, usage: Usage) -> dict[str, Any]:
        return {
            "id": self._id("msg_"), "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "usage": _anthropic_usage(usage),
        }

    def _google(self, model: str, text: str, usage: Usage) -> dict[str, Any]:
        return {
            "responseId": self._id("g-"), "modelVersion": model,
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": usage.input, "candidatesTokenCount": usage.output,
                              "cachedContentTokenCount": usage.cache_read,
                              "totalTokenCount": usage.input + usage.output},
        }

    def _openai_chunks(self, model: str, pieces: list[str], usage: Usage, gap_ms: float) -> Iterator[dict[str, Any]]:
        base = {"id": self._id("chatcmpl-"), "object": "chat.completion.chunk", "model": _dated(model)}
        for n, piece in enumerate(pieces):
            if n:
                self.wait(gap_ms)
            yield {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        # stream_options={"include_usage": True}: usage arrives in a last, choice-less chunk.
        yield {**base, "choices": [], "usage": _openai_usage(usage)}

    def _anthropic_events(self, model: str, pieces: list[str], usage: Usage,
                          gap_ms: float) -> Iterator[dict[str, Any]]:
        start_usage = {**_anthropic_usage(usage), "output_tokens": 1}
        yield {"type": "message_start",
               "message": {"id": self._id("msg_"), "type": "message", "role": "assistant", "model": model,
                           "content": [], "usage": start_usage}}
        yield {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        for n, piece in enumerate(pieces):
            if n:
                self.wait(gap_ms)
            yield {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        yield {"type": "content_block_stop", "index": 0}
        yield {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
               "usage": {"output_tokens": usage.output}}
        yield {"type": "message_stop"}


def _dated(model: str) -> str:
    # OpenAI answers with a dated snapshot of the alias that was requested.
    return {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4o": "gpt-4o-2024-08-06"}.get(model, model)


def _openai_usage(usage: Usage) -> dict[str, Any]:
    # OpenAI counts cached tokens inside prompt_tokens.
    return {"prompt_tokens": usage.input, "completion_tokens": usage.output,
            "total_tokens": usage.input + usage.output,
            "prompt_tokens_details": {"cached_tokens": usage.cache_read}}


def _anthropic_usage(usage: Usage) -> dict[str, Any]:
    # Anthropic reports cache reads and writes on top of input_tokens.
    return {"input_tokens": usage.input - usage.cache_read - usage.cache_write, "output_tokens": usage.output,
            "cache_read_input_tokens": usage.cache_read, "cache_creation_input_tokens": usage.cache_write}


def _split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // parts))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]
