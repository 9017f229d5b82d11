"""Instrumentation never breaks the call it wraps: llmlens' own errors are logged and swallowed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import llmlens
from llmlens import _attempt, _usage
from llmlens import semconv as sc

if TYPE_CHECKING:
    from conftest import Spans


class ExplodingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("exporter down")

    def shutdown(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _fresh_burst() -> None:
    _attempt._burst.last = 0.0
    _attempt._burst.suppressed = 0


def test_a_failing_exporter_does_not_reach_the_caller(provider: TracerProvider) -> None:
    llmlens.configure(tracer_provider=provider, exporter=ExplodingExporter())

    @llmlens.observe
    def call() -> str:
        return "result"

    assert call() == "result"
    llmlens.flush()


def test_a_failing_usage_extraction_is_logged_and_the_result_passes_through(
        spans: Spans, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(obj: Any) -> dict[str, Any]:
        raise RuntimeError("bug in llmlens")

    monkeypatch.setattr(_attempt, "extract", broken)
    result = {"answer": 42}

    @llmlens.observe
    def call() -> dict[str, int]:
        return result

    with caplog.at_level(logging.WARNING, logger="llmlens"):
        assert call() is result
        assert call() is result
    assert spans.llmlens()[0].attributes[sc.STATUS] == "ok"  # type: ignore[index]
    warnings = [r for r in caplog.records if r.name == "llmlens"]
    assert len(warnings) == 1, "logged once per burst"


def test_a_failing_tracer_still_runs_the_call_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_tracer() -> Any:
        raise RuntimeError("no tracer")

    monkeypatch.setattr(_attempt, "_tracer", no_tracer)
    calls = []

    @llmlens.observe(retry=2)
    def call() -> str:
        calls.append(1)
        return "ok"

    @llmlens.observe
    def plain() -> str:
        calls.append(1)
        return "ok"

    assert call() == "ok" and plain() == "ok"
    assert len(calls) == 2


def test_a_user_exception_passes_through_even_when_recording_it_fails(
        spans: Spans, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(exc: BaseException) -> Any:
        raise RuntimeError("classifier bug")

    monkeypatch.setattr(_attempt._status, "classify_exception", broken)
    error = ValueError("user error")

    @llmlens.observe
    def call() -> None:
        raise error

    with pytest.raises(ValueError) as caught:
        call()
    assert caught.value is error


def test_unknown_return_values_are_fine(spans: Spans) -> None:
    @llmlens.observe
    def call(value: Any) -> Any:
        return value

    for value in (None, 3, "text", b"bytes", [1, 2], object(), {"weird": {"usage": 5}}):
        assert call(value) is value
    assert all(s.attributes[sc.STATUS] == "ok" for s in spans.llmlens())  # type: ignore[index]


def test_unconfigured_llmlens_records_nothing_and_does_not_fail() -> None:
    @llmlens.observe
    def call() -> int:
        return 1

    assert call() == 1


def test_extraction_handles_every_documented_shape() -> None:
    x = _usage.extract
    responses = {"object": "response", "model": "gpt-4.1", "id": "r", "status": "completed",
                 "usage": {"input_tokens": 9, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 2},
                           "output_tokens_details": {"reasoning_tokens": 1}}}
    assert (x(responses)[sc.USAGE_INPUT_TOKENS], x(responses)[sc.USAGE_REASONING_OUTPUT_TOKENS]) == (9, 1)
    anthropic = {"type": "message", "model": "claude", "stop_reason": "end_turn",
                 "usage": {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 10,
                           "cache_creation_input_tokens": 3}}
    attrs = x(anthropic)
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_CACHE_WRITE_INPUT_TOKENS]) == (18, 3)
    google = {"modelVersion": "gemini-2.5-flash", "candidates": [{"finishReason": "STOP"}],
              "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 5, "thoughtsTokenCount": 7,
                                "cachedContentTokenCount": 12}}
    attrs = x(google)
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (30, 12)
    assert (attrs[sc.USAGE_REASONING_OUTPUT_TOKENS], attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS]) == (7, 12)
    assert attrs[sc.RESPONSE_MODEL] == "gemini-2.5-flash" and attrs[sc.RESPONSE_FINISH_REASONS] == ["stop"]

    class ModelResponse:  # LiteLLM's shape, attribute access, provider in hidden params
        __module__ = "litellm.types.utils"
        object = "chat.completion"
        model = "claude-haiku-4-5"
        id = "x"
        choices = ()
        usage = type("U", (), {"prompt_tokens": 50, "completion_tokens": 5, "prompt_tokens_details": None,
                               "completion_tokens_details": None, "cache_creation_input_tokens": 8})()
        _hidden_params: ClassVar[dict[str, str]] = {"custom_llm_provider": "anthropic"}

    attrs = x(ModelResponse())
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_CACHE_WRITE_INPUT_TOKENS]) == (50, 8)
    assert attrs[sc.PROVIDER_NAME] == "anthropic"
    # One response class for every provider: each response names its own, never the class.
    openai_one = ModelResponse()
    openai_one._hidden_params = {"custom_llm_provider": "openai"}
    assert x(openai_one)[sc.PROVIDER_NAME] == "openai"
    assert x(ModelResponse())[sc.PROVIDER_NAME] == "anthropic"
    assert _usage.response_text(google | {"candidates": [{"content": {"parts": [{"text": "hi"}]}}]}) == "hi"
    assert _usage.response_text(anthropic | {"content": [{"type": "text", "text": "a"}]}) == "a"
