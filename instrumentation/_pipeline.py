"""The export pipeline: a bounded queue and one worker thread between llmlens spans and an exporter.

llmlens uses :class:`ExportPipeline` instead of the SDK's ``BatchSpanProcessor`` because
that one loses spans without saying so where it matters: a full queue is one warning
while ``force_flush`` and ``shutdown`` still return True, ``force_flush`` ignores its
timeout, interpreter exit waits on an exporter for as long as it retries, and spans of
``multiprocessing`` children are never exported (they leave through ``os._exit``).

What this one promises:

* **Bounded.** At most ``max_queue_size`` spans wait; a span that finds the queue full
  is dropped and counted. ``on_end`` never blocks on the exporter and never raises.
* **Counted, by cause.** ``queue_full`` (the app outran the exporter),
  ``export_failed`` (the exporter raised or returned FAILURE after its own retries) and
  ``shutdown`` (still queued or exporting when shutdown's deadline passed). The worker
  logs each loss with the exact count; :func:`dropped` reads the process' totals;
  ``force_flush``/``shutdown`` return False when anything was dropped since the previous
  flush. An exporter that counts its own losses (a spool that is full, say) calls
  :func:`record_drop` and sets ``counts_own_drops = True`` so a FAILURE is not counted
  twice.
* **Persistable.** The pipeline hands its own losses to its exporter's
  ``on_drop(cause, count)`` when it has one (the embedded exporter persists them into the
  store's ``llm_drops``), and :func:`add_drop_listener` registers
  ``listener(cause, count)`` for every pipeline's. Both are called on a worker thread
  (never the application's) and must be quick; their errors are logged and ignored.
* **Timeouts honoured.** ``force_flush(timeout)`` and ``shutdown(timeout)`` return by
  their deadline whatever the exporter does; the worker is a daemon thread. At
  interpreter exit the pipelines are shut down within ``exit_timeout`` in all.
* **Fork-safe.** In a forked child the queue, locks, counters and worker thread are new
  (what the parent had queued is the parent's to export) and the exporter's
  ``after_fork()`` runs, if it has one (the embedded exporter forgets the parent's
  database connections there). A ``multiprocessing`` child, which ends in ``os._exit``
  without running ``atexit``, flushes through ``multiprocessing``'s own exit
  finalizers, and a pool worker stopped with ``terminate()`` (SIGTERM, e.g. leaving a
  ``with Pool()`` block) flushes before it dies, within ``exit_timeout``, whichever of
  its threads the signal reaches (see ``_read_signals``).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["ExportPipeline", "add_drop_listener", "dropped", "record_drop", "shutdown_at_exit"]

logger = logging.getLogger("llmlens")

QUEUE_FULL: Final = "queue_full"
EXPORT_FAILED: Final = "export_failed"
SHUTDOWN: Final = "shutdown"
CAUSES: Final = (QUEUE_FULL, EXPORT_FAILED, SHUTDOWN)

DEFAULT_MAX_QUEUE_SIZE: Final = 2048
DEFAULT_MAX_BATCH_SIZE: Final = 512
DEFAULT_SCHEDULE_DELAY: Final = 0.5
DEFAULT_EXIT_TIMEOUT: Final = 5.0
_REPORT_INTERVAL: Final = 5.0  # seconds between two loss reports of one pipeline (exact counts, summed)

# --- process-wide drop counts -------------------------------------------------------------------
_totals: dict[str, int] = dict.fromkeys(CAUSES, 0)
_totals_lock = threading.Lock()
_listeners: list[Callable[[str, int], None]] = []


def dropped() -> dict[str, int]:
    """Spans this process has lost since it started, by cause (a forked child counts its own).

    >>> llmlens.dropped()  # doctest: +SKIP
    {'queue_full': 0, 'export_failed': 0, 'shutdown': 0}
    """
    with _totals_lock:
        return dict(_totals)


def record_drop(cause: str, count: int) -> None:
    """Count ``count`` spans lost for ``cause`` (exporters that count their own losses call this)."""
    if count > 0:
        with _totals_lock:
            _totals[cause] = _totals.get(cause, 0) + count


def add_drop_listener(listener: Callable[[str, int], None]) -> Callable[[], None]:
    """Call ``listener(cause, count)`` with every new loss; returns a function that removes it."""
    _listeners.append(listener)

    def remove() -> None:
        if listener in _listeners:
            _listeners.remove(listener)

    return remove


def _notify(cause: str, count: int) -> None:
    for listener in list(_listeners):
        try:
            listener(cause, count)
        except Exception:
            logger.warning("llmlens: a drop listener failed", exc_info=True)


# --- the pipeline ---------------------------------------------------------------------------------
class ExportPipeline(SpanProcessor):
    """Queue finished spans and export them in batches on one daemon thread.

    >>> provider.add_span_processor(ExportPipeline(exporter, exit_timeout=5))  # doctest: +SKIP
    """

    def __init__(self, exporter: SpanExporter, *, max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
                 max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, schedule_delay: float = DEFAULT_SCHEDULE_DELAY,
                 exit_timeout: float = DEFAULT_EXIT_TIMEOUT) -> None:
        if max_queue_size <= 0 or max_batch_size <= 0:
            raise ValueError("queue and batch sizes must be positive")
        self.exporter = exporter
        self.max_queue_size = max_queue_size
        self.max_batch_size = min(max_batch_size, max_queue_size)
        self.schedule_delay = schedule_delay
        self.exit_timeout = exit_timeout
        self._counts_own = bool(getattr(exporter, "counts_own_drops", False))
        self._stopped = False
        self._result: bool | None = None  # shutdown's answer, once shut down
        self._reset()
        _install_process_hooks()
        _live.add(self)
        _watch_multiprocessing_exit()

    def _reset(self) -> None:
        # Everything a forked child must not share with its parent.
        self._queue: deque[ReadableSpan] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the worker waits here for work
        self._progress = threading.Condition(self._lock)  # flushes wait here for the worker
        self._enqueued = 0  # spans ever queued; FIFO, so a flush waits for _done to reach it
        self._done = 0  # spans the exporter has returned from (exported or failed)
        self._urgent = 0  # flushes waiting: export without waiting for a full batch
        self._dropped = dict.fromkeys(CAUSES, 0)
        self._reported = dict.fromkeys(CAUSES, 0)  # what was logged and sent to listeners
        # One report at a time, from claiming new losses to telling the listeners: a flush
        # that finds the worker mid-report returns only once the listeners have heard.
        self._reporting = threading.Lock()
        self._flushed_drops = 0  # total drops at the previous flush
        self._last_report = 0.0
        self._worker: threading.Thread | None = None
        if not self._stopped:
            self._worker = threading.Thread(target=self._run, name="llmlens-export", daemon=True)
            self._worker.start()

    # SpanProcessor -----------------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:
            return
        with self._lock:
            if self._stopped:
                self._drop(SHUTDOWN, 1)
                return
            queue = self._queue
            if len(queue) >= self.max_queue_size:
                self._drop(QUEUE_FULL, 1)
                return
            queue.append(span)
            self._enqueued += 1
            if len(queue) == self.max_batch_size:  # wake the worker once per full batch
                self._wake.notify()

    def _drop(self, cause: str, count: int) -> None:
        # Called with the lock held; the worker logs and reports it.
        self._dropped[cause] += count
        record_drop(cause, count)

    # The worker --------------------------------------------------------------------------------
    def _run(self) -> None:
        # The exporter's own requests (OTLP over httpx) must not be traced back into us.
        otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
        while True:
            with self._lock:
                if not self._stopped and not self._urgent and len(self._queue) < self.max_batch_size:
                    self._wake.wait(self.schedule_delay)
                if self._stopped and not self._queue:
                    break
                count = min(len(self._queue), self.max_batch_size)
                batch = [self._queue.popleft() for _ in range(count)]
            if batch:
                self._export(batch)
            self._report()
        self._report(force=True)

    def _export(self, batch: list[ReadableSpan]) -> None:
        failed = False
        try:
            failed = self.exporter.export(batch) is not SpanExportResult.SUCCESS
            error: Exception | None = None
        except Exception as exc:  # an exporter must not kill the worker
            failed, error = True, exc
        with self._lock:
            if failed and not self._counts_own:
                self._drop(EXPORT_FAILED, len(batch))
            self._done += len(batch)
            self._progress.notify_all()
        if error is not None:
            logger.error("llmlens: the exporter failed on %d spans: %r", len(batch), error)

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < _REPORT_INTERVAL:
            return
        with self._reporting:
            with self._lock:
                new = {cause: self._dropped[cause] - self._reported[cause] for cause in CAUSES}
                self._reported = dict(self._dropped)
                queued = len(self._queue)
            if not any(new.values()):
                return
            self._last_report = now
            on_drop = getattr(self.exporter, "on_drop", None)
            for cause, count in new.items():
                if count:
                    logger.error("llmlens: dropped %d spans (%s; %d still queued, queue holds %d)",
                                 count, cause, queued, self.max_queue_size)
                    if callable(on_drop):
                        try:
                            on_drop(cause, count)
                        except Exception:
                            logger.warning("llmlens: the exporter could not count a loss", exc_info=True)
                    _notify(cause, count)

    # Flush and shutdown --------------------------------------------------------------------------
    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until what was queued when called is exported; False on timeout or on any loss."""
        deadline = time.monotonic() + max(0, timeout_millis) / 1000
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        try:
            target = self._enqueued
            self._urgent += 1
            self._wake.notify()
            try:
                done = self._progress.wait_for(lambda: self._done >= target or self._worker_gone(),
                                               max(0.0, deadline - time.monotonic()))
            finally:
                self._urgent -= 1
            done = done and self._done >= target
            total = sum(self._dropped.values())
            lost, self._flushed_drops = total != self._flushed_drops, total
        finally:
            self._lock.release()
        self._report(force=True)
        return done and not lost

    def _worker_gone(self) -> bool:
        return self._worker is None or not self._worker.is_alive()

    def shutdown(self, timeout_millis: int | None = None) -> bool:  # type: ignore[override]
        """Export what is queued and stop, within ``timeout_millis`` (default: ``exit_timeout``)."""
        if self._result is not None:
            return self._result
        timeout = self.exit_timeout if timeout_millis is None else timeout_millis / 1000
        deadline = time.monotonic() + max(0.0, timeout)
        ok = self.force_flush(int(max(0.0, timeout) * 1000))
        with self._lock:
            self._stopped = True
            self._wake.notify()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = self._enqueued - self._done  # queued, or inside the exporter
            if left:
                # Still queued or inside the exporter at the deadline: that is a loss.
                self._queue.clear()
                self._drop(SHUTDOWN, left)
                self._done = self._enqueued
                ok = False
        self._report(force=True)  # before the exporter stops, so it can persist the count
        _bounded(self._shutdown_exporter, max(0.0, deadline - time.monotonic()), "llmlens-exporter-shutdown")
        self._result = ok and not left
        return self._result

    def _shutdown_exporter(self) -> bool:
        self.exporter.shutdown()
        return True

    # Fork and exit -------------------------------------------------------------------------------
    def _after_fork(self) -> None:
        self._reset()
        after_fork = getattr(self.exporter, "after_fork", None)
        if callable(after_fork):
            try:
                after_fork()
            except Exception:
                logger.warning("llmlens: the exporter could not reset after fork", exc_info=True)


