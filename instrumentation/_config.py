"""``llmlens.configure``: where spans go, and the settings the decorator and the capture read.

Precedence is explicit argument > ``LLMLENS_*`` variable (or ``OTEL_SERVICE_NAME`` and
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``) > default. The environment is read
here and nowhere else in the instrumentation, and only when ``configure`` (or the first
decorated call) asks for it, never at import time.

The application's OpenTelemetry stays the application's: llmlens records on a tracer
provider of its own (always sampled, never installed as the global one), adds nothing to
the application's provider, and never reads ``OTEL_EXPORTER_OTLP_*`` (those point the
application's pipeline at its APM). ``also_export_to`` is the one, explicit, way in.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from llmlens import _pipeline, semconv
from llmlens._merge import ProviderSpanMerger

if TYPE_CHECKING:
    from opentelemetry.context import Context

logger = logging.getLogger("llmlens")

DEFAULT_DB_URL = "sqlite:///llmlens.db"
DEFAULT_SERVICE_NAME = "llmlens-app"
DEFAULT_MAX_CONTENT_CHARS = 4096
CAPTURE_MODES = ("all", "observed", "off")
DEFAULT_EXIT_TIMEOUT = _pipeline.DEFAULT_EXIT_TIMEOUT
DEFAULT_MAX_QUEUE_SIZE = _pipeline.DEFAULT_MAX_QUEUE_SIZE
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
    # Which provider requests the HTTP layer records: "all" (also those outside any
    # observed call, as rows without a task), "observed" (inside @observe only), "off".
    capture: str = "all"
    # Extra host (or host:port) -> provider names, for self-hosted OpenAI-compatible servers.
    hosts: dict[str, str] = field(default_factory=dict)
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip().lower() in _TRUE


def _traces_endpoint(base: str) -> str:
    # An endpoint is a base URL, as in OTLP: the signal path is appended.
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def _parse_pairs(raw: str | None) -> dict[str, str]:
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
    capture: str | None = None,
    hosts: Mapping[str, str] | None = None,
    exit_timeout: float | None = None,
    max_queue_size: int | None = None,
) -> Settings:
    """Combine explicit arguments with the environment into :class:`Settings`."""
    env = os.environ
    if endpoint is None and db_url is None:
        # llmlens' own variables only: OTEL_EXPORTER_OTLP_* belong to the app's APM.
        endpoint = env.get("LLMLENS_ENDPOINT") or None
        db_url = env.get("LLMLENS_DB_URL") or (None if endpoint else DEFAULT_DB_URL)
    if endpoint is not None:
        endpoint = _traces_endpoint(endpoint)
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
    if capture_content is None:
        capture_content = bool(_env_flag("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"))
    if max_content_chars is None:
        max_content_chars = int(env.get("LLMLENS_MAX_CONTENT_CHARS") or DEFAULT_MAX_CONTENT_CHARS)
    if max_content_chars <= 0:
        raise ValueError("max_content_chars must be positive")
    if service_name is None:
        service_name = env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    if capture is None:
        capture = (env.get("LLMLENS_CAPTURE") or "all").strip().lower()
    if capture not in CAPTURE_MODES:
        raise ValueError(f"capture must be one of {', '.join(CAPTURE_MODES)}, got {capture!r}")
    if exit_timeout is None:
        exit_timeout = float(env.get("LLMLENS_EXIT_TIMEOUT") or DEFAULT_EXIT_TIMEOUT)
    if not exit_timeout >= 0:
        raise ValueError("exit_timeout must be zero or more seconds")
    if max_queue_size is None:
        max_queue_size = int(env.get("LLMLENS_MAX_QUEUE_SIZE") or DEFAULT_MAX_QUEUE_SIZE)
    if max_queue_size <= 0:
        raise ValueError("max_queue_size must be positive")
    return Settings(
        db_url=db_url,
        endpoint=endpoint,
        service_name=service_name,
        capture_content=capture_content,
        max_content_chars=max_content_chars,
        headers=_parse_pairs(env.get("LLMLENS_HEADERS")),
        capture=capture,
        # Host names are case-insensitive; explicit entries win over LLMLENS_HOSTS.
        hosts={key.lower(): value for key, value in {**_parse_pairs(env.get("LLMLENS_HOSTS")),
                                                     **dict(hosts or {})}.items()},
        exit_timeout=exit_timeout,
        max_queue_size=max_queue_size,
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
        # Reached from the provider's own exit hook: each pipeline bounds itself (exit_timeout).
        for processor in self.set_inner(()):
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return _pipeline.flush_all(self._inner, timeout_millis / 1000)


class _AlsoExport(SpanProcessor):
    """Hands llmlens' spans to the application's provider too (``configure(also_export_to=)``).

    The spans keep llmlens' resource and are always sampled; the application's own
    processors (and so its exporters) see them as they see its own spans. Nothing here
    shuts the application's pipeline down.
    """

    def __init__(self, target: TracerProvider | None) -> None:
        self._target = target  # None: the global provider, looked up when each span starts

    def _processor(self) -> SpanProcessor | None:
        provider = self._target if self._target is not None else trace.get_tracer_provider()
        processor = getattr(provider, "_active_span_processor", None)
        return processor if isinstance(processor, SpanProcessor) else None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        processor = self._processor()
        if processor is not None:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        processor = self._processor()
        if processor is not None:
            processor.on_end(span)

    def shutdown(self) -> None:
        pass  # the application's pipeline is the application's to stop

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@dataclass
class _State:
    settings: Settings | None = None
    provider: TracerProvider | None = None
    own: TracerProvider | None = None  # llmlens' own provider, kept across reconfiguration
    processor: _SwitchableProcessor | None = None
    tracer: trace.Tracer | None = None
    capture: str = "off"  # what the HTTP hooks record: configure() sets it, shutdown() turns it off
    warned: bool = False
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
    capture: Literal["all", "observed", "off"] | None = None,
    hosts: Mapping[str, str] | None = None,
    also_export_to: TracerProvider | Literal[True] | None = None,
    max_content_chars: int | None = None,
    exit_timeout: float | None = None,
    max_queue_size: int | None = None,
    tracer_provider: TracerProvider | None = None,
    exporter: SpanExporter | None = None,
) -> Settings:
    """Start recording: where rows go, which requests are captured, the decorator's defaults.

    By default rows are written in-process to the SQLite store at ``LLMLENS_DB_URL``
    (``sqlite:///llmlens.db``). Give ``endpoint`` (or set ``LLMLENS_ENDPOINT``) to export
    OTLP/HTTP to an llmlens collector instead; give both ``db_url`` and ``endpoint`` to do
    both. ``OTEL_EXPORTER_OTLP_*`` are never read: they configure the application's own
    pipeline.

    * ``capture``: which provider requests made through httpx/httpx2 become rows:
      ``"all"`` (default; a request outside any observed call is a row without a task),
      ``"observed"`` (only inside ``@observe``), ``"off"``. Env: ``LLMLENS_CAPTURE``.
    * ``hosts``: extra ``{"host" or "host:port": provider}`` for self-hosted
      OpenAI-compatible servers (vLLM, Ollama, a gateway); added to ``LLMLENS_HOSTS``
      (``host:port=provider,…``).
    * ``also_export_to``: also hand llmlens' spans to the application's TracerProvider
      (``True``: whichever is global when a span starts), to see them in its APM.

    llmlens records on a TracerProvider of its own, always sampled, never installed
    globally: the application's sampler cannot drop a cost row and its exporters get
    nothing unless ``also_export_to`` asks. ``tracer_provider`` records on the given
    provider instead (its sampler then applies). ``exporter`` replaces the default
    exporters (tests use the SDK's ``InMemorySpanExporter``). Calling ``configure``
    again replaces the previous configuration after flushing it.

    Spans wait in a queue of ``max_queue_size`` (``LLMLENS_MAX_QUEUE_SIZE``, default 2048);
    what does not fit is dropped, counted (:func:`llmlens.dropped`) and logged. At
    interpreter exit without :func:`shutdown`, llmlens waits at most ``exit_timeout``
    seconds (``LLMLENS_EXIT_TIMEOUT``, default 5) for its exporters, whatever they do.

    >>> import llmlens
    >>> llmlens.configure(db_url="sqlite:///llmlens.db")  # doctest: +SKIP
    """
    from llmlens import _hooks

    settings = resolve_settings(db_url, endpoint, service_name, capture_content, max_content_chars, capture, hosts,
                                exit_timeout, max_queue_size)
    exporters = [exporter] if exporter is not None else _make_exporter(settings)
    with _state.lock:
        provider = tracer_provider if tracer_provider is not None else _own_provider(settings.service_name)
        if _state.provider is not provider or _state.processor is None:
            if _state.processor is not None:
                _state.processor.set_inner(())  # the previous provider's, shut down below with `old`
            _state.processor = _SwitchableProcessor()
            provider.add_span_processor(_state.processor)
            _state.provider = provider
        # The merger runs first so its on_start marks provider-SDK spans before export.
        inner: tuple[SpanProcessor, ...] = (
            ProviderSpanMerger(),
            *(_pipeline.ExportPipeline(e, max_queue_size=settings.max_queue_size,
                                       exit_timeout=settings.exit_timeout) for e in exporters),
        )
        if also_export_to is not None:
            inner += (_AlsoExport(None if also_export_to is True else also_export_to),)
        old = _state.processor.set_inner(inner)
        _state.settings = settings
        _state.capture = settings.capture
        _state.tracer = provider.get_tracer(semconv.SCOPE_NAME, _version())
    _pipeline.shutdown_all(old, settings.exit_timeout)
    if settings.capture == "off":
        _hooks.uninstall()
    else:
        _hooks.install()
    return settings


def _own_provider(service_name: str) -> TracerProvider:
    """llmlens' own TracerProvider: always sampled, never the global one."""
    own = _state.own
    if own is None or own.resource.attributes.get(semconv.SERVICE_NAME) != service_name:
        own = TracerProvider(sampler=ALWAYS_ON, resource=Resource.create({semconv.SERVICE_NAME: service_name}),
                             shutdown_on_exit=False)
        _state.own = own
    return own


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
    """The tracer for llmlens spans; one that records nothing (and says so once) before configure()."""
    tracer = _state.tracer
    if tracer is None:
        if not _state.warned:
            _state.warned = True
            logger.warning(
                "llmlens: an @observe call ran before llmlens.configure(), so nothing is recorded. "
                "Call llmlens.configure() once at startup (rows go to LLMLENS_DB_URL, default "
                "sqlite:///llmlens.db), or llmlens.configure(endpoint=\"http://collector:4318\").")
        tracer = trace.NoOpTracer()
    return tracer


def flush(timeout: float = 10.0) -> bool:
    """Export everything queued so far.

    True when it all made it within ``timeout`` seconds and no span was dropped since the
    previous flush (:func:`llmlens.dropped` says how many, and why).
    """
    processor = _state.processor
    if processor is None:
        return True
    return _pipeline.flush_all(processor._inner, timeout)


def shutdown(timeout: float = 10.0) -> bool:
    """Flush and stop llmlens' exporters within ``timeout`` seconds in all.

    The application's TracerProvider is left running. Returns False when a span was
    dropped since the previous flush, or was still queued or exporting at the deadline
    (an unreachable collector, say); the exporters are then left to finish on daemon
    threads rather than holding up exit.
    """
    with _state.lock:
        processor = _state.processor
        _state.settings = None
        _state.capture = "off"
        old = processor.set_inner(()) if processor is not None else ()
    return _pipeline.shutdown_all(old, timeout)


def _reset_for_tests() -> None:
    """Forget the configuration and take the HTTP hooks out (the provider keeps our processor, now empty)."""
    from llmlens import _hooks

    _hooks.uninstall()
    shutdown(timeout=5)
    _state.tracer = None
    _state.warned = False
