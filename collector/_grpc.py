"""OTLP/gRPC: ``TraceService/Export`` on ``--grpc-port``, through the same writer as OTLP/HTTP.

Most OpenTelemetry SDKs and the OpenTelemetry Collector export over gRPC to port 4317 by
default. The receiver is the HTTP endpoint's twin: it checks the call (bearer token in the
``authorization`` metadata, message size) and submits the serialized request, as bytes, to
the same :class:`~llmlens.collector._writer.BatchWriter`, which decodes, normalizes and
commits it; the call is answered only after its batch is committed.

The request is registered without a deserializer, so gRPC hands over the bytes it received
(inflated, if the sender used gzip) and decoding stays on the writer thread, where
``_writer`` explains it belongs. Failures map to the codes OTLP exporters act on:

=================================  ===================================================
``UNAUTHENTICATED``                missing or wrong bearer token
``INVALID_ARGUMENT``               the message is not an ``ExportTraceServiceRequest``
``RESOURCE_EXHAUSTED``             the write queue is full, or the message is too large
``UNAVAILABLE``                    the database is down (and the spool full), or the collector is stopping
=================================  ===================================================

Refusals that a retry can cure carry retry info twice: as ``google.rpc.RetryInfo`` in the
``google.rpc.Status`` details (``grpc-status-details-bin``, read by the Go and Java SDKs and
the OpenTelemetry Collector) and as ``google.rpc.retryinfo-bin``, which is where the Python
exporter looks. Both ask for the same delay as HTTP's ``Retry-After``.

Each worker of ``--workers N`` binds the port itself; gRPC sets ``SO_REUSEPORT`` on Linux,
so the kernel spreads connections over the workers as it does for the HTTP socket.
"""

from __future__ import annotations

import hmac
import logging
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from llmlens.collector import otlp
from llmlens.collector._spool import SpoolFull
from llmlens.collector._writer import BatchWriter, QueueFull
from llmlens.collector.store import StoreUnavailable

if TYPE_CHECKING:
    from llmlens.collector._metrics import Metrics

logger = logging.getLogger("llmlens.collector")

SERVICE: Final = "opentelemetry.proto.collector.trace.v1.TraceService"
_SHUTTING_DOWN: Final = "the collector is shutting down"


class GrpcReceiver:
    """A gRPC server answering ``TraceService/Export`` with a shared writer.

    >>> receiver = GrpcReceiver(writer, host="127.0.0.1", port=4317)  # doctest: +SKIP
    >>> receiver.start()  # the port actually bound  # doctest: +SKIP
    4317
    """

    def __init__(
        self,
        writer: BatchWriter,
        *,
        host: str,
        port: int,
        token: str | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
        commit_timeout: float = 10.0,
        metrics: Metrics | None = None,
        max_calls: int = 64,
    ) -> None:
        self._writer = writer
        self._address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._token = token.encode() if token else None
        self._commit_timeout = commit_timeout
        self._metrics = metrics if metrics is not None else writer.metrics
        # A call holds a thread while its batch commits; the bound on concurrent calls is
        # gRPC's own (it answers RESOURCE_EXHAUSTED beyond it), as uvicorn's is for HTTP.
        self._pool = ThreadPoolExecutor(max_workers=max(4, min(max_calls, 64)),
                                        thread_name_prefix="llmlens-grpc")
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(self.export)}
        )
        self._server = grpc.server(
            self._pool,
            handlers=[handler],
            maximum_concurrent_rpcs=max_calls,
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.so_reuseport", 1),
            ],
        )

    def start(self) -> int:
        """Bind and serve; returns the port bound. Raises ``RuntimeError`` when it cannot bind."""
        port = self._server.add_insecure_port(self._address)
        if not port:
            raise RuntimeError(f"cannot listen for OTLP/gRPC on {self._address}")
        self._server.start()
        return int(port)

    def stop(self, grace: float) -> None:
        """Refuse new calls, let those in flight finish (up to ``grace`` seconds), stop."""
        self._server.stop(grace).wait(grace + 1)
        self._pool.shutdown(wait=False)

    # --- TraceService/Export -----------------------------------------------------------------

    def export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._metrics.add(requests=1)
        if not self._authorized(context):
            self._abort(context, grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        writer = self._writer
        refusal = writer.refusal()
        if refusal is not None:
            self._busy(context, refusal)
        try:
            future = writer.submit(request, otlp.PROTOBUF)
        except (QueueFull, StoreUnavailable, SpoolFull) as exc:
            self._busy(context, str(exc) or "the database is unavailable")
        try:
            batch = future.result(self._commit_timeout)
        except otlp.OTLPDecodeError as exc:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (QueueFull, StoreUnavailable, SpoolFull) as exc:
            # SpoolFull: the database is down and the spool has no room for this batch.
            self._busy(context, str(exc) or "the database is unavailable")
        except (TimeoutError, CancelledError):
            # Still queued or committing: a retry is a no-op if it commits after all.
            future.cancel()
            self._busy(context, "the batch was not committed in time")
        except Exception:
            self._abort(context, grpc.StatusCode.INTERNAL, "the batch could not be stored")
        self._metrics.response(200)
        return otlp.encode_response(otlp.PROTOBUF, batch.rejected, batch.message)

    def _authorized(self, context: grpc.ServicerContext) -> bool:
        if self._token is None:
            return True
        given = ""
        for key, value in context.invocation_metadata():
            if key == "authorization" and isinstance(value, str):
                given = value
                break
        scheme, _, credential = given.partition(" ")
        # compare_digest: the time taken must not tell how much of a guess matched.
        return scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), self._token)

    def _busy(self, context: grpc.ServicerContext, reason: str) -> NoReturn:
        # A full queue is the sender's cue to slow down; a database outage or a shutdown
        # is the server being unavailable. Both are retried by OTLP exporters.
        code = (grpc.StatusCode.RESOURCE_EXHAUSTED if "queue is full" in reason
                else grpc.StatusCode.UNAVAILABLE)
        # The writer's delay grows the longer the database stays down, as HTTP's Retry-After does.
        self._abort(context, code, f"{reason}; retry later", retry=True)

    def _abort(self, context: grpc.ServicerContext, code: grpc.StatusCode, message: str,
               retry: bool = False) -> NoReturn:
        self._metrics.response(_HTTP_EQUIVALENT.get(code, 500))
        if retry:
            delay = float(self._writer.retry_after())
            context.set_trailing_metadata(_retry_metadata(code, message, delay))
        else:
            logger.debug("collector answered gRPC %s: %s", code.name, message)
        context.abort(code, message)
        raise AssertionError("unreachable: ServicerContext.abort raises")  # for type checkers


# /metrics counts answers by HTTP status; a gRPC answer is counted as its HTTP equivalent.
_HTTP_EQUIVALENT: Final[dict[Any, int]] = {
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 503,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
}


def _retry_metadata(code: grpc.StatusCode, message: str, seconds: float) -> tuple[tuple[str, bytes], ...]:
    whole = int(seconds)
    delay = duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
    info = error_details_pb2.RetryInfo(retry_delay=delay)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", info.SerializeToString()),
    )