def _bounded(work: Callable[[], bool], timeout: float, name: str) -> bool:
    """Run ``work`` on a daemon thread and stop waiting at the deadline (False then)."""
    outcome: list[bool] = []

    def run() -> None:
        try:
            outcome.append(bool(work()))
        except Exception:
            logger.warning("llmlens: %s failed", name, exc_info=True)

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    worker.join(max(0.0, timeout))
    return bool(outcome and outcome[0])


def flush_all(processors: Iterable[SpanProcessor], timeout: float) -> bool:
    """Flush every processor within ``timeout`` seconds in all; True when nothing was lost."""
    deadline = time.monotonic() + timeout
    ok = True
    for processor in processors:
        remaining = max(0.0, deadline - time.monotonic())
        if isinstance(processor, ExportPipeline):
            ok = processor.force_flush(int(remaining * 1000)) and ok
        else:  # other processors may ignore their timeout: bound them from outside
            ok = _bounded(lambda p=processor, r=remaining: p.force_flush(int(r * 1000)), remaining,  # type: ignore[misc]
                          "llmlens-flush") and ok
    return ok


def shutdown_all(processors: Iterable[SpanProcessor], timeout: float) -> bool:
    """Shut every processor down within ``timeout`` seconds in all; True when nothing was lost."""
    deadline = time.monotonic() + timeout
    ok = True
    for processor in processors:
        remaining = max(0.0, deadline - time.monotonic())
        if isinstance(processor, ExportPipeline):
            ok = processor.shutdown(int(remaining * 1000)) and ok
        else:
            ok = _bounded(lambda p=processor: p.shutdown() or True, remaining, "llmlens-shutdown") and ok  # type: ignore[misc]
    return ok


