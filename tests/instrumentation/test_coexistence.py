"""llmlens beside the application's own OpenTelemetry: its sampler, its exporter, its APM.

The application here does what real ones do: installs its own global TracerProvider with a
10% sampler and an OTLP exporter configured by ``OTEL_EXPORTER_OTLP_ENDPOINT``, pointed at
a loopback OTLP sink standing in for its APM.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import openai
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.util._once import Once

import llmlens
from llmlens.collector.store import open_store

if TYPE_CHECKING:
    from fake_provider import FakeProvider

MESSAGES = [{"role": "user", "content": "hello"}]


class OtlpSink:
    """A loopback OTLP/HTTP receiver that remembers (service, scope, span name) of what it got."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    service = next((a.value.string_value for a in resource_spans.resource.attributes
                                    if a.key == "service.name"), "")
                    for scope_spans in resource_spans.scope_spans:
                        sink.spans.extend((service, scope_spans.scope.name, s.name) for s in scope_spans.spans)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    server = OtlpSink()
    yield server
    server.close()


def _forget_global_provider() -> None:
    # The API allows one set_tracer_provider per process; tests of an app that sets its own
    # must start and end without one.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


class App:
    """The application's own pipeline: a 10% sampler, its APM exporter from the environment."""

    def __init__(self) -> None:
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1)),
                                       resource=Resource.create({"service.name": "shop"}))
        self.apm = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_ENDPOINT, as the app intends
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.provider.add_span_processor(SimpleSpanProcessor(self.apm))
        self.tracer = self.provider.get_tracer("shop")

    def install(self) -> None:
        trace.set_tracer_provider(self.provider)


@pytest.fixture
def app(sink: OtlpSink, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.url)
    _forget_global_provider()
    application = App()
    yield application
    application.provider.shutdown()
    _forget_global_provider()


def _serve(app: App, client: openai.OpenAI, requests: int) -> list[tuple[int, int]]:
    """Handle ``requests`` app requests, each making one observed model call; (trace, span) ids."""

    @llmlens.observe(task="recommend", prompt_version="rec@1")
    def recommend() -> str:
        return str(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content)

    ids = []
    for _ in range(requests):
        with app.tracer.start_as_current_span("GET /recommendations") as span:
            recommend()
            context = span.get_span_context()
            ids.append((context.trace_id, context.span_id))
    return ids


def test_every_call_is_a_row_whatever_the_apps_sampler_and_its_apm_gets_nothing_of_llmlens(
        app: App, sink: OtlpSink, fake: FakeProvider, sqlite_url: str) -> None:
    app.install()
    llmlens.configure(db_url=sqlite_url)
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test") as client:
        ids = _serve(app, client, 30)
    assert llmlens.flush()
    rows = open_store(sqlite_url).fetch_rows()
    assert len(rows) == 30 and all(r["task"] == "recommend" and r["cost_usd"] for r in rows)
    # Every row sits in the app's trace, sampled by the app or not.
    assert [r["trace_id"] for r in rows] == [format(trace_id, "032x") for trace_id, _ in ids]
    sampled = app.memory.get_finished_spans()
    assert len(sampled) < 30, "the app's 10% sampler must drop most of its own spans in this test"
    assert all(s.instrumentation_scope.name == "shop" for s in sampled)  # type: ignore[union-attr]
    app.provider.force_flush()
    assert sorted(sink.spans) == sorted(("shop", "shop", s.name) for s in sampled), "no llmlens span, no duplicate"


def test_also_export_to_sends_llmlens_spans_into_the_apps_provider_and_apm(
        app: App, sink: OtlpSink, fake: FakeProvider, sqlite_url: str) -> None:
    app.install()
    llmlens.configure(db_url=sqlite_url, also_export_to=True)
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test") as client:
        _serve(app, client, 3)
    assert llmlens.flush()
    assert len(open_store(sqlite_url).fetch_rows()) == 3
    app.provider.force_flush()
    ours = [s for s in sink.spans if s[1] == "llmlens"]
    # Per call: the attempt (context) and its request (the row), always sampled.
    assert sorted(ours) == sorted([("llmlens-app", "llmlens", "recommend"),
                                   ("llmlens-app", "llmlens", "chat gpt-4o-mini")] * 3)
    assert len([s for s in app.memory.get_finished_spans()
                if s.instrumentation_scope.name == "llmlens"]) == 6  # type: ignore[union-attr]


def test_configure_before_the_app_sets_its_provider_leaves_the_app_in_charge(
        app: App, fake: FakeProvider, sqlite_url: str) -> None:
    llmlens.configure(db_url=sqlite_url)
    assert not isinstance(trace.get_tracer_provider(), TracerProvider), "llmlens must not install a provider"
    app.install()
    assert trace.get_tracer_provider() is app.provider
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test") as client:
        _serve(app, client, 2)
    assert llmlens.flush()
    assert len(open_store(sqlite_url).fetch_rows()) == 2


def test_llmlens_spans_keep_the_apps_trace_and_parent_ids(app: App, fake: FakeProvider, sqlite_url: str) -> None:
    app.install()
    exporter = InMemorySpanExporter()
    llmlens.configure(exporter=exporter)
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test") as client:
        ((trace_id, app_span_id),) = _serve(app, client, 1)
        with app.tracer.start_as_current_span("GET /health") as outside:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert llmlens.flush()
    spans = {s.attributes["llmlens.span_role"]: s for s in exporter.get_finished_spans()  # type: ignore[index]
             if s.context.trace_id == trace_id}  # type: ignore[union-attr]
    attempt, request = spans["attempt"], spans["request"]
    assert attempt.parent.span_id == app_span_id  # type: ignore[union-attr]
    assert request.parent.span_id == attempt.context.span_id  # type: ignore[union-attr]
    (unobserved,) = [s for s in exporter.get_finished_spans()
                     if s.context.trace_id == outside.get_span_context().trace_id]  # type: ignore[union-attr]
    assert unobserved.parent.span_id == outside.get_span_context().span_id  # type: ignore[union-attr]
