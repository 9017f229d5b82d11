"""``llmlens collector``: the OTLP receiver, so any process in any language can send spans.

The endpoint does what Phoenix's does and no more: it checks the request (token, media
type, size before and after decompression) and enqueues the body. The single
:class:`~llmlens.collector._writer.BatchWriter` thread decodes, normalizes, prices and
commits; the handler answers 200 only after its batch is committed.

=====================================  ======================================================
``POST /v1/traces``                    OTLP/HTTP, protobuf or JSON, optionally gzip/deflate
``GET /healthz``                       readiness, including the database (no token needed)
``GET /metrics``                       counters in the Prometheus text format
gRPC ``TraceService/Export``           OTLP/gRPC on ``grpc_port`` (see :mod:`._grpc`)
=====================================  ======================================================

Failures, each with a ``google.rpc.Status`` body in the request's encoding:
401 missing/wrong bearer token; 415 unsupported media type or content encoding;
413 body over ``max_body_bytes`` before or after decompression; 400 undecodable body;
503 with ``Retry-After`` when the write queue is full, the database is down and the
spool is full (or disabled), or the collector is shutting down (OTLP exporters retry
those; a retried batch is a no-op). While the database is down, batches are fsynced to the
on-disk spool and answered 200; they are written once it is back, also after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import ipaddress
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from llmlens.collector import otlp
from llmlens.collector._body import BodyError, decompress, read_body
from llmlens.collector._drops import DropLedger
from llmlens.collector._metrics import CONTENT_TYPE, Metrics, render
from llmlens.collector._spool import SpoolFull, SpoolSettings
from llmlens.collector._writer import BatchWriter, IngestFn, QueueFull
from llmlens.collector.store import StoreUnavailable, resolve_url

logger = logging.getLogger("llmlens.collector")

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 4318
DEFAULT_GRPC_PORT: Final = 4317
_PARENT_POLL_SECONDS: Final = 1.0  # how soon a worker notices its master is gone
DEFAULT_MAX_BODY_BYTES: Final = 4 * 1024 * 1024  # a batch of 512 GenAI spans is ~0.3 MiB
DEFAULT_QUEUE_MAX_BATCHES: Final = 32
# Compressed bodies this large are inflated off the event loop so /healthz and the other
# connections keep being served meanwhile; small ones are not worth the thread hop.
_OFFLOAD_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class CollectorSettings:
    """Everything the collector service needs, resolved once (see :meth:`resolve`)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    db_url: str | None = None
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    capture_content: bool = False
    queue_max_batches: int = DEFAULT_QUEUE_MAX_BATCHES
    # Bytes of request bodies held at once (being read, queued or committing); beyond it
    # new requests get 503. With the queue bound this is what bounds memory under a flood.
    max_inflight_bytes: int = 64 * 1024 * 1024
    # How long a request waits for its batch's commit before answering 503 (retry later).
    commit_timeout: float = 10.0
    retry_after: int = 1
    shutdown_timeout: float = 10.0
    # Seconds between evaluations of the alert rules; 0 disables them.
    alert_interval: float = 60.0
    # Raw rows older than this many days are pruned once a day (None: kept forever).
    retention_days: float | None = None
    # Where batches wait while the database is down, and how large that may grow (0: no spool).
    spool_dir: str | None = None
    spool_max_bytes: int | None = None
    spool: SpoolSettings | None = None
    # OTLP/gRPC port; 0 runs no gRPC receiver. The command line defaults to 4317
    # (DEFAULT_GRPC_PORT); an app built with create_app() serves HTTP only unless asked.
    grpc_port: int = 0

    @classmethod
    def resolve(cls, **explicit: Any) -> CollectorSettings:
        """Explicit values (None = not given) over ``LLMLENS_DB_URL`` / ``LLMLENS_COLLECTOR_TOKEN``."""
        given = {k: v for k, v in explicit.items() if v is not None}
        settings = cls(**given)
        if settings.db_url is None:
            settings = replace(settings, db_url=resolve_url(None))
        if settings.token is None and os.environ.get("LLMLENS_COLLECTOR_TOKEN"):
            settings = replace(settings, token=os.environ["LLMLENS_COLLECTOR_TOKEN"])
        if settings.spool is None:
            assert settings.db_url is not None
            spool = SpoolSettings.resolve(settings.db_url, settings.spool_dir, settings.spool_max_bytes)
            settings = replace(settings, spool=spool)
        if settings.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if settings.queue_max_batches < 1:
            raise ValueError("queue_max_batches must be at least 1")
        if settings.retention_days is not None and settings.retention_days <= 0:
            raise ValueError("retention_days must be positive")
        return settings


