"""The collector's single bulk writer: a bounded queue of request bodies and one thread committing them.

Request handlers check a request (auth, media type, size, encoding), :meth:`BatchWriter.submit`
its body, and await the future: it resolves once the writer has decoded the body and
committed its spans, so a 200 means stored ("acknowledged only after committed": a
collector restart never loses a span it acknowledged).

Decoding happens on the writer thread, not in the handler. Decoding is CPU-bound Python,
and so is most of ingest; the database calls between them release the GIL once per
statement. With decoding on another thread, every such release hands the GIL to the
decoder and the writer waits a whole switch interval to get it back: measured here, a
busy decoding thread cut SQLite ingest from ~19,000 to ~3,000 spans/s. One thread doing
decode-normalize-insert in turn has no one to wait for. It also keeps the queue small:
it holds protobuf bytes, several times smaller than the decoded spans.

One writer keeps SQLite to a single writer and lets bodies that queued up behind a commit
go in together, in one transaction, which is what makes the collector fast under load.

Back-pressure, never an unbounded buffer:

* the queue holds at most ``max_batches`` bodies; when full, ``submit`` raises
  :class:`QueueFull` and the handler answers 503 with ``Retry-After``;
* when the database is unavailable, the failing batches' futures raise
  ``StoreUnavailable`` and for ``retry_after`` seconds ``submit`` refuses new batches
  without touching the database, after which one batch probes it again.

Nothing refused is lost: OTLP exporters retry 503s, and a retried batch that did commit
after all is a no-op in the store (rows are unique on trace and span id).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from llmlens.collector._metrics import Metrics
from llmlens.collector.otlp import DecodedBatch, OTLPDecodeError, decode
from llmlens.collector.record import SpanRecord
from llmlens.collector.store import StoreUnavailable

logger = logging.getLogger("llmlens.collector")


class IngestResultLike(Protocol):
    received: int
    stored: int
    duplicates: int
    not_llm: int
    unpriced: int


IngestFn = Callable[[Sequence[SpanRecord]], IngestResultLike]
DecodeFn = Callable[[bytes, str], DecodedBatch]


class QueueFull(Exception):
    """The write queue is at capacity; the caller should answer 503 and let the exporter retry."""


@dataclass(slots=True)
class _Job:
    body: bytes
    media_type: str
    future: Future[DecodedBatch]
    batch: DecodedBatch | None = None


_STOP = object()


class BatchWriter:
    """Commit submitted batches on one thread, in order, coalescing what has queued up.

    >>> writer = BatchWriter(ingestor.ingest, max_batches=32)  # doctest: +SKIP
    >>> writer.start()  # doctest: +SKIP
    >>> future = writer.submit(body, "application/x-protobuf")  # resolves once committed  # doctest: +SKIP
    """

    def __init__(
        self,
        ingest: IngestFn,
        *,
        decode: DecodeFn = decode,
        max_batches: int = 32,
        max_spans_per_commit: int = 8192,
        retry_after: float = 1.0,
        metrics: Metrics | None = None,
    ) -> None:
        if max_batches < 1:
            raise ValueError("max_batches must be at least 1")
        self._ingest = ingest
        self._decode = decode
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_batches)
        self._max_batches = max_batches
        self._max_spans = max_spans_per_commit
        self.retry_after = retry_after
        self.metrics = metrics or Metrics()
        self._down_until = 0.0  # monotonic time before which the database is presumed down
        self._database_up = True
        self._closing = False
        self._thread: threading.Thread | None = None

    # --- producer side (the event loop) ------------------------------------------------------

    @property
    def depth(self) -> int:
        """Batches waiting to be committed."""
        return self._queue.qsize()

    @property
    def capacity(self) -> int:
        return self._max_batches

    @property
    def alive(self) -> bool:
        """Whether the writer thread is running (health reports not ready otherwise)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def database_up(self) -> bool:
        """False after the last commit found the database unavailable, until one succeeds."""
        return self._database_up

    def refusal(self) -> str | None:
        """Why a new batch would be refused right now (checked before reading a body), or None."""
        if self._closing:
            return "the collector is shutting down"
        if time.monotonic() < self._down_until:
            return "the database is unavailable"
        if self._queue.full():
            return "the write queue is full"
        return None

    def submit(self, body: bytes, media_type: str) -> Future[DecodedBatch]:
        """Queue a request body; the future resolves, to the decoded batch, once it is committed.

        Raises :class:`QueueFull` when the queue is at capacity or the writer is closing, and
        ``StoreUnavailable`` while the database is presumed down. The future raises
        :class:`~llmlens.collector.otlp.OTLPDecodeError` for a body that does not decode,
        ``StoreUnavailable`` if the commit finds the database down, or the ingest error.
        """
        if self._closing:
            raise QueueFull("the collector is shutting down")
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("the database is unavailable")
        future: Future[DecodedBatch] = Future()
        try:
            self._queue.put_nowait(_Job(body, media_type, future))
        except queue.Full:
            raise QueueFull("the write queue is full") from None
        return future

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="llmlens-collector-writer", daemon=True)
            self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every batch submitted so far is committed (or refused); True if in time."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline or not self.alive:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Stop accepting, commit everything queued, stop the thread. True when fully drained."""
        self._closing = True
        thread = self._thread
        if thread is None:
            return self._queue.empty()
        deadline = time.monotonic() + timeout
        # The sentinel needs a free slot; the writer frees slots as it commits.
        while True:
            try:
                self._queue.put(_STOP, timeout=max(0.01, deadline - time.monotonic()))
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    break
        thread.join(max(0.0, deadline - time.monotonic()))
        drained = not thread.is_alive()
        if not drained:
            logger.warning("collector writer did not drain within %.1fs; %d batches unacknowledged",
                           timeout, self.depth)
        return drained

    # --- consumer side (the writer thread) ---------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._queue.task_done()
                return
            jobs: list[_Job] = []
            taken = 1
            spans = self._prepare(first, jobs)
            stop = False
            # Bodies that queued up while the last commit ran go in together: one
            # transaction for many, which is where SQLite's throughput comes from.
            while spans < self._max_spans:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                taken += 1
                if job is _STOP:
                    stop = True
                    break
                spans += self._prepare(job, jobs)
            if jobs:
                try:
                    self._commit(jobs)
                except Exception:  # a bug here must not stop the only writer
                    logger.exception("collector writer failed on a batch")
                    self._fail([job for job in jobs if not job.future.done()],
                               RuntimeError("the batch could not be stored"))
            for _ in range(taken):
                self._queue.task_done()
            if stop:
                return

    def _prepare(self, job: _Job, jobs: list[_Job]) -> int:
        """Decode a job's body; a body that does not decode fails alone, with its reason."""
        if not job.future.set_running_or_notify_cancel():
            return 0  # its request already answered 503 (commit timeout); it will be sent again
        try:
            batch = self._decode(job.body, job.media_type)
        except OTLPDecodeError as exc:
            job.future.set_exception(exc)
            return 0
        except Exception as exc:  # a decoder bug must not take the writer down
            logger.exception("collector could not decode a request body")
            job.future.set_exception(OTLPDecodeError(f"body could not be decoded: {type(exc).__name__}"))
            return 0
        job.body = b""  # the decoded spans replace the bytes; free them now
        job.batch = batch
        self.metrics.add(spans_received=len(batch.records) + batch.rejected, spans_rejected=batch.rejected)
        if not batch.records:
            job.future.set_result(batch)
            return 0
        jobs.append(job)
        return len(batch.records)

    def _commit(self, jobs: list[_Job]) -> None:
        if time.monotonic() < self._down_until:
            # The database failed moments ago: fail fast instead of another connect timeout.
            self._fail(jobs, StoreUnavailable("the database is unavailable"))
            return
        batches = [job.batch for job in jobs if job.batch is not None]
        records: Sequence[SpanRecord]
        records = batches[0].records if len(batches) == 1 else [r for b in batches for r in b.records]
        started = time.perf_counter()
        try:
            result = self._ingest(records)
        except StoreUnavailable as exc:
            # The store translates every read and write, so the leaf lookup on the way to
            # the write, often the first to find the database gone, raises this too.
            self._database_down(exc)
            self._fail(jobs, exc)
            return
        except Exception:
            if len(jobs) > 1:
                # Do not let one poisoned batch fail the batches it was coalesced with.
                for job in jobs:
                    self._commit([job])
                return
            logger.exception("collector could not ingest a batch of %d spans", len(records))
            self.metrics.add(commit_failures=1)
            self._fail(jobs, RuntimeError("the batch could not be ingested"))
            return
        self._database_up = True
        self.metrics.add(
            spans_stored=result.stored,
            spans_duplicate=result.duplicates,
            spans_not_llm=result.not_llm,
            spans_unpriced=result.unpriced,
            batches_committed=1,
            commit_seconds=time.perf_counter() - started,
        )
        for job in jobs:
            batch = job.batch
            job.batch = None
            if batch is not None:
                batch.records = []  # the handler needs only the counts
                job.future.set_result(batch)

    def _database_down(self, exc: BaseException) -> None:
        if self._database_up:
            logger.warning("collector: database unavailable (%s); refusing exports for %.1fs at a time",
                           exc, self.retry_after)
        self._database_up = False
        self._down_until = time.monotonic() + self.retry_after
        self.metrics.add(commit_failures=1)
        # Everything still queued would meet the same database: refuse it now too.
        pending = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()
            if job is _STOP:
                self._queue.put_nowait(_STOP)  # a slot was just freed, so this cannot block
                break
            if job.future.set_running_or_notify_cancel():
                pending.append(job)
        self._fail(pending, exc)

    def _fail(self, jobs: list[_Job], exc: BaseException) -> None:
        dropped = 0
        for job in jobs:
            if job.batch is not None:
                dropped += len(job.batch.records)
                job.batch = None
            job.future.set_exception(exc)
        if dropped:
            self.metrics.add(spans_dropped=dropped)
