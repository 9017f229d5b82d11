"""The embedded exporter: an OpenTelemetry ``SpanExporter`` that writes rows in-process.

It runs behind the SDK's ``BatchSpanProcessor`` (bounded queue, drop counter, its own
worker thread), so the application never waits on the database. Like every exporter it
never raises into the application: a failing database is retried within a bound, then
the batch is counted as dropped and logged once per burst of failures.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llmlens.collector.ingest import Ingestor, IngestResult
from llmlens.collector.pricing import Pricer
from llmlens.collector.record import from_readable_span
from llmlens.collector.store import StoreError, StoreUnavailable, open_store

logger = logging.getLogger("llmlens")


class StoreSpanExporter(SpanExporter):
    """Normalize, price and store spans in the database at ``db_url``.

    >>> from opentelemetry.sdk.trace.export import BatchSpanProcessor
    >>> provider.add_span_processor(BatchSpanProcessor(StoreSpanExporter("sqlite:///llmlens.db")))  # doctest: +SKIP
    """

    def __init__(
        self,
        db_url: str | None = None,
        *,
        pricer: Pricer | None = None,
        capture_content: bool = False,
        max_content_chars: int = 4096,
        max_attempts: int = 3,
        retry_delay: float = 0.2,
    ) -> None:
        self.db_url = db_url
        self._pricer = pricer
        self._capture_content = capture_content
        self._max_content_chars = max_content_chars
        self._max_attempts = max(1, max_attempts)
        self._retry_delay = retry_delay
        self._ingestor: Ingestor | None = None
        self._lock = threading.Lock()
        self._shutdown = threading.Event()
        self._failing = False
        self.totals = IngestResult()
        self.dropped = 0  # spans given up on after the retry bound
        self.failures = 0  # failed export calls

    def _get_ingestor(self) -> Ingestor:
        # Opened on the exporter's worker thread at first export: configure() stays cheap,
        # and a missing database is an export failure, not an application crash.
        if self._ingestor is None:
            store = open_store(self.db_url)
            self._ingestor = Ingestor(store, self._pricer or Pricer.from_env(),
                                      capture_content=self._capture_content,
                                      max_content_chars=self._max_content_chars)
        return self._ingestor

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown.is_set():
            return SpanExportResult.FAILURE
        try:
            records = [from_readable_span(span) for span in spans]
        except Exception:
            logger.exception("llmlens: could not read %d spans; dropped", len(spans))
            self.dropped += len(spans)
            return SpanExportResult.FAILURE
        delay = self._retry_delay
        for attempt in range(1, self._max_attempts + 1):
            try:
                with self._lock:
                    result = self._get_ingestor().ingest(records)
                    self.totals += result
                if self._failing:
                    logger.warning("llmlens: the store is writable again")
                    self._failing = False
                return SpanExportResult.SUCCESS
            except StoreUnavailable as exc:
                error: Exception = exc
                if attempt < self._max_attempts and not self._shutdown.is_set():
                    self._shutdown.wait(delay)
                    delay *= 2
                    continue
            except StoreError as exc:  # outdated schema: retrying cannot help
                error = exc
            except Exception as exc:  # never into the application
                error = exc
            break
        self.failures += 1
        self.dropped += len(spans)
        if not self._failing:
            # Once per burst: the next success logs recovery and re-arms this message.
            logger.error("llmlens: dropped %d spans: %s", len(spans), error)
            self._failing = True
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._shutdown.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