# --- process hooks: fork, multiprocessing exit, interpreter exit ------------------------------------
_live: weakref.WeakSet[ExportPipeline] = weakref.WeakSet()
_hooks_installed = False


def _install_process_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    os.register_at_fork(after_in_child=_after_fork_in_child)
    atexit.register(_at_exit)


def shutdown_at_exit() -> None:
    """Shut every live pipeline down within the longest ``exit_timeout`` (a second call does nothing).

    The interpreter exit hook; the store's own exit hook calls it first, so the flush
    writes through connections that are closed only after it.
    """
    _at_exit()


def _at_exit() -> None:
    # One budget for all pipelines: exit takes at most the longest exit_timeout.
    pipelines = [p for p in list(_live) if p._result is None]
    if pipelines:
        shutdown_all(pipelines, max(p.exit_timeout for p in pipelines))


def _after_fork_in_child() -> None:
    global _totals_lock, _exit_flush, _exit_flushed
    _totals_lock = threading.Lock()  # another thread of the parent may have held it
    with _totals_lock:
        for cause in _totals:
            _totals[cause] = 0
    _exit_flush, _exit_flushed = threading.Lock(), threading.Event()
    if _wakeup is not None:
        # The parent's signal pipe: its reader did not survive the fork, and this process'
        # signals must not reach the parent's reader through the inherited descriptors.
        _stop_reading_signals()
    for pipeline in list(_live):
        pipeline._after_fork()
    # A multiprocessing child clears its exit finalizers after this hook runs, then runs its
    # after-fork callbacks: register there, so the finalizer survives into the child.
    util = sys.modules.get("multiprocessing.util")
    if util is not None and _live:
        util.register_after_fork(_mp_marker, _in_multiprocessing_child)