class _Service:
    """The endpoints, bound to one writer and one store."""

    def __init__(self, settings: CollectorSettings, store: Any, ingest: IngestFn | None) -> None:
        self.settings = settings
        self.store = store
        self.metrics = Metrics()
        self.registry = self.metrics.registry(self._gauges, lambda: dict(self.drops.totals))
        self._ingest = ingest
        self.writer: BatchWriter | None = None
        expected = settings.token
        self._token = expected.encode() if expected else None
        self.drops = DropLedger("llmlens-collector")
        self.grpc_port = 0  # the port the gRPC receiver bound, once started
        self._inflight = 0  # bytes reserved by requests in progress (event loop only: no lock)

    # --- lifecycle -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        prepare_store = None
        if self.store is None:
            self.store, prepare_store = await anyio.to_thread.run_sync(open_collector_store, self.settings)
        spool = self.settings.spool.open(target=self.store.url) if self.settings.spool else None
        ingest = self._ingest
        if ingest is None:
            from llmlens.collector.ingest import Ingestor
            from llmlens.collector.pricing import Pricer

            ingestor = Ingestor(self.store, Pricer.from_env(), capture_content=self.settings.capture_content)
            ingest = ingestor.ingest
        self.writer = BatchWriter(
            ingest,
            max_batches=self.settings.queue_max_batches,
            retry_after=self.settings.retry_after,
            metrics=self.metrics,
            spool=spool,
            drops=self.drops,
            prepare_store=prepare_store,
            record_drops=_store_call(self.store, "record_drops"),
            checkpoint=_store_call(self.store, "checkpoint"),
        )
        self.writer.start()
        receiver = None
        if self.settings.grpc_port:
            receiver = await anyio.to_thread.run_sync(self._start_grpc, self.writer)
        async with anyio.create_task_group() as tasks:
            if self.settings.alert_interval > 0:
                tasks.start_soon(self._evaluate_alerts, self.settings.alert_interval)
            if self.settings.retention_days is not None:
                tasks.start_soon(self._prune_daily, self.settings.retention_days)
            try:
                yield
            finally:
                tasks.cancel_scope.cancel()
                if receiver is not None:
                    # In-flight gRPC calls wait for their commits, so the writer outlives them.
                    await anyio.to_thread.run_sync(receiver.stop, self.settings.commit_timeout)
                # uvicorn has stopped accepting and finished in-flight requests by now: commit
                # whatever they queued so every acknowledged span is stored before exit.
                await anyio.to_thread.run_sync(self.writer.close, self.settings.shutdown_timeout)

    def _start_grpc(self, writer: BatchWriter) -> Any:
        from llmlens.collector._grpc import GrpcReceiver

        settings = self.settings
        receiver = GrpcReceiver(writer, host=settings.host, port=settings.grpc_port, token=settings.token,
                                max_message_bytes=settings.max_body_bytes,
                                commit_timeout=settings.commit_timeout, metrics=self.metrics,
                                max_calls=4 * settings.queue_max_batches + 64)
        self.grpc_port = receiver.start()
        return receiver

    async def _evaluate_alerts(self, interval: float) -> None:
        """Evaluate the alert rules every ``interval`` seconds; a failure is logged, never fatal."""
        from llmlens.collector.alerts import check_alerts, ensure_default_rule

        try:
            await anyio.to_thread.run_sync(ensure_default_rule, self.store)
        except Exception as exc:
            logger.warning("llmlens collector: could not add the default alert rule: %s", exc)
        while True:
            await anyio.sleep(interval)
            try:
                await anyio.to_thread.run_sync(check_alerts, self.store)
            except Exception as exc:
                logger.warning("llmlens collector: alert evaluation failed: %s", exc)

    async def _prune_daily(self, days: float) -> None:
        """Prune raw rows older than ``days`` now and every day; a failure is logged, never fatal."""
        from llmlens.collector.store import prune

        while True:
            cutoff = datetime.now(UTC) - timedelta(days=days)
            try:
                result = await anyio.to_thread.run_sync(functools.partial(prune, self.store.engine,
                                                                          raw_before=cutoff))
                logger.info("llmlens collector: pruned %d raw rows older than %s", result.raw_rows, cutoff)
            except Exception as exc:
                logger.warning("llmlens collector: pruning failed: %s", exc)
            await anyio.sleep(86400)

    # --- POST /v1/traces ---------------------------------------------------------------------

    async def traces(self, request: Request) -> Response:
        media = _media_type(request.headers.get("content-type", ""))
        self.metrics.add(requests=1)
        if not self._authorized(request):
            return self._fail(media or otlp.JSON, 401, otlp.UNAUTHENTICATED, "missing or wrong bearer token",
                              {"WWW-Authenticate": "Bearer"})
        if media is None:
            return self._fail(otlp.JSON, 415, otlp.INVALID_ARGUMENT,
                              "Content-Type must be application/x-protobuf or application/json")
        writer = self.writer
        assert writer is not None, "lifespan not started"
        refusal = writer.refusal()
        if refusal is not None:
            # Refused before reading the body: under a flood, shedding load must be cheap.
            return self._busy(media, refusal)
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        reserved = min(int(declared), limit) if declared.isdigit() else limit
        if self._inflight + reserved > self.settings.max_inflight_bytes:
            return self._busy(media, "too many request bodies in progress")
        self._inflight += reserved
        try:
            return await self._export(request, writer, media, reserved)
        finally:
            self._inflight -= reserved

    async def _export(self, request: Request, writer: BatchWriter, media: str, reserved: int) -> Response:
        limit = self.settings.max_body_bytes
        try:
            body = await read_body(request, limit)
            encoding = request.headers.get("content-encoding", "")
            if encoding and len(body) > _OFFLOAD_BYTES:
                # zlib releases the GIL; off the loop, other requests go on meanwhile.
                body = await anyio.to_thread.run_sync(decompress, body, encoding, limit)
            else:
                body = decompress(body, encoding, limit)
        except BodyError as exc:
            return self._fail(media, exc.status, exc.grpc_code, str(exc))
        except ClientDisconnect:
            return Response(status_code=400)
        # A compressed body holds its inflated size from here on: account for the difference.
        extra = max(0, len(body) - reserved)
        if extra and self._inflight + extra > self.settings.max_inflight_bytes:
            return self._busy(media, "too many request bodies in progress")
        self._inflight += extra
        try:
            return await self._commit(writer, body, media)
        finally:
            self._inflight -= extra

    async def _commit(self, writer: BatchWriter, body: bytes, media: str) -> Response:
        try:
            # The writer thread decodes, then commits; see _writer for why decoding is there.
            future = writer.submit(body, media)
            with anyio.fail_after(self.settings.commit_timeout):
                batch = await asyncio.wrap_future(future)
        except otlp.OTLPDecodeError as exc:
            return self._fail(media, 400, otlp.INVALID_ARGUMENT, str(exc))
        except (QueueFull, StoreUnavailable, SpoolFull) as exc:
            return self._busy(media, str(exc) or "the database is unavailable")
        except TimeoutError:
            # Still queued or committing: the exporter's retry is a no-op if it commits.
            return self._busy(media, "the batch was not committed in time")
        except Exception:
            return self._fail(media, 500, otlp.INTERNAL, "the batch could not be stored")
        self.metrics.response(200)
        return Response(otlp.encode_response(media, batch.rejected, batch.message), media_type=media)

    def _authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # compare_digest: the time taken must not tell an attacker how much of a guess matched.
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)

    def _busy(self, media: str, reason: str) -> Response:
        writer = self.writer
        retry_after = writer.retry_after() if writer is not None else self.settings.retry_after
        return self._fail(media, 503, otlp.UNAVAILABLE, f"{reason}; retry later",
                          {"Retry-After": str(retry_after)})

    def _fail(self, media: str, status: int, code: int, message: str,
              headers: dict[str, str] | None = None) -> Response:
        self.metrics.response(status)
        if status >= 500:
            logger.debug("collector answered %d: %s", status, message)
        return Response(otlp.encode_status(media, code, message), status_code=status, media_type=media,
                        headers=headers)

    # --- GET /healthz, GET /metrics ------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        """Ready when batches are accepted: stored, or spooled while the database is down."""
        writer = self.writer
        database_up = False
        with contextlib.suppress(Exception), anyio.move_on_after(3):
            database_up = bool(await anyio.to_thread.run_sync(self.store.ping, abandon_on_cancel=True))
        refusal = writer.refusal() if writer is not None else "starting"
        accepting = writer is not None and writer.alive and refusal != "the collector is shutting down"
        spool = writer.spool if writer is not None else None
        spooling = spool is not None and writer is not None and not writer.spool_full
        ready = accepting and (database_up or spooling)
        body: dict[str, Any] = {
            "status": ("ok" if database_up else "degraded") if ready else "unavailable",
            "database": "up" if database_up else "down",
            "queue_depth": writer.depth if writer else 0,
            "queue_capacity": self.settings.queue_max_batches,
            "spool_records": spool.records if spool else 0,
            "spool_bytes": spool.size_bytes if spool else 0,
            "spool_max_bytes": spool.max_bytes if spool else 0,
            "spans_lost": dict(self.drops.totals),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics_text(self, request: Request) -> Response:
        if not self._authorized(request):
            return PlainTextResponse("missing or wrong bearer token\n", 401, {"WWW-Authenticate": "Bearer"})
        return Response(render(self.registry), media_type=CONTENT_TYPE)

    def _gauges(self) -> dict[str, tuple[float, str]]:
        """The gauges ``/metrics`` shows, read when scraped: name -> (value, help)."""
        writer = self.writer
        spool = writer.spool if writer is not None else None
        return {
            "queue_depth": (writer.depth if writer else 0, "Batches waiting for the writer."),
            "queue_capacity": (self.settings.queue_max_batches, "Most batches the queue holds before 503."),
            "database_up": (1 if writer is not None and writer.database_up else 0,
                            "1 unless the last commit found the database unavailable."),
            "spool_records": (spool.records if spool else 0, "Batches in the on-disk spool, waiting for the database."),
            "spool_bytes": (spool.size_bytes if spool else 0, "Bytes in the on-disk spool."),
            "spool_max_bytes": (spool.max_bytes if spool else 0, "The spool's size limit (0: no spool)."),
            "retry_after_seconds": (writer.retry_after() if writer else self.settings.retry_after,
                                    "Retry-After a 503 would carry now (grows while the database is down)."),
        }


def _store_call(store: Any, name: str) -> Any:
    """``store.<function>(engine, ...)`` bound to this store, or None for a stand-in store."""
    engine = getattr(store, "engine", None)
    if engine is None:
        return None
    from llmlens.collector import store as store_module

    function = getattr(store_module, name)
    return lambda *args: function(engine, *args)


def open_collector_store(settings: CollectorSettings) -> tuple[Any, Any]:
    """The store, and None; or, when the database is down but a spool can take batches, the
    store unchecked and the schema check to run once it answers (so a collector restarted
    during an outage starts, and replays what it spooled before)."""
    from llmlens.collector.store import ensure_schema, open_store

    try:
        return open_store(settings.db_url), None
    except StoreUnavailable as exc:
        if settings.spool is None or not settings.spool.max_bytes:
            raise
        store = open_store(settings.db_url, create=False)
        logger.warning("llmlens collector: %s; starting anyway, spooling to %s", exc, settings.spool.directory)
        return store, lambda: ensure_schema(store.engine)


def _media_type(content_type: str) -> str | None:
    base = content_type.split(";", 1)[0].strip().lower()
    if base in ("application/x-protobuf", "application/protobuf"):
        return otlp.PROTOBUF
    if base == "application/json":
        return otlp.JSON
    return None


def create_app(
    settings: CollectorSettings | None = None, *, store: Any = None, ingest: IngestFn | None = None
) -> Starlette:
    """The collector as an ASGI app. The store is opened (and the writer started) in its lifespan.

    ``store`` and ``ingest`` replace the store from ``settings.db_url`` and the default
    :class:`~llmlens.collector.ingest.Ingestor` (tests use them to stage slow or failing writes).
    """
    service = _Service(settings or CollectorSettings.resolve(), store, ingest)
    app = Starlette(
        routes=[
            Route("/v1/traces", service.traces, methods=["POST"]),
            Route("/healthz", service.healthz, methods=["GET"]),
            Route("/metrics", service.metrics_text, methods=["GET"]),
        ],
        lifespan=service.lifespan,
    )
    app.state.service = service
    return app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    db_url: str | None = None,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    capture_content: bool = False,
    queue_max_batches: int = DEFAULT_QUEUE_MAX_BATCHES,
    *,
    alert_interval: float = 60.0,
    log_level: str = "info",
    workers: int = 1,
    retention_days: float | None = None,
    spool_dir: str | None = None,
    spool_max_bytes: int | None = None,
    grpc_port: int = DEFAULT_GRPC_PORT,
) -> int:
    """Run the collector under uvicorn until SIGTERM or SIGINT; return the exit code.

    On a signal, uvicorn stops accepting, lets in-flight requests finish (their batches
    commit), then the writer drains its queue; the process then exits 0.

    ``workers`` > 1 forks that many collector processes sharing one listening socket, each
    with its own queue and writer: decoding and normalizing are CPU-bound Python, so one
    process uses one core. Only the first worker evaluates alert rules.
    """
    import signal

    import uvicorn

    from llmlens.collector.pricing import load_price_data
    from llmlens.collector.store import dispose_engines, open_store

    try:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        settings = CollectorSettings.resolve(host=host, port=port, db_url=db_url, token=token,
                                             max_body_bytes=max_body_bytes, capture_content=capture_content,
                                             queue_max_batches=queue_max_batches,
                                             alert_interval=alert_interval, retention_days=retention_days,
                                             spool_dir=spool_dir,
                                             spool_max_bytes=spool_max_bytes, grpc_port=grpc_port)
        # Opened before uvicorn starts, so an outdated store (or an unreachable one with no
        # spool to wait in) is one clear line. With the database down, the app opens it.
        store, prepare = open_collector_store(settings)
        if prepare is not None:
            store = None
        load_price_data()
    except Exception as exc:
        print(f"llmlens collector: {exc}", file=sys.stderr)
        return 1
    if settings.token is None and not _is_loopback(settings.host):
        print(f"llmlens collector: warning: listening on {settings.host} without a token; anyone who can "
              "reach it can write spans (set --token or LLMLENS_COLLECTOR_TOKEN)", file=sys.stderr)

    def config(app_settings: CollectorSettings, app_store: Any) -> uvicorn.Config:
        return uvicorn.Config(
            create_app(app_settings, store=app_store),
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            # Connections and tasks at once (max_inflight_bytes bounds their bodies); uvicorn
            # answers 503 beyond it.
            limit_concurrency=4 * settings.queue_max_batches + 64,
            timeout_graceful_shutdown=int(settings.commit_timeout) + 5,
        )

    if workers == 1:
        return _run(config(settings, store), signal)
    try:
        sock = config(settings, store).bind_socket()
    except SystemExit:  # uvicorn reports a taken port itself
        return 1
    # No pooled connection may cross the fork: each worker opens its own.
    dispose_engines()
    children: list[int] = []
    master = os.getpid()
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _exit_with_parent(master, signal.SIGTERM)
                worker_settings = (settings if index == 0
                                   else replace(settings, alert_interval=0.0, retention_days=None))
                worker_store = None if store is None else open_store(settings.db_url)
                code = _run(config(worker_settings, worker_store), signal, sockets=[sock])
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        codes = [os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) for child in children]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return max((abs(code) for code in codes), default=0)


