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
* when the database is unavailable, batches go to the on-disk spool instead
  (:mod:`llmlens.collector._spool`): the request is answered 200 once its body is fsynced
  there, so exporters do not give up during an outage and a collector restart loses
  nothing. For ``retry_after`` seconds after a failure the writer does not touch the
  database at all, then one batch probes it again. When it answers, the writer replays
  the spool in order whenever its queue is empty (live batches first: replay yields after
  every record), through the same decode -> ingest path; a replayed record that was
  committed before is a no-op (rows are unique on trace and span id);
* when the spool is full too (or disabled), the batch is refused with 503 and a
  ``Retry-After`` that doubles with the outage's length (1 s, 2 s, 4 s ... 32 s), so a
  fleet of exporters backs off instead of hammering a collector that cannot take more.

Nothing refused is lost: OTLP exporters retry 503s, and a retried batch that did commit
after all is a no-op in the store.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from llmlens.collector import _drops
from llmlens.collector._drops import DropLedger
from llmlens.collector._metrics import Metrics
from llmlens.collector._spool import Spool, SpoolFull, pack, unpack
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


# Retry-After while the database is down and nothing more can be spooled: doubles with the
# outage's length, so senders back off further the longer it lasts, and resets on recovery.
MAX_RETRY_AFTER = 32


