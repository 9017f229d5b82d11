"""``llmlens.configure``: where spans go, and the settings the decorator reads.

Precedence is explicit argument > ``LLMLENS_*`` or standard ``OTEL_*`` variable > default.
The environment is read here and nowhere else in the instrumentation, and only when
``configure`` (or the first decorated call) asks for it, never at import time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from llmlens import semconv
from llmlens._merge import ProviderSpanMerger

if TYPE_CHECKING:
    from opentelemetry.context import Context

logger = logging.getLogger("llmlens")

DEFAULT_DB_URL = "sqlite:///llmlens.db"
DEFAULT_SERVICE_NAME = "llmlens-app"
DEFAULT_MAX_CONTENT_CHARS = 4096
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class Settings:
    """What :func:`configure` decided. Read by the decorator on every call, so it is immutable."""

    db_url: str | None = None
    endpoint: str | None = None
    service_name: str = DEFAULT_SERVICE_NAME
    capture_content: bool = False
    max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS
    headers: dict[str, str] = field(default_factory=dict)


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip().lower() in _TRUE


def _traces_endpoint(base: str) -> str:
    # OTEL_EXPORTER_OTLP_ENDPOINT is a base URL; the signal path is appended per the spec.
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def _parse_headers(raw: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in (raw or "").split(","):
        if "=" in item:
            key, _, value = item.partition("=")
            headers[key.strip()] = value.strip()
    return headers


def resolve_settings(
    db_url: str | None = None,
    endpoint: str | None = None,
    service_name: str | None = None,
    capture_content: bool | None = None,
    max_content_chars: int | None = None,
) -> Settings:
    """Combine explicit arguments with the environment into :class:`Settings`."""
    env = os.environ
    if endpoint is None and db_url is None:
        raw = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if raw:
            endpoint = raw
        elif env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            endpoint = _traces_endpoint(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    elif endpoint is not None:
        endpoint = _traces_endpoint(endpoint)
    if endpoint is None and db_url is None:
        db_url = env.get("LLMLENS_DB_URL") or DEFAULT_DB_URL
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
    if capture_content is None:
        capture_content = bool(_env_flag("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"))
    if max_content_chars is None:
        max_content_chars = int(env.get("LLMLENS_MAX_CONTENT_CHARS") or DEFAULT_MAX_CONTENT_CHARS)
    if max_content_chars <= 0:
        raise ValueError("max_content_chars must be positive")
    if service_name is None:
        service_name = env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    headers = _parse_headers(env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS"))
    return Settings(
        db_url=db_url,
        endpoint=endpoint,
        service_name=service_name,
        capture_content=capture_content,
        max_content_chars=max_content_chars,
        headers=headers,
    )


class _SwitchableProcessor(SpanProcessor):
    """The one processor llmlens adds to a TracerProvider.

    The SDK cannot remove a processor once added, so reconfiguring swaps what this one
    delegates to instead of stacking another exporter on the provider.
    """

    def __init__(self) -> None:
        self._inner: tuple[SpanProcessor, ...] = ()

    def set_inner(self, processors: tuple[SpanProcessor, ...]) -> tuple[SpanProcessor, ...]:
        old, self._inner = self._inner, processors
        return old

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self._inner:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self._inner:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self.set_inner(()):
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(processor.force_flush(timeout_millis) for processor in self._inner)


@dataclass
class _State:
    settings: Settings | None = None
    provider: TracerProvider | None = None
    processor: _SwitchableProcessor | None = None
    tracer: trace.Tracer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_state = _State()


def _make_exporter(settings: Settings) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    if settings.db_url is not None:
        # Imported here: the store pulls in SQLAlchemy, which `import llmlens` must not.
        from llmlens.collector.exporter import StoreSpanExporter

        exporters.append(StoreSpanExporter(settings.db_url, capture_content=settings.capture_content,
                                            max_content_chars=settings.max_content_chars))
    if settings.endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter(endpoint=settings.endpoint, headers=settings.headers or None))
    return exporters


def configure(
    db_url: str | None = None,
    endpoint: str | None = None,
    service_name: str | None = None,
    capture_content: bool | None = None,
    *,
    max_content_chars: int | None = None,
    tracer_provider: TracerProvider | None = None,
    exporter: SpanExporter | None = None,
) -> Settings:
    """Send llmlens spans somewhere and set the decorator's defaults.

    By default spans are written in-process to the SQLite store at ``LLMLENS_DB_URL``
    (``sqlite:///llmlens.db``). Give ``endpoint`` (or set ``OTEL_EXPORTER_OTLP_ENDPOINT``)
    to export OTLP/HTTP to a collector instead; give both ``db_url`` and ``endpoint`` to do
    both. A TracerProvider the application already installed is reused; otherwise one is
    created and installed globally. ``exporter`` replaces the default exporters (tests use
    the SDK's ``InMemorySpanExporter``). Calling ``configure`` again replaces the previous
    configuration after flushing it.

    >>> import llmlens
    >>> llmlens.configure(db_url="sqlite:///llmlens.db")  # doctest: +SKIP
    """
    settings = resolve_settings(db_url, endpoint, service_name, capture_content, max_content_chars)
    exporters = [exporter] if exporter is not None else _make_exporter(settings)
    with _state.lock:
        provider = _resolve_provider(tracer_provider, settings.service_name)
        if _state.provider is not provider or _state.processor is None:
            _state.processor = _SwitchableProcessor()
            provider.add_span_processor(_state.processor)
            _state.provider = provider
        # The merger runs first so its on_start marks provider-SDK spans before export.
        inner: tuple[SpanProcessor, ...] = (
            ProviderSpanMerger(),
            *(BatchSpanProcessor(e, schedule_delay_millis=500) for e in exporters),
        )
        old = _state.processor.set_inner(inner)
        _state.settings = settings
        _state.tracer = provider.get_tracer(semconv.SCOPE_NAME, _version())
    for processor in old:
        processor.shutdown()
    return settings


def _resolve_provider(explicit: TracerProvider | None, service_name: str) -> TracerProvider:
    if explicit is not None:
        return explicit
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider(resource=Resource.create({semconv.SERVICE_NAME: service_name}))
    trace.set_tracer_provider(provider)
    # set_tracer_provider is set-once: if someone raced us, use theirs.
    current = trace.get_tracer_provider()
    return current if isinstance(current, TracerProvider) else provider


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmlens")
    except PackageNotFoundError:  # running from a source tree
        return "0"


def get_settings() -> Settings:
    """The active settings; from the environment alone when :func:`configure` was not called."""
    settings = _state.settings
    if settings is None:
        settings = resolve_settings()
        _state.settings = settings
    return settings


def get_tracer() -> trace.Tracer:
    """The tracer for llmlens spans: the configured provider's, else the global one's."""
    tracer = _state.tracer
    if tracer is None:
        tracer = trace.get_tracer(semconv.SCOPE_NAME, _version())
        _state.tracer = tracer
    return tracer


def _bounded(work: Callable[[], bool], timeout: float, name: str) -> bool:
    # The SDK's BatchSpanProcessor.force_flush ignores its timeout and an exporter retrying
    # an unreachable collector can hold it for many seconds: run it on a daemon thread and
    # stop waiting at the deadline, so flush and shutdown return when they said they would.
    outcome: list[bool] = []
    worker = threading.Thread(target=lambda: outcome.append(bool(work())), name=name, daemon=True)
    worker.start()
    worker.join(max(0.0, timeout))
    return bool(outcome and outcome[0])


def flush(timeout: float = 10.0) -> bool:
    """Export everything queued so far; True when it all made it within ``timeout`` seconds."""
    processor = _state.processor
    if processor is None:
        return True
    return _bounded(lambda: processor.force_flush(int(timeout * 1000)), timeout, "llmlens-flush")


def shutdown(timeout: float = 10.0) -> bool:
    """Flush and stop llmlens' exporters within ``timeout`` seconds in all.

    The application's TracerProvider is left running. Returns False when something was
    still queued or exporting at the deadline (an unreachable collector, say); the
    exporters are then left to finish on a daemon thread rather than holding up exit.
    """
    deadline = time.monotonic() + timeout
    ok = flush(timeout)
    with _state.lock:
        processor = _state.processor
        _state.settings = None
    if processor is None:
        return ok

    def stop() -> bool:
        processor.shutdown()
        return True

    return _bounded(stop, deadline - time.monotonic(), "llmlens-shutdown") and ok


def _reset_for_tests() -> None:
    """Forget the configuration (the provider keeps our processor, now empty)."""
    shutdown(timeout=5)
    _state.tracer = None