def _exit_with_parent(parent: int, signum: int) -> None:
    """Drain and exit when ``parent`` (the master) is gone, however it went.

    A master killed outright (SIGKILL, the OOM killer) forwards nothing: its workers would
    keep serving the port, orphaned, with nobody to stop them. A daemon thread notices
    the worker was re-parented and sends it the signal a stop would have, so it drains
    like one.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_SECONDS)
        os.kill(os.getpid(), signum)

    threading.Thread(target=watch, name="llmlens-parent-watch", daemon=True).start()


def _run(config: Any, signal: Any, sockets: list[Any] | None = None) -> int:
    """Run one uvicorn server to completion in this process; return its exit code."""
    import gc

    import uvicorn

    from llmlens.collector.store import dispose_engines

    server = uvicorn.Server(config)
    # Ingest allocates a few dicts per span (freed by reference counting, not the cyclic
    # GC); at the default thresholds the cyclic GC kept rescanning the libraries'
    # long-lived objects. Freezing what startup created and collecting young objects less
    # often took bench_collector.py from ~17,500 to ~21,000 stored spans/s.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    # uvicorn re-raises the signal it caught once it has shut down, which would kill the
    # process with the default handler after a clean drain; a no-op handler makes that exit 0.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=sockets)
    except SystemExit as exc:  # uvicorn's own startup failures (e.g. the port is taken)
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        dispose_engines()
    return 0 if server.started else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m llmlens.collector.server``: the same flags as ``llmlens collector``."""
    import argparse

    parser = argparse.ArgumentParser(prog="llmlens collector",
                                     description="Receive OTLP/HTTP spans into the store.")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--db", dest="db_url", default=None, help="store URL (default: $LLMLENS_DB_URL)")
    parser.add_argument("--token", default=None, help="bearer token (default: $LLMLENS_COLLECTOR_TOKEN)")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--capture-content", action="store_true", help="keep prompts and answers, redacted")
    parser.add_argument("--queue-max-batches", type=int, default=DEFAULT_QUEUE_MAX_BATCHES)
    parser.add_argument("--alert-interval", type=float, default=60.0, help="seconds; 0 disables alerts")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--workers", type=int, default=1, help="collector processes sharing the port")
    parser.add_argument("--retention-days", type=float, default=None, help="prune raw rows older than this daily")
    parser.add_argument("--spool-dir", default=None, help="where batches wait while the database is down "
                        "(default: $LLMLENS_SPOOL_DIR, else ~/.llmlens/spool)")
    parser.add_argument("--spool-max-mb", type=float, default=None,
                        help="spool size limit in MiB (default 256; 0 disables the spool)")
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="OTLP/gRPC port; 0 disables it")
    args = parser.parse_args(argv)
    return serve(args.host, args.port, args.db_url, args.token, args.max_body_bytes, args.capture_content,
                 args.queue_max_batches, alert_interval=args.alert_interval, log_level=args.log_level,
                 workers=args.workers, retention_days=args.retention_days, spool_dir=args.spool_dir,
                 spool_max_bytes=None if args.spool_max_mb is None else int(args.spool_max_mb * 1024 * 1024),
                 grpc_port=args.grpc_port)


if __name__ == "__main__":
    sys.exit(main())
