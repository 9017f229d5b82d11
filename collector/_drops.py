"""Counting what is lost anyway, so the count reaches the store, the log and ``/metrics``.

Every span llmlens gives up on is counted here by cause, in memory first (the loss often
happens precisely because the database cannot be written), and persisted into the store's
``llm_drops`` table by the next write that succeeds. The dashboard reads that table for the
selected range; ``/metrics`` reads :attr:`DropLedger.totals`.

Causes (one vocabulary for the whole project):

===================  =========================================================================
``queue_full``       the in-process export queue was full (the app outran the exporter)
``export_failed``    the exporter gave up on a batch for a reason not listed below
``shutdown``         still queued when shutdown's deadline passed
``spool_full``       the database was down and the on-disk spool was at its size limit
``disk_full``        the database's disk was full and the spool had no room either
``rejected``         spans that can never be stored (invalid ids, undecodable spooled record)
``store_error``      the store refused the batch for good (e.g. its schema needs an upgrade)
===================  =========================================================================
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Final

SPOOL_FULL: Final = "spool_full"
DISK_FULL: Final = "disk_full"
REJECTED: Final = "rejected"
STORE_ERROR: Final = "store_error"
QUEUE_FULL: Final = "queue_full"

# Losses are persisted per minute: fine enough for any range the dashboard selects.
BUCKET_SECONDS: Final = 60

DropKey = tuple[datetime, str, str]  # (minute, service, cause)


def bucket_of(when: datetime) -> datetime:
    """The start of the minute ``when`` falls in (UTC)."""
    stamp = int(when.timestamp()) // BUCKET_SECONDS * BUCKET_SECONDS
    return datetime.fromtimestamp(stamp, UTC)


class DropLedger:
    """Thread-safe drop counts: lifetime totals by cause, and what is not yet persisted.

    >>> ledger = DropLedger("billing")
    >>> ledger.add("spool_full", 512)
    >>> ledger.totals["spool_full"]
    512
    """

    def __init__(self, service: str = "") -> None:
        self.service = service
        self.totals: Counter[str] = Counter()
        self._pending: Counter[DropKey] = Counter()
        self._lock = threading.Lock()

    def add(self, cause: str, count: int, service: str | None = None, when: datetime | None = None) -> None:
        if count <= 0:
            return
        key = (bucket_of(when or datetime.now(UTC)), service or self.service, cause)
        with self._lock:
            self.totals[cause] += count
            self._pending[key] += count

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.totals.values())

    def take_pending(self) -> dict[DropKey, int]:
        """Hand over the counts not yet persisted (give them back with :meth:`restore` on failure)."""
        with self._lock:
            pending, self._pending = dict(self._pending), Counter()
        return pending

    def restore(self, pending: dict[DropKey, int]) -> None:
        with self._lock:
            self._pending.update(pending)

    def describe(self, counts: Counter[str] | dict[str, int] | None = None) -> str:
        """``"spool full: 312, disk full: 5"``: the causes with a count, for log lines."""
        counts = dict(self.totals) if counts is None else dict(counts)
        return ", ".join(f"{cause.replace('_', ' ')}: {n}" for cause, n in sorted(counts.items()) if n)
