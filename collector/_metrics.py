"""The collector's own counters, exposed on ``/metrics`` through ``prometheus_client``.

Counters are touched by the event loop (received, rejected, refused) and by the writer
thread (stored, duplicates, unpriced), so updates take a lock; they happen once per
batch, never per span, so the lock costs nothing measurable.

Each collector app has a :class:`~prometheus_client.CollectorRegistry` of its own (never
the process-wide default one, which an application embedding the collector may use for
its own metrics, and which a second app in one process would collide with). The registry
holds one custom collector that reads these counters, the answers by status code, the
losses by cause and the app's gauges when scraped, and ``generate_latest`` writes the
exposition text.

With ``--workers N`` every worker process has its own counters: a scrape on the shared
port is answered by whichever worker accepts the connection and shows that worker's
totals (see the README's collector section).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Counters", "GaugeSource", "Metrics"]

_PREFIX: Final = "llmlens_collector_"
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST


@dataclass
class Counters:
    """Monotonic totals since the collector started (exposed with a ``_total`` suffix)."""

    requests: int = 0
    spans_received: int = 0
    spans_stored: int = 0
    spans_duplicate: int = 0
    spans_not_llm: int = 0
    spans_unpriced: int = 0
    spans_rejected: int = 0  # undecodable or invalid: refused for good (400 or partial success)
    spans_dropped: int = 0  # refused for now (503/429): a well-behaved exporter sends them again
    spans_spooled: int = 0  # acknowledged while the database was down: fsynced to the spool
    spans_replayed: int = 0  # spooled spans written to the store once it was back
    spans_refused_spool_full: int = 0  # refused (503) because the database was down and the spool full
    spool_corrupt: int = 0  # spool records found damaged and skipped
    batches_committed: int = 0
    commit_failures: int = 0
    commit_seconds: float = 0.0


_HELP: Final = {
    "requests": "Export requests received (OTLP/HTTP /v1/traces and OTLP/gRPC).",
    "spans_received": "Spans decoded from export requests.",
    "spans_stored": "Rows newly written to the store.",
    "spans_duplicate": "LLM spans already in the store (exporter retries); not written again.",
    "spans_not_llm": "Spans that are not LLM calls (or are merged into another row); accepted, not stored.",
    "spans_unpriced": "Rows stored without a cost because the model has no known price.",
    "spans_rejected": "Spans refused as invalid (bad ids, no start time); never stored.",
    "spans_dropped": "Spans refused with 503/429 (queue full, database down); the exporter retries them.",
    "spans_spooled": "Spans acknowledged while the database was down (fsynced to the on-disk spool).",
    "spans_replayed": "Spooled spans written to the store once the database was back.",
    "spans_refused_spool_full": "Spans refused with 503 because the database was down and the spool full.",
    "spool_corrupt": "Spool records found torn or damaged and skipped.",
    "batches_committed": "Transactions committed by the writer.",
    "commit_failures": "Transactions that failed (database unavailable or an ingest error).",
    "commit_seconds": "Time spent in committed transactions.",
}
_RESPONSES_HELP: Final = "Answers to export requests by HTTP status code."
_LOST_HELP: Final = "Spans lost for good, by cause (also persisted in the store's llm_drops)."

# name -> (value, help): read when scraped.
GaugeSource = Callable[[], Mapping[str, tuple[float, str]]]
LossSource = Callable[[], Mapping[str, int]]


@dataclass
class Metrics:
    """Thread-safe counters plus the registry that exposes them with the app's gauges."""

    counters: Counters = field(default_factory=Counters)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    responses: dict[int, int] = field(default_factory=dict)

    def add(self, **deltas: float) -> None:
        """Add to named counters, e.g. ``metrics.add(spans_received=512, requests=1)``."""
        with self._lock:
            counters = self.counters
            for name, delta in deltas.items():
                setattr(counters, name, getattr(counters, name) + delta)

    def response(self, code: int) -> None:
        with self._lock:
            self.responses[code] = self.responses.get(code, 0) + 1

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {f.name: getattr(self.counters, f.name) for f in fields(Counters)}

    def registry(self, gauges: GaugeSource, lost: LossSource) -> CollectorRegistry:
        """A registry of its own holding these counters, the losses and ``gauges()``."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_View(self, gauges, lost))
        return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)


class _View(Collector):
    """Reads the counters when scraped (prometheus_client's custom-collector pattern)."""

    def __init__(self, metrics: Metrics, gauges: GaugeSource, lost: LossSource) -> None:
        self._metrics = metrics
        self._gauges = gauges
        self._lost = lost

    def describe(self) -> Iterator[Metric]:
        # The names, so the registry refuses a second collector that would clash with them.
        for name in _HELP:
            yield CounterMetricFamily(_PREFIX + name, _HELP[name])
        yield CounterMetricFamily(_PREFIX + "responses", _RESPONSES_HELP, labels=["code"])
        yield CounterMetricFamily(_PREFIX + "spans_lost", _LOST_HELP, labels=["cause"])

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        for name, value in metrics.snapshot().items():
            yield CounterMetricFamily(_PREFIX + name, _HELP[name], value=value)
        with metrics._lock:
            responses = sorted(metrics.responses.items())
        # gRPC answers are counted under their HTTP equivalent (UNAVAILABLE as 503, ...).
        family = CounterMetricFamily(_PREFIX + "responses", _RESPONSES_HELP, labels=["code"])
        for code, count in responses:
            family.add_metric([str(code)], count)
        yield family
        family = CounterMetricFamily(_PREFIX + "spans_lost", _LOST_HELP, labels=["cause"])
        for cause, count in sorted(self._lost().items()):
            family.add_metric([cause], count)
        yield family
        for name, (value, help_text) in self._gauges().items():
            yield GaugeMetricFamily(_PREFIX + name, help_text, value=value)