class _Marker:
    """multiprocessing keeps after-fork callbacks in a weak dictionary: something to refer to."""


_mp_marker = _Marker()


_watched_pid = 0


def _watch_multiprocessing_exit() -> None:
    # A pipeline created inside a multiprocessing child (configure() called in the child).
    process = sys.modules.get("multiprocessing.process")
    if process is not None and process.parent_process() is not None and _watched_pid != os.getpid():
        _in_multiprocessing_child(None)


def _in_multiprocessing_child(_: Any) -> None:
    global _watched_pid
    from multiprocessing import util

    if _watched_pid == os.getpid():
        return
    _watched_pid = os.getpid()
    util.Finalize(_mp_marker, _exit_child, exitpriority=100)
    # Pool.terminate() (and leaving a `with Pool()` block) stops workers with SIGTERM, whose
    # default action kills them before any finalizer: flush first, then die the same way.
    try:
        # (Ours already when this child's parent was such a child: it reads signals anew.)
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, _flush_then_die):
            signal.signal(signal.SIGTERM, _flush_then_die)
            _read_signals()
    except (ValueError, OSError):  # not the main thread
        pass


_exiting = False
_pending_signal: int | None = None
# The exit flush of a multiprocessing child runs once, on whichever thread asks first (the
# exit finalizer, the SIGTERM handler, the signal reader); the others wait for it.
_exit_flush = threading.Lock()  # taken once, never released
_exit_flushed = threading.Event()
# (read, write) ends of the pipe Python writes each signal's number to (its wakeup fd).
_wakeup: tuple[int, int] | None = None
# How long the signal reader waits for the main thread to die of the signal it handed it.
_SIGNAL_GRACE: Final = 1.0


