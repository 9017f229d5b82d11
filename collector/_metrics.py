"""The collector's own counters, rendered in the Prometheus text exposition format.

Counters are touched by the event loop (received, rejected, refused) and by the writer
thread (stored, duplicates, unpriced), so updates take a lock; they happen once per
batch, never per span, so the lock costs nothing measurable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Final

_PREFIX: Final = "llmlens_collector_"


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


@dataclass
class Metrics:
    """Thread-safe counters plus the gauges the app reads when asked."""

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

    def render(self, gauges: Mapping[str, tuple[float, str]], lost: Mapping[str, int] | None = None) -> str:
        """Prometheus text format: every counter, the responses by code, losses by cause, the gauges."""
        lines: list[str] = []
        for name, value in self.snapshot().items():
            metric = f"{_PREFIX}{name}_total"
            lines += [f"# HELP {metric} {_HELP[name]}", f"# TYPE {metric} counter", f"{metric} {_num(value)}"]
        with self._lock:
            responses = sorted(self.responses.items())
        metric = f"{_PREFIX}responses_total"
        # gRPC answers are counted under their HTTP equivalent (UNAVAILABLE as 503, ...).
        lines += [f"# HELP {metric} Answers to export requests by HTTP status code.", f"# TYPE {metric} counter"]
        lines += [f'{metric}{{code="{code}"}} {count}' for code, count in responses]
        metric = f"{_PREFIX}spans_lost_total"
        lines += [f"# HELP {metric} Spans lost for good, by cause (also persisted in the store's llm_drops).",
                  f"# TYPE {metric} counter"]
        lines += [f'{metric}{{cause="{cause}"}} {count}' for cause, count in sorted((lost or {}).items())]
        for name, (value, help_text) in gauges.items():
            metric = f"{_PREFIX}{name}"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge", f"{metric} {_num(value)}"]
        return "\n".join(lines) + "\n"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


GaugeSource = Callable[[], dict[str, tuple[float, str]]]