@dataclass(slots=True)
class _Job:
    body: bytes
    media_type: str
    future: Future[DecodedBatch]
    batch: DecodedBatch | None = None
    spooled: bool = False


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
        spool: Spool | None = None,
        drops: DropLedger | None = None,
        prepare_store: Callable[[], object] | None = None,
        record_drops: Callable[[dict[Any, int]], object] | None = None,
        checkpoint: Callable[[], object] | None = None,
        idle_seconds: float = 5.0,
    ) -> None:
        if max_batches < 1:
            raise ValueError("max_batches must be at least 1")
        self._ingest = ingest
        self._decode = decode
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_batches)
        self._max_batches = max_batches
        self._max_spans = max_spans_per_commit
        self.base_retry_after = retry_after
        self.metrics = metrics or Metrics()
        self.spool = spool
        self.drops = drops or DropLedger()
        # Called before the first commit when the collector started with its database down
        # (the schema check it skipped then); and to persist drop counts after a commit.
        self._prepare_store = prepare_store
        self._record_drops = record_drops
        # Run when the queue has been empty for idle_seconds after commits (SQLite: copy the
        # WAL into the main file and truncate it, so the data is where the disk space is).
        self._checkpoint = checkpoint
        self._idle_seconds = idle_seconds
        self._dirty = False
        self._down_until = 0.0  # monotonic time before which the database is presumed down
        self._down_since: float | None = None  # monotonic start of the current outage
        self._replay_after = 0.0  # monotonic time before which the spool is not looked at again
        self._spool_full_until = 0.0  # monotonic time before which the spool is presumed full
        self.spool_full = False  # the last append found the spool full (until one succeeds)
        self._database_up = prepare_store is None
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
        now = time.monotonic()
        if now < self._down_until and (self.spool is None or now < self._spool_full_until):
            return "the database is unavailable and the spool is full" if self.spool else \
                "the database is unavailable"
        if self._queue.full():
            return "the write queue is full"
        return None

    def retry_after(self) -> int:
        """Seconds a refused sender should wait: ``retry_after``, doubling while an outage lasts."""
        base = max(1, math.ceil(self.base_retry_after))
        since = self._down_since
        if since is None:
            return base
        elapsed = max(1.0, time.monotonic() - since)
        return int(min(MAX_RETRY_AFTER, max(base, 2 ** math.ceil(math.log2(elapsed)))))

    def submit(self, body: bytes, media_type: str) -> Future[DecodedBatch]:
        """Queue a request body; the future resolves, to the decoded batch, once it is committed.

        Raises :class:`QueueFull` when the queue is at capacity or the writer is closing, and
        ``StoreUnavailable`` while the database is presumed down. The future raises
        :class:`~llmlens.collector.otlp.OTLPDecodeError` for a body that does not decode,
        ``StoreUnavailable`` if the commit finds the database down, or the ingest error.
        """
        refusal = self.refusal()
        if refusal == "the collector is shutting down":
            raise QueueFull(refusal)
        if refusal is not None and refusal.startswith("the database"):
            raise StoreUnavailable(refusal)
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
            first = self._next_job()
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
                self._close_spool()
                return

    def _next_job(self) -> Any:
        """The next queued job; meanwhile, replay the spool when the database is up, and
        checkpoint when idle."""
        while True:
            spool = self.spool
            pending = spool is not None and spool.records > 0
            now = time.monotonic()
            if pending and self._queue.empty() and now >= self._down_until and now >= self._replay_after:
                assert spool is not None
                self._replay(spool)
            if not pending and not self._dirty:
                return self._queue.get()
            wait = self._idle_seconds if not pending else max(0.05, self._down_until - time.monotonic())
            try:
                return self._queue.get(timeout=min(wait, self._idle_seconds))
            except queue.Empty:
                if self._dirty and self._checkpoint is not None and self._database_up:
                    self._dirty = False
                    self._checkpoint()
                elif self._checkpoint is None:
                    self._dirty = False

    def _replay(self, spool: Spool) -> None:
        handled = 0

        def live_batch_waiting() -> bool:
            # Live batches go first, but each pass replays at least one record: a collector
            # that is never idle still empties its spool.
            nonlocal handled
            handled += 1
            return handled > 1 and not self._queue.empty()

        try:
            self._ready_store()
            result = spool.replay(self._replay_record, should_stop=live_batch_waiting)
        except StoreUnavailable as exc:
            self._database_down(exc)
            return
        except Exception:
            logger.exception("collector: spool replay failed; retrying in %.1fs", self.base_retry_after)
            self._replay_after = time.monotonic() + self.base_retry_after
            return
        if result.corrupt:
            self.metrics.add(spool_corrupt=result.corrupt)
        if result.busy or (not result.stopped and spool.records):
            # Another process replays this spool, or still appends to a segment of it:
            # look again later rather than spin.
            self._replay_after = time.monotonic() + self.base_retry_after
        elif not result.stopped:
            logger.info("collector: every spooled batch is stored")
        self._database_recovered()

    def _replay_record(self, record: bytes) -> None:
        media, body = unpack(record)
        try:
            batch = self._decode(body, media)
        except OTLPDecodeError:
            self.drops.add(_drops.REJECTED, 1)
            self.metrics.add(spool_corrupt=1)
            return
        if batch.records:
            try:
                result = self._ingest(batch.records)
            except StoreUnavailable:
                raise  # stays spooled; replayed when the database is back
            except Exception:
                # A batch that can never be stored must not block the spool behind it.
                logger.exception("collector: a spooled batch of %d spans cannot be stored", len(batch.records))
                self.drops.add(_drops.REJECTED, len(batch.records))
                return
            self.metrics.add(spans_replayed=len(batch.records), spans_stored=result.stored,
                             spans_duplicate=result.duplicates, spans_not_llm=result.not_llm,
                             spans_unpriced=result.unpriced, batches_committed=1)
            self._persist_drops()

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
        if self.spool is None:
            job.body = b""  # the decoded spans replace the bytes; free them now
        job.batch = batch
        self.metrics.add(spans_received=len(batch.records) + batch.rejected, spans_rejected=batch.rejected)
        if batch.rejected:
            self.drops.add(_drops.REJECTED, batch.rejected)
        if not batch.records:
            job.future.set_result(batch)
            return 0
        jobs.append(job)
        return len(batch.records)

    def _ready_store(self) -> None:
        if self._prepare_store is not None:
            self._prepare_store()  # raises StoreUnavailable while the database is still down
            self._prepare_store = None

    def _commit(self, jobs: list[_Job]) -> None:
        if time.monotonic() < self._down_until:
            # The database failed moments ago: spool (or refuse) instead of another connect timeout.
            self._spool_or_fail(jobs, StoreUnavailable("the database is unavailable"))
            return
        batches = [job.batch for job in jobs if job.batch is not None]
        records: Sequence[SpanRecord]
        records = batches[0].records if len(batches) == 1 else [r for b in batches for r in b.records]
        started = time.perf_counter()
        try:
            self._ready_store()
            result = self._ingest(records)
        except StoreUnavailable as exc:
            # The store translates every read and write, so the leaf lookup on the way to
            # the write, often the first to find the database gone, raises this too.
            self._database_down(exc)
            self._spool_or_fail(jobs, exc)
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
        self._database_recovered()
        self._dirty = True
        self.metrics.add(
            spans_stored=result.stored,
            spans_duplicate=result.duplicates,
            spans_not_llm=result.not_llm,
            spans_unpriced=result.unpriced,
            batches_committed=1,
            commit_seconds=time.perf_counter() - started,
        )
        self._persist_drops()
        for job in jobs:
            batch = job.batch
            job.batch = None
            job.body = b""
            if batch is not None:
                batch.records = []  # the handler needs only the counts
                job.future.set_result(batch)

    def _spool_or_fail(self, jobs: list[_Job], down: StoreUnavailable) -> None:
        """Acknowledge what the spool took (fsynced); refuse the rest with 503."""
        spool = self.spool
        if spool is None:
            self._fail(jobs, down)
            return
        refused: list[_Job] = []
        for job in jobs:
            if time.monotonic() < self._spool_full_until:
                refused.append(job)
                continue
            try:
                spool.append(pack(job.media_type, job.body))
            except SpoolFull as exc:
                if not self.spool_full:
                    logger.warning("collector: %s; refusing batches with 503 until there is room", exc)
                self.spool_full = True
                self._spool_full_until = time.monotonic() + self.base_retry_after
                refused.append(job)
                continue
            except OSError:
                logger.exception("collector: could not write to the spool at %s", spool.directory)
                refused.append(job)
                continue
            self.spool_full = False
            batch = job.batch
            job.batch, job.body, job.spooled = None, b"", True
            if batch is not None:
                self.metrics.add(spans_spooled=len(batch.records))
                batch.records = []
                job.future.set_result(batch)
        if refused:
            self.metrics.add(spans_refused_spool_full=sum(len(j.batch.records) for j in refused if j.batch))
            self._fail(refused, SpoolFull("the database is unavailable and the spool is full"))

    def _database_down(self, exc: BaseException) -> None:
        if self._database_up:
            where = f"spooling to {self.spool.directory}" if self.spool else "refusing exports"
            logger.warning("collector: database unavailable (%s); %s until it is back", exc, where)
        if self._down_since is None:
            self._down_since = time.monotonic()
        self._database_up = False
        self._down_until = time.monotonic() + self.base_retry_after
        self.metrics.add(commit_failures=1)
        if self.spool is not None:
            return  # what is queued is spooled as the writer reaches it
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

    def _database_recovered(self) -> None:
        if not self._database_up and self._down_since is not None:
            logger.warning("collector: the database is back after %.1fs", time.monotonic() - self._down_since)
        self._database_up = True
        self._down_since = None
        self._spool_full_until = 0.0
        self.spool_full = False

    def _persist_drops(self) -> None:
        if self._record_drops is None:
            return
        pending = self.drops.take_pending()
        if pending:
            try:
                self._record_drops(pending)
            except Exception:  # the next commit tries again
                self.drops.restore(pending)

    def _close_spool(self) -> None:
        if self.spool is not None:
            self.spool.close()

    def _fail(self, jobs: list[_Job], exc: BaseException) -> None:
        dropped = 0
        for job in jobs:
            if job.batch is not None:
                dropped += len(job.batch.records)
                job.batch = None
            job.body = b""
            job.future.set_exception(exc)
        if dropped:
            self.metrics.add(spans_dropped=dropped)
