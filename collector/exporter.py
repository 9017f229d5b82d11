"""The embedded exporter: an OpenTelemetry ``SpanExporter`` that writes rows in-process.

It runs behind llmlens' export pipeline (``llmlens._pipeline``: bounded queue, drop
counters by cause, its own worker thread), so the application never waits on the
database. Like every exporter it never raises into the application.

When the database cannot be written (unreachable, restarting, disk full) a batch is not
dropped: it goes to the on-disk spool (:mod:`llmlens.collector._spool`), fsynced, and
``export`` reports success. While the outage lasts, batches go straight to the spool without
touching the database; a background thread probes the database with a growing interval and,
once it answers, replays the spool in order through the same ingest path (rows are unique
on trace and span id, so a record replayed twice is one row). Only what the spool cannot
take is lost: counted by cause (``spool_full``, ``disk_full``), logged with the exact
count, and persisted into the store's ``llm_drops`` table once it is writable again.
Segments another process left behind (a forked child that exited during an outage this
process never saw) are replayed after the next batch this process stores.
The pipeline's own losses (``queue_full``, ``shutdown``) reach the same ledger through
:meth:`StoreSpanExporter.on_drop`; in a forked child :meth:`StoreSpanExporter.after_fork`
leaves the parent's connections and pending counts to the parent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llmlens.collector import _drops
from llmlens.collector._drops import DropLedger
from llmlens.collector._spool import PROTOBUF, Spool, SpoolFull, SpoolSettings, has_segments, pack, unpack
from llmlens.collector.ingest import Ingestor, IngestResult
from llmlens.collector.pricing import Pricer
from llmlens.collector.record import SpanRecord, from_readable_span
from llmlens.collector.store import (
    StoreError,
    StoreUnavailable,
    checkpoint,
    open_store,
    record_drops,
    resolve_url,
)

logger = logging.getLogger("llmlens")

_MAX_PROBE_INTERVAL = 30.0
# Causes this exporter counts itself (and reports to the export queue's totals).
_OWN_CAUSES = frozenset({_drops.SPOOL_FULL, _drops.DISK_FULL, _drops.REJECTED, _drops.STORE_ERROR})
# Seconds between two SQLite WAL checkpoints (TRUNCATE) after exports: the main file, not
# the log, holds the data, and the log gives its disk space back.
_CHECKPOINT_INTERVAL = 30.0
# At shutdown, how long the last attempt to store this process' spooled spans may start
# new records (one record's write may run past it; the export pipeline bounds the exit).
_EXIT_REPLAY_SECONDS = 5.0


class StoreSpanExporter(SpanExporter):
    """Normalize, price and store spans in the database at ``db_url``, spooling through outages.

    >>> from llmlens._pipeline import ExportPipeline
    >>> provider.add_span_processor(ExportPipeline(StoreSpanExporter("sqlite:///llmlens.db")))  # doctest: +SKIP
    """

    # Losses are counted here by cause, so the export queue must not count a FAILURE again.
    counts_own_drops = True

    def __init__(
        self,
        db_url: str | None = None,
        *,
        pricer: Pricer | None = None,
        capture_content: bool = False,
        max_content_chars: int = 4096,
        spool: SpoolSettings | None = None,
        probe_interval: float = 0.5,
    ) -> None:
        self.db_url = resolve_url(db_url)
        self._pricer = pricer
        self._capture_content = capture_content
        self._max_content_chars = max_content_chars
        self._spool_settings = spool
        self._spool: Spool | None = None
        self._spool_opened = False
        self._checked_leftovers = False
        self._checkpointed = time.monotonic()
        self._stop_listening: Callable[[], None] | None = None
        self._probe_interval = probe_interval
        self._ingestor: Ingestor | None = None
        self._lock = threading.Lock()  # one ingest at a time (export and replay)
        self._state = threading.Lock()  # outage state vs. spool appends
        self._shutdown = threading.Event()
        self._outage = False
        self._appended = 0  # records this exporter spooled (tells replay whether it caught up)
        self._replayer: threading.Thread | None = None
        self._unflushed_drops = False
        self._outage_spooled = 0
        self._outage_drops: Counter[str] = Counter()
        self._failing_error = False  # the last batch failed for a reason other than an outage
        self._loss_reported = False  # the current burst of losses was logged
        self.totals = IngestResult()
        self.spooled = 0  # spans written to the spool
        self.replayed = 0  # spooled spans written to the store afterwards
        self.drops = DropLedger()

    @property
    def dropped(self) -> int:
        """Spans lost for good, all causes."""
        return self.drops.total

    # --- the store and the spool -------------------------------------------------------------

    def _get_ingestor(self) -> Ingestor:
        # Opened on the export worker at first export: configure() stays cheap, and a
        # missing database is an export failure, not an application crash.
        if self._ingestor is None:
            store = open_store(self.db_url)
            self._ingestor = Ingestor(store, self._pricer or Pricer.from_env(),
                                      capture_content=self._capture_content,
                                      max_content_chars=self._max_content_chars)
        return self._ingestor

    def _settings(self) -> SpoolSettings | None:
        if self._spool_settings is None:
            try:
                self._spool_settings = SpoolSettings.resolve(self.db_url)
            except ValueError as exc:
                logger.error("llmlens: no spool (%s); spans are dropped while the store is unavailable", exc)
        return self._spool_settings

    def _get_spool(self) -> Spool | None:
        if not self._spool_opened:
            self._spool_opened = True
            settings = self._settings()
            try:
                self._spool = settings.open(target=_safe_url(self.db_url)) if settings is not None else None
            except OSError as exc:
                logger.error("llmlens: no spool (%s); spans are dropped while the store is unavailable", exc)
        return self._spool

    def _ingest(self, records: Sequence[SpanRecord]) -> IngestResult:
        with self._lock:
            ingestor = self._get_ingestor()
            result = ingestor.ingest(records)
            self.totals += result
            self._persist_drops(ingestor)
            if time.monotonic() - self._checkpointed > _CHECKPOINT_INTERVAL:
                self._checkpointed = time.monotonic()
                checkpoint(ingestor.store.engine)
        return result

    def _persist_drops(self, ingestor: Ingestor) -> None:
        pending = self.drops.take_pending()
        if not pending:
            return
        try:
            record_drops(ingestor.store.engine, pending)
        except Exception:  # the next successful write tries again
            self.drops.restore(pending)

    # --- export --------------------------------------------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown.is_set():
            return SpanExportResult.FAILURE
        try:
            records = [from_readable_span(span) for span in spans]
        except Exception:
            logger.exception("llmlens: could not read %d spans; dropped", len(spans))
            return self._drop(_drops.REJECTED, len(spans), spans)
        if not self._checked_leftovers:
            self.drops.service = _service_of(spans)
            self._listen_to_pipeline()
            self._replay_leftovers()
        if self._outage:
            return self._spool_batch(spans)
        try:
            self._ingest(records)
        except StoreUnavailable as exc:
            self._begin_outage(exc)
            return self._spool_batch(spans)
        except StoreError as exc:  # e.g. an outdated schema: retrying cannot help
            return self._drop(_drops.STORE_ERROR, len(spans), spans, exc)
        except Exception as exc:  # never into the application
            logger.exception("llmlens: could not store %d spans", len(spans))
            return self._drop(_drops.STORE_ERROR, len(spans), spans, exc)
        self._replay_others()
        if self._failing_error:
            lost = self.drops.describe(self._outage_drops)
            logger.warning("llmlens: the store is writable again; %d spans were lost (%s)",
                           sum(self._outage_drops.values()), lost)
            self._failing_error = self._loss_reported = False
            self._outage_drops = Counter()
        return SpanExportResult.SUCCESS

    def _replay_leftovers(self) -> None:
        # Records an earlier run (or a process that died) spooled for this database are
        # replayed in the background; the spool directory is made only when needed.
        self._checked_leftovers = True
        settings = self._settings()
        if settings is not None and settings.directory.is_dir():
            spool = self._get_spool()
            if spool is not None and spool.records:
                self._start_replayer()

    def _replay_others(self) -> None:
        # A forked child (or any process writing to this database) that ran and exited
        # during an outage this process never saw left its segments behind: whoever next
        # writes successfully replays them. One directory listing per exported batch.
        replayer = self._replayer
        if replayer is not None and replayer.is_alive():
            return
        settings = self._settings()
        if settings is None or not has_segments(settings.directory):
            return
        if self._get_spool() is not None:
            with self._state:
                self._start_replayer()

    def _spool_batch(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        spool = self._get_spool()
        if spool is None:
            return self._drop(_drops.STORE_ERROR, len(spans), spans)
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        record = pack(PROTOBUF, encode_spans(spans).SerializeToString())
        with self._state:
            if not self._outage:  # the store came back meanwhile: spool anyway, replay follows
                self._outage = True
            self._start_replayer()  # (a forked child starts its own)
            try:
                spool.append(record)
            except SpoolFull as exc:
                return self._drop(exc.cause, len(spans), spans, exc)
            except OSError as exc:
                return self._drop(_drops.DISK_FULL, len(spans), spans, exc)
            self._appended += 1
            self.spooled += len(spans)
            self._outage_spooled += len(spans)
        return SpanExportResult.SUCCESS

    def _drop(self, cause: str, count: int, spans: Sequence[ReadableSpan],
              error: BaseException | None = None) -> SpanExportResult:
        self._count_loss(cause, count, _service_of(spans))
        if not self._outage:
            self._failing_error = True
        if not self._loss_reported:
            # Once per burst; the recovery message gives the burst's exact totals by cause.
            self._loss_reported = True
            logger.error("llmlens: dropped %d spans (%s)%s", count, cause.replace("_", " "),
                         f": {error}" if error else "")
        return SpanExportResult.FAILURE

    def _listen_to_pipeline(self) -> None:
        # Losses the export queue counts (queue full, shutdown) are persisted with ours.
        try:
            from llmlens._pipeline import add_drop_listener  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return
        self._stop_listening = add_drop_listener(self._on_pipeline_drop)

    def _on_pipeline_drop(self, cause: str, count: int) -> None:
        if cause not in _OWN_CAUSES:  # ours reach the pipeline through _count_loss already
            self.drops.add(cause, count)
            self._outage_drops[cause] += count

    def _count_loss(self, cause: str, count: int, service: str = "") -> None:
        self.drops.add(cause, count, service=service)
        self._outage_drops[cause] += count
        self._unflushed_drops = True
        _record_in_pipeline(cause, count)

    # --- outage and replay ------------------------------------------------------------------

    def _begin_outage(self, exc: BaseException) -> None:
        with self._state:
            if self._outage:
                return
            self._outage = True
            self._outage_spooled = 0
            self._outage_drops = Counter()
            spool = self._get_spool()
            where = f"spooling to {spool.directory}" if spool is not None else "no spool: dropping"
            # The replayer starts with the first append (_spool_batch): started here, its first
            # pass could find nothing spooled yet (encoding a first batch can be slow) and
            # call the outage over.
            logger.warning("llmlens: the store is unavailable (%s); %s until it is back", exc, where)

    def _start_replayer(self) -> None:
        if self._replayer is None or not self._replayer.is_alive():
            self._replayer = threading.Thread(target=self._replay_loop, name="llmlens-spool-replay", daemon=True)
            self._replayer.start()

    def _replay_loop(self) -> None:
        spool = self._get_spool()
        delay = self._probe_interval
        replayed_before = self.replayed
        while spool is not None and not self._shutdown.wait(delay):
            appended = self._appended
            try:
                result = spool.replay(self._replay_record, should_stop=self._shutdown.is_set)
            except (StoreError, OSError):
                delay = min(delay * 2, _MAX_PROBE_INTERVAL)
                continue
            except Exception:
                logger.exception("llmlens: spool replay failed")
                delay = min(delay * 2, _MAX_PROBE_INTERVAL)
                continue
            if result.busy:  # another process is replaying this spool: it catches up for us
                delay = min(delay * 2, _MAX_PROBE_INTERVAL)
                continue
            if result.stopped:  # shutting down: the exit's own pass takes the rest
                return
            if not self._caught_up(replayed_before, appended):  # spooled meanwhile: another pass
                delay = 0.0
                continue
            return

    def _caught_up(self, replayed_before: int, appended: int) -> bool:
        """After a complete replay pass: end the outage and log its totals, unless this
        process spooled more meanwhile (False: another pass is needed)."""
        with self._state:
            if self._appended != appended:
                return False
            ended, self._outage = self._outage, False
            self._replayer = None
            spooled, lost = self._outage_spooled, dict(self._outage_drops)
            self._outage_drops = Counter()
            self._loss_reported = False
        if ended:
            lost_text = f"; lost {sum(lost.values())} ({self.drops.describe(lost)})" if lost else ""
            logger.warning("llmlens: the store is writable again; spooled %d spans during the outage, "
                           "%d spooled spans now stored%s", spooled, self.replayed - replayed_before, lost_text)
        elif self.replayed > replayed_before:
            logger.info("llmlens: stored %d spans that other processes had spooled",
                        self.replayed - replayed_before)
        return True

    def _replay_record(self, record: bytes) -> None:
        from llmlens.collector.otlp import OTLPDecodeError, decode

        media, body = unpack(record)
        try:
            batch = decode(body, media)
        except OTLPDecodeError:
            self._count_loss(_drops.REJECTED, 1)
            return
        try:
            self._ingest(batch.records)
        except StoreError:
            raise  # stays spooled; replayed when the store is back
        except Exception:
            # A batch that can never be stored must not block the spool behind it.
            logger.exception("llmlens: a spooled batch of %d spans cannot be stored", len(batch.records))
            self._count_loss(_drops.REJECTED, len(batch.records))
            return
        self.replayed += len(batch.records)

    # --- SpanExporter ------------------------------------------------------------------------

    def after_fork(self) -> None:
        """In a forked child (the export pipeline calls this): new locks, no replay thread of
        the parent's. The store's engine cache drops the parent's pooled connections in the
        child itself (closing them would end the parent's sessions too), and the spool forks
        itself."""
        self._lock = threading.Lock()
        self._state = threading.Lock()
        self._replayer = None

    def shutdown(self) -> None:
        self._shutdown.set()
        if self._stop_listening is not None:
            self._stop_listening()
        replayer = self._replayer
        if replayer is not None:
            replayer.join(2.0)
        if replayer is None or not replayer.is_alive():
            self._replay_before_exit()
        if self._spool is not None:
            self._spool.close()
        with self._lock:
            if self._ingestor is not None:
                self._persist_drops(self._ingestor)
                checkpoint(self._ingestor.store.engine)
                # The engine is llmlens' (opened from the URL), so are its connections:
                # close them now rather than leave them to the garbage collector. The
                # engine stays usable; another user of it reconnects.
                self._ingestor.store.engine.dispose()

    def _replay_before_exit(self) -> None:
        # A short job whose last batches met a brief outage (other writers holding SQLite's
        # lock past its busy timeout, a database restarting) would otherwise leave them on
        # disk until the next process that writes to this database, if one ever does. One
        # bounded pass: what it cannot store stays spooled, safe, for that next process.
        spool = self._spool
        if spool is None or not self._outage:
            return
        deadline = time.monotonic() + _EXIT_REPLAY_SECONDS
        replayed_before, appended = self.replayed, self._appended
        try:
            result = spool.replay(self._replay_record, should_stop=lambda: time.monotonic() > deadline)
        except (StoreError, OSError) as exc:
            reason = str(exc)
        else:
            if not result.busy and not result.stopped and self._caught_up(replayed_before, appended):
                return
            reason = ("another process is replaying it" if result.busy else "out of time" if result.stopped
                      else "more was spooled meanwhile")
        stored = self.replayed - replayed_before
        logger.warning("llmlens: stored %d spooled spans at exit; the rest stay in %s (%s) for the next "
                       "process that writes to this database", stored, spool.directory, reason)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """True unless spans were dropped since the last flush (spooled spans are safe on disk)."""
        dropped, self._unflushed_drops = self._unflushed_drops, False
        return not dropped


def _service_of(spans: Sequence[ReadableSpan]) -> str:
    for span in spans[:1]:
        resource = span.resource
        if resource is not None:
            return str(resource.attributes.get("service.name", ""))
    return ""


def _safe_url(url: str) -> str:
    import re

    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def _record_in_pipeline(cause: str, count: int) -> None:
    """Tell the export queue's process-wide counters (``llmlens.dropped()``) about a loss."""
    try:
        from llmlens._pipeline import record_drop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return
    record_drop(cause, count)
