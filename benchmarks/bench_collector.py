"""Collector throughput: spans/s stored through OTLP/HTTP and OTLP/gRPC against decoding alone.

    python benchmarks/bench_collector.py [--batches 120] [--clients 3] [--workers 2] [--db sqlite|URL]
                                         [--transport both|http|grpc]

Builds ``--batches`` OTLP protobuf requests of 512 realistic GenAI spans (several
providers, models and tasks; usage, cache tokens, finish reasons, some errors, each span
under an application span that is not exported in the same batch), then

1. decodes them all in this process: the ceiling the HTTP layer and store work against;
2. starts the collector as a subprocess (``python -m llmlens.collector.server``) on a
   temporary SQLite file and posts the same requests from ``--clients`` concurrent
   clients, retrying 503s as exporters do. Every 200 means committed, so the time to the
   last 200 is the time to store everything;
3. does the same over OTLP/gRPC (``TraceService/Export`` with the same bytes), retrying
   ``RESOURCE_EXHAUSTED``/``UNAVAILABLE``, into a fresh store.

Each client has a connection of its own, as separate exporting processes do. The kernel
hands each connection to one worker (HTTP: whichever worker accepts it from the shared
socket; gRPC: a hash over the workers' ``SO_REUSEPORT`` sockets), so with few clients the
split between workers, and the rate, varies from run to run.

Prints both rates, their ratio, and the collector's peak RSS (VmHWM, its processes added
up). Target: at least 20,000 spans/s stored on SQLite on a 2-core machine. One collector
process is bound to one core by the GIL (about 17,000-20,000 spans/s here); the default is
``--workers 2``, one per core, which is how the collector is meant to run on such a machine.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from llmlens.collector.otlp import decode_protobuf
from llmlens.collector.store import open_store

SPANS_PER_BATCH = 512
_MODELS = [
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4.1", "gpt-4.1-2025-04-14"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001"),
]
_TASKS = ["summarize", "classify", "extract", "answer", "route"]


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, tuple):
        values = [AnyValue(string_value=v) for v in value]
        return KeyValue(key=key, value=AnyValue(array_value={"values": values}))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def build_requests(batches: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    start_ns = time.time_ns() - 3600 * 10**9
    bodies = []
    for b in range(batches):
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend([
            _kv("service.name", "checkout-api"), _kv("telemetry.sdk.language", "python"),
            _kv("telemetry.sdk.name", "opentelemetry"), _kv("telemetry.sdk.version", "1.45.2"),
            _kv("deployment.environment", "production"),
        ])
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "opentelemetry.instrumentation.openai_v2"
        scope_spans.scope.version = "2.4b0"
        for i in range(SPANS_PER_BATCH):
            provider, model, response_model = rng.choice(_MODELS)
            span = scope_spans.spans.add()
            span.trace_id = rng.randbytes(16)
            span.span_id = rng.randbytes(8)
            span.parent_span_id = rng.randbytes(8)
            span.name = f"chat {model}"
            span.kind = 3
            span.start_time_unix_nano = start_ns + (b * SPANS_PER_BATCH + i) * 1_000_000
            span.end_time_unix_nano = span.start_time_unix_nano + rng.randint(200, 4000) * 1_000_000
            failed = rng.random() < 0.03
            attributes = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.max_tokens": 1024,
                "server.address": f"api.{provider}.com",
                "server.port": 443,
                "llmlens.task": rng.choice(_TASKS),
                "gen_ai.prompt.name": "support-answer",
                "gen_ai.prompt.version": f"v{rng.randint(1, 4)}",
            }
            if failed:
                attributes["error.type"] = "RateLimitError"
                span.status.code = 2
            else:
                attributes.update({
                    "gen_ai.response.model": response_model,
                    "gen_ai.response.id": f"resp_{rng.getrandbits(64):016x}",
                    "gen_ai.response.finish_reasons": ("stop",),
                    "gen_ai.usage.input_tokens": rng.randint(200, 6000),
                    "gen_ai.usage.output_tokens": rng.randint(20, 800),
                    "gen_ai.usage.cache_read.input_tokens": rng.choice([0, 0, 128, 1024]),
                })
            span.attributes.extend(_kv(k, v) for k, v in attributes.items())
        bodies.append(request.SerializeToString())
    return bodies


def measure_decode(bodies: list[bytes]) -> float:
    started = time.perf_counter()
    spans = sum(len(decode_protobuf(body).records) for body in bodies)
    return spans / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mib(pid: int) -> float:
    """Peak RSS of the collector: the process and its worker processes, added up."""
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    total = 0.0
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def _http_sender(url: str) -> Any:
    http = httpx.Client(timeout=60)

    def send(body: bytes) -> bool:
        answer = http.post(url + "/v1/traces", content=body, headers={"content-type": "application/x-protobuf"})
        if answer.status_code == 200:
            return True
        if answer.status_code not in (429, 503):
            raise RuntimeError(f"collector answered {answer.status_code}")
        return False

    return send


def _grpc_sender(port: int) -> Any:
    import grpc

    # A connection of its own, as each exporting process has: channels of one process to one
    # address otherwise share a connection, which the kernel hands to one worker only.
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
    export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
    retryable = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}

    def send(body: bytes) -> bool:
        try:
            export(body, timeout=60)
            return True
        except grpc.RpcError as exc:
            if exc.code() not in retryable:
                raise RuntimeError(f"collector answered {exc.code()}") from None
            return False

    return send


def measure_collector(bodies: list[bytes], clients: int, db_url: str, queue: int,
                      workers: int = 1, transport: str = "http") -> tuple[float, float, int]:
    port = _free_port()
    grpc_port = _free_port() if transport == "grpc" else 0
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "llmlens.collector.server", "--port", str(port), "--db", db_url,
         "--log-level", "warning", "--queue-max-batches", str(queue), "--workers", str(workers),
         "--grpc-port", str(grpc_port)],
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise RuntimeError("collector did not start")
        pending = list(bodies)
        lock = threading.Lock()
        refused = [0]

        def client() -> None:
            send = _grpc_sender(grpc_port) if transport == "grpc" else _http_sender(url)
            while True:
                with lock:
                    if not pending:
                        return
                    body = pending.pop()
                while not send(body):
                    with lock:
                        refused[0] += 1
                    time.sleep(0.05)  # a real exporter waits Retry-After; this keeps the pressure on

        threads = [threading.Thread(target=client) for _ in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        # Every 200 means committed, so the store holds everything acknowledged by now.
        stored = open_store(db_url).count_rows()
        if workers == 1:  # the metrics endpoint speaks for the worker that answers it
            metrics = httpx.get(url + "/metrics").text
            values = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
                      if line and not line.startswith("#") and "{" not in line}
            commits = values["llmlens_collector_batches_committed_total"]
            busy = values["llmlens_collector_commit_seconds_total"]
            print(f"  writer: {commits:.0f} transactions, {stored / max(commits, 1):.0f} rows each, "
                  f"busy {busy / elapsed:.0%} of the run")
        peak = _peak_rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(30)
    return stored / elapsed, peak, refused[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=120)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--queue", type=int, default=32, help="collector --queue-max-batches")
    parser.add_argument("--db", default="sqlite", help="'sqlite' for a temp file, or a store URL")
    parser.add_argument("--workers", type=int, default=2, help="collector --workers (one core each)")
    parser.add_argument("--transport", choices=["both", "http", "grpc"], default="both")
    args = parser.parse_args()

    print(f"building {args.batches} requests of {SPANS_PER_BATCH} spans…", flush=True)
    bodies = build_requests(args.batches)
    print(f"  {sum(map(len, bodies)) / len(bodies) / 1024:.0f} KiB per request (protobuf)")
    decode_rate = max(measure_decode(bodies) for _ in range(3))
    print(f"decode only:            {decode_rate:>10,.0f} spans/s")
    transports = ["http", "grpc"] if args.transport == "both" else [args.transport]
    for transport in transports:
        if args.db != "sqlite" and transport != transports[0]:
            print(f"(skipping {transport}: a store URL is used once, its rows would be duplicates)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            db_url = f"sqlite:///{os.path.join(tmp, 'bench.db')}" if args.db == "sqlite" else args.db
            stored_rate, peak, refused = measure_collector(bodies, args.clients, db_url, args.queue,
                                                           args.workers, transport)
        print(f"stored via OTLP/{transport:<5}  {stored_rate:>10,.0f} spans/s  "
              f"({args.workers} workers, {args.clients} clients, {refused} refusals retried)")
        print(f"  ratio stored/decode:  {stored_rate / decode_rate:>10.2f}")
        print(f"  collector peak RSS:   {peak:>10.0f} MiB")
        print(f"  target ≥ 20,000 spans/s stored: {'met' if stored_rate >= 20_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
