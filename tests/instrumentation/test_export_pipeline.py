"""The export pipeline: bounded, every lost span counted by cause, timeouts honoured."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import llmlens
from llmlens import _pipeline
from llmlens._pipeline import ExportPipeline
from llmlens.collector.store import Filters, drops_by_cause, open_store


class GatedExporter(SpanExporter):
    """Holds every export until the gate opens, then answers ``result`` (or raises ``error``)."""

    def __init__(self, result: SpanExportResult = SpanExportResult.SUCCESS, error: Exception | None = None) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.result, self.error = result, error
        self.exported: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.gate.wait()
        if self.error is not None:
            raise self.error
        self.exported.extend(spans)
        return self.result

    def shutdown(self) -> None:
        self.gate.set()


@pytest.fixture
def provider() -> TracerProvider:
    return TracerProvider()


@pytest.fixture
def drops() -> Iterator[list[tuple[str, int]]]:
    seen: list[tuple[str, int]] = []
    remove = _pipeline.add_drop_listener(lambda cause, count: seen.append((cause, count)))
    yield seen
    remove()


def _spans(provider: TracerProvider, n: int) -> None:
    tracer = provider.get_tracer("app")
    for i in range(n):
        tracer.start_span(f"s{i}").end()


def test_a_full_queue_drops_exactly_what_does_not_fit_and_says_so_everywhere(
        provider: TracerProvider, drops: list[tuple[str, int]], caplog: pytest.LogCaptureFixture) -> None:
    exporter = GatedExporter()
    pipeline = ExportPipeline(exporter, max_queue_size=10, max_batch_size=5, schedule_delay=0.01)
    provider.add_span_processor(pipeline)
    before = llmlens.dropped()["queue_full"]
    _spans(provider, 1)
    assert exporter.entered.wait(10)  # one span is inside the exporter, the queue is empty
    _spans(provider, 25)  # 10 fit, 15 do not
    with caplog.at_level(logging.ERROR, logger="llmlens"):
        exporter.gate.set()
        assert pipeline.force_flush(10_000) is False
    assert len(exporter.exported) == 11
    assert llmlens.dropped()["queue_full"] - before == 15
    assert drops == [("queue_full", 15)]
    assert any("dropped 15 spans (queue_full" in r.getMessage() for r in caplog.records)
    # The loss was reported by that flush; the next one has nothing new to report.
    _spans(provider, 3)
    assert pipeline.force_flush(10_000) is True
    assert pipeline.shutdown() is True and len(exporter.exported) == 14


def test_an_exporter_that_fails_or_raises_is_counted_logged_and_never_raised(
        provider: TracerProvider, drops: list[tuple[str, int]], caplog: pytest.LogCaptureFixture) -> None:
    failing = GatedExporter(SpanExportResult.FAILURE)
    raising = GatedExporter(error=RuntimeError("exporter bug"))
    pipelines = [ExportPipeline(exporter, schedule_delay=0.01) for exporter in (failing, raising)]
    for exporter, pipeline in zip((failing, raising), pipelines, strict=True):
        exporter.gate.set()
        provider.add_span_processor(pipeline)
    with caplog.at_level(logging.ERROR, logger="llmlens"):
        _spans(provider, 7)
        # Each pipeline on its own: the provider's flush stops at the first False.
        assert [p.force_flush(10_000) for p in pipelines] == [False, False]
    assert drops == [("export_failed", 7), ("export_failed", 7)]
    assert any("the exporter failed on 7 spans" in r.getMessage() for r in caplog.records)
    provider.shutdown()


def test_a_flush_returns_only_once_a_loss_the_worker_is_reporting_has_reached_the_listeners(
        provider: TracerProvider) -> None:
    # The worker reports a failed export right after it; a flush that comes while that
    # report is still telling the listeners must not return before they have heard.
    heard: list[tuple[str, int]] = []
    reporting = threading.Event()

    def slow_listener(cause: str, count: int) -> None:
        reporting.set()
        time.sleep(0.5)  # the worker is inside its report meanwhile
        heard.append((cause, count))

    remove = _pipeline.add_drop_listener(slow_listener)
    try:
        failing = GatedExporter(SpanExportResult.FAILURE)
        failing.gate.set()
        pipeline = ExportPipeline(failing, schedule_delay=0.01)
        provider.add_span_processor(pipeline)
        _spans(provider, 7)
        assert reporting.wait(10)  # the worker claimed the loss and is telling the listeners
        assert pipeline.force_flush(10_000) is False
        assert heard == [("export_failed", 7)]
    finally:
        remove()
        provider.shutdown()


def test_flush_and_shutdown_return_at_their_deadline_and_count_what_was_left(
        provider: TracerProvider, drops: list[tuple[str, int]]) -> None:
    exporter = GatedExporter()  # never opens: a target that never answers
    pipeline = ExportPipeline(exporter, schedule_delay=0.01, exit_timeout=0.2)
    provider.add_span_processor(pipeline)
    _spans(provider, 4)
    assert exporter.entered.wait(10)
    _spans(provider, 2)
    assert pipeline.force_flush(100) is False  # returns; nothing lost yet, but not exported
    assert drops == []
    assert pipeline.shutdown() is False  # default deadline: exit_timeout
    assert drops == [("shutdown", 6)]
    assert pipeline.shutdown() is False, "idempotent"
    _spans(provider, 1)  # ended after shutdown: counted too
    assert llmlens.dropped()["shutdown"] >= 7
    # The worker leaves the exporter once shutdown opens the gate, then reports its last
    # losses to every drop listener: let that happen here, not in a later test's store.
    worker = pipeline._worker
    assert worker is not None
    worker.join(30)


def test_the_worker_exports_a_full_batch_without_waiting_for_its_timer(provider: TracerProvider) -> None:
    exporter = GatedExporter()
    exporter.gate.set()
    pipeline = ExportPipeline(exporter, max_batch_size=8, schedule_delay=3600)
    provider.add_span_processor(pipeline)
    _spans(provider, 8)
    assert exporter.entered.wait(10), "a full batch wakes the worker"
    assert pipeline.shutdown(10_000) is True and len(exporter.exported) == 8


def test_twenty_thousand_calls_into_a_small_queue_are_stored_or_counted_never_silently_lost(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'llmlens.db'}"
    llmlens.configure(db_url=url, tracer_provider=TracerProvider(), max_queue_size=64)

    @llmlens.observe(task="burst")
    def call() -> dict[str, object]:
        return {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 3, "completion_tokens": 1}}

    before = llmlens.dropped()["queue_full"]
    with caplog.at_level(logging.ERROR, logger="llmlens"):
        for _ in range(20_000):
            call()
        flushed = llmlens.flush(timeout=60)
        shut = llmlens.shutdown(timeout=60)
    lost = llmlens.dropped()["queue_full"] - before
    rows = open_store(url).count_rows()
    assert lost > 0, "a 64-span queue cannot hold a tight loop of 20,000 calls"
    assert rows + lost == 20_000
    assert flushed is False and shut is True  # the loss was reported by the flush
    logged = sum(int(r.getMessage().split()[2]) for r in caplog.records if "(queue_full" in r.getMessage())
    assert logged == lost
    # ... and persisted where the dashboard's banner reads them.
    store = open_store(url)
    assert drops_by_cause(store.engine, Filters.last(timedelta(days=1))) == {"queue_full": lost}


def test_settings_read_the_exit_timeout_and_queue_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmlens._config import resolve_settings

    assert (resolve_settings().exit_timeout, resolve_settings().max_queue_size) == (5.0, 2048)
    monkeypatch.setenv("LLMLENS_EXIT_TIMEOUT", "1.5")
    monkeypatch.setenv("LLMLENS_MAX_QUEUE_SIZE", "100")
    assert (resolve_settings().exit_timeout, resolve_settings().max_queue_size) == (1.5, 100)
    assert resolve_settings(exit_timeout=0).exit_timeout == 0
    with pytest.raises(ValueError):
        resolve_settings(max_queue_size=0)