def _flush_once() -> None:
    pipelines = [p for p in list(_live) if p._result is None]
    if not _exit_flush.acquire(blocking=False):
        _exit_flushed.wait(max((p.exit_timeout for p in list(_live)), default=DEFAULT_EXIT_TIMEOUT))
        return
    try:
        if pipelines:
            # A signal handler may have interrupted this very thread inside a pipeline's lock:
            # flush on another thread and give up at the deadline rather than wait for a lock
            # we hold.
            budget = max(p.exit_timeout for p in pipelines)
            _bounded(lambda: shutdown_all(pipelines, budget), budget, "llmlens-exit-flush")
    finally:
        _exit_flushed.set()


def _exit_child() -> None:
    global _exiting
    _exiting = True
    try:
        _flush_once()
    finally:
        if _pending_signal is not None:  # terminated while flushing: die of it now, as asked
            signal.signal(_pending_signal, signal.SIG_DFL)
            os.kill(os.getpid(), _pending_signal)


def _flush_then_die(signum: int, frame: Any) -> None:
    global _pending_signal
    if _exiting:
        # A pool worker told to finish is flushing in its exit finalizer when terminate()
        # follows: let that flush complete rather than start a second one beside it.
        _pending_signal = signum
        return
    _flush_once()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _read_signals() -> None:
    """Make SIGTERM flush and kill the process even when its main thread cannot run the handler.

    Python runs a signal handler on the main thread only, once that thread is back in the
    interpreter; the kernel hands a process-directed signal to any thread that does not block
    it (often the export thread). A pool worker's main thread stopped by ``terminate()`` may
    wait for good on the task queue's read lock, which ``terminate()`` itself holds: the
    handler never ran, the worker never died, and the parent's join never returned. Python
    writes the signal's number to its wakeup fd from whichever thread took the signal, so a
    thread of ours reads it and does what the handler would have.
    """
    global _wakeup
    read, write = os.pipe()
    try:
        os.set_blocking(write, False)
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except (ValueError, OSError):
        os.close(read)
        os.close(write)
        raise
    if previous != -1:  # the application reads signals this way itself: leave it its own
        signal.set_wakeup_fd(previous)
        os.close(read)
        os.close(write)
        return
    _wakeup = (read, write)
    threading.Thread(target=_signal_reader, args=(read,), name="llmlens-signals", daemon=True).start()


def _stop_reading_signals() -> None:
    global _wakeup
    if _wakeup is None:
        return
    read, write = _wakeup
    _wakeup = None
    try:
        current = signal.set_wakeup_fd(-1)
        if current != write:  # set by the application since: keep it
            signal.set_wakeup_fd(current)
    except ValueError:  # not the main thread
        pass
    os.close(read)
    os.close(write)


def _signal_reader(fd: int) -> None:
    global _pending_signal
    while True:
        try:
            received = os.read(fd, 64)
        except OSError:  # closed
            return
        if not received:
            return
        if signal.SIGTERM not in received:  # other signals are the application's business
            continue
        if _exiting:  # the exit finalizer is flushing on the main thread: it dies of it after
            _pending_signal = signal.SIGTERM
            continue
        _flush_once()
        # Die of the signal as its default action would. Only the main thread may restore that
        # action: hand it the signal (a wait it is blocked in returns), its handler finds the
        # flush done. Should it never get back to the interpreter, leave all the same.
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
        time.sleep(_SIGNAL_GRACE)
        os._exit(128 + signal.SIGTERM)
