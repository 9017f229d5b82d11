"""llmlens.configure: where spans go, precedence, provider reuse, and a collector that is down."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmlens
from llmlens._config import resolve_settings
from llmlens.collector.store import open_store


def test_the_embedded_sqlite_store_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = resolve_settings()
    assert settings.db_url == "sqlite:///llmlens.db" and settings.endpoint is None
    monkeypatch.setenv("LLMLENS_DB_URL", "sqlite:////tmp/x.db")
    assert resolve_settings().db_url == "sqlite:////tmp/x.db"


def test_llmlens_endpoint_sends_to_a_collector_and_the_apps_otlp_variables_are_ignored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # OTEL_EXPORTER_OTLP_* configure the application's pipeline (its APM), not llmlens.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://apm.example:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://apm.example:4318/v1/traces")
    assert resolve_settings().endpoint is None and resolve_settings().db_url == "sqlite:///llmlens.db"
    monkeypatch.setenv("LLMLENS_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("LLMLENS_HEADERS", "authorization=Bearer t")
    settings = resolve_settings()
    assert settings.endpoint == "http://127.0.0.1:4318/v1/traces" and settings.db_url is None
    assert settings.headers == {"authorization": "Bearer t"}
    # An explicit argument wins over the variable.
    assert resolve_settings(db_url="sqlite:///a.db").endpoint is None


def test_capture_mode_comes_from_the_argument_or_llmlens_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_settings().capture == "all"
    monkeypatch.setenv("LLMLENS_CAPTURE", "observed")
    assert resolve_settings().capture == "observed"
    assert resolve_settings(capture="off").capture == "off"
    with pytest.raises(ValueError):
        resolve_settings(capture="some")


def test_own_model_servers_come_from_llmlens_hosts_and_the_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMLENS_HOSTS", "vLLM.internal:8000=openai, ollama:11434=ollama")
    assert resolve_settings().hosts == {"vllm.internal:8000": "openai", "ollama:11434": "ollama"}
    assert resolve_settings(hosts={"ollama:11434": "meta"}).hosts["ollama:11434"] == "meta"


def test_capture_and_service_name_come_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "support-bot")
    settings = resolve_settings()
    assert settings.capture_content is True and settings.service_name == "support-bot"
    assert resolve_settings(capture_content=False).capture_content is False


@pytest.mark.parametrize("kwargs", [{"endpoint": "ftp://collector"}, {"max_content_chars": 0}, {"capture": "x"}])
def test_invalid_explicit_arguments_raise_value_error_at_configure_time(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        llmlens.configure(tracer_provider=TracerProvider(), **kwargs)  # type: ignore[arg-type]


def test_reconfiguring_replaces_the_exporter_instead_of_stacking_another(sqlite_url: str) -> None:
    provider = TracerProvider()
    first = InMemorySpanExporter()
    llmlens.configure(exporter=first, tracer_provider=provider)
    second = InMemorySpanExporter()
    llmlens.configure(exporter=second, tracer_provider=provider)

    @llmlens.observe(task="t")
    def call() -> dict[str, object]:
        return {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 3, "completion_tokens": 1}}

    call()
    assert llmlens.flush()
    assert len(first.get_finished_spans()) == 0
    assert len(second.get_finished_spans()) == 1


def test_a_collector_that_is_down_never_slows_or_breaks_the_call(closed_port: int) -> None:
    provider = TracerProvider()
    llmlens.configure(endpoint=f"http://127.0.0.1:{closed_port}", tracer_provider=provider)

    @llmlens.observe(task="t")
    def call() -> str:
        return "answer"

    start = time.perf_counter()
    assert [call() for _ in range(20)] == ["answer"] * 20
    assert time.perf_counter() - start < 1.0  # export happens on the processor's thread
    # Shutdown is bounded even though every export fails and the exporter wants to retry.
    start = time.perf_counter()
    assert llmlens.shutdown(timeout=1.0) is False
    assert time.perf_counter() - start < 2.0


def test_the_embedded_store_gets_decorated_calls_with_their_task(sqlite_url: str) -> None:
    llmlens.configure(db_url=sqlite_url, tracer_provider=TracerProvider())

    @llmlens.observe(task="classify_intent", prompt_version="intent@2")
    def call() -> dict[str, object]:
        return {"id": "chatcmpl-1", "model": "gpt-4o-mini", "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "x"}}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 200}}

    call()
    assert llmlens.flush()
    (row,) = open_store(sqlite_url).fetch_rows()
    assert (row["task"], row["prompt_version"], row["request_model"]) == ("classify_intent", "intent@2", "gpt-4o-mini")
    assert row["cost_usd"] == pytest.approx(0.00027)
