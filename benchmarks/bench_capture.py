"""What HTTP-layer capture adds to a real openai SDK call, plain and streamed.

The same ``client.chat.completions.create`` runs with capture off (llmlens' hooks not
installed: the baseline, measured in the same run) and on (every request a span on
llmlens' own provider, exported to a processor that discards), against a loopback server
in another process that answers at once: keep-alive, ``TCP_NODELAY``, headers and body in
one write (a server writing them separately meets the client's delayed ACK and adds a
40 ms stall that would hide any overhead). Runs alternate between the two sides and the
median of the repeats is kept. Targets: captured/plain wall time <= 1.10 for both.

Printed: the wall-time ratio; the CPU-time ratio of this process (the server runs in
another, so this is the client's own cost, and it holds on a busy machine where wall time
does not); and the CPU time capture adds per request and, for the stream of N chunks, per
chunk (the stream's added CPU minus a plain request's, divided by N).

    python benchmarks/bench_capture.py [--calls N] [--repeats R] [--chunks C]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import llmlens

MESSAGES = [{"role": "user", "content": "Summarise the ticket in one line."}]


class DiscardingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _http(body: bytes, content_type: str) -> bytes:
    head = (f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
            "connection: keep-alive\r\n\r\n").encode()
    return head + body


def _answers(chunks: int) -> tuple[bytes, bytes]:
    usage = {"prompt_tokens": 120, "completion_tokens": chunks, "total_tokens": 120 + chunks,
             "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}
    base = {"id": "chatcmpl-bench", "created": 1700000000, "model": "gpt-4o-mini-2024-07-18"}
    plain = {**base, "object": "chat.completion", "usage": usage, "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "tok " * chunks}}]}
    chunk = {**base, "object": "chat.completion.chunk"}
    events = [{**chunk, "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]}] * chunks
    events += [{**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
               {**chunk, "choices": [], "usage": usage}]
    # Compact JSON, as the providers send it.
    sse = "".join(f"data: {json.dumps(e, separators=(',', ':'))}\n\n" for e in events) + "data: [DONE]\n\n"
    return _http(json.dumps(plain).encode(), "application/json"), _http(sse.encode(), "text/event-stream")


def _serve(port_out: Any, chunks: int) -> None:
    """The loopback provider: one thread per keep-alive connection, one write per answer."""
    plain, streamed = _answers(chunks)
    listener = socket.create_server(("127.0.0.1", 0))
    port_out.send(listener.getsockname()[1])

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(buffer) < length:
                buffer += conn.recv(65536)
            body, buffer = buffer[:length], buffer[length:]
            conn.sendall(streamed if b'"stream":true' in body.replace(b" ", b"") else plain)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def _measure(call: Callable[[], Any], calls: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) per call."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        call()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Short runs, many alternations: on a shared machine, load drifts slower than this.
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--chunks", type=int, default=200)
    args = parser.parse_args()

    import openai

    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=_serve, args=(send, args.chunks), daemon=True)
    server.start()
    port = receive.recv()
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="bench")

    def plain() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    def streamed() -> Any:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True})
        return sum(1 for _ in stream)

    exporter = DiscardingExporter()
    results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for _ in range(args.repeats):
        for captured in (False, True):
            llmlens.configure(exporter=exporter, capture="all" if captured else "off")
            for name, call in (("plain", plain), ("stream", streamed)):
                call()  # warm: connection, caches
                results.setdefault((name, captured), []).append(_measure(call, args.calls))
    llmlens.shutdown()
    client.close()
    server.terminate()

    def median(name: str, captured: bool, index: int) -> float:
        return statistics.median(r[index] for r in results[(name, captured)])

    print(f"openai SDK call against a loopback server, {args.calls} calls x {args.repeats} repeats, "
          f"stream of {args.chunks} chunks")
    added_cpu = {}
    for name in ("plain", "stream"):
        base_wall, ours_wall = median(name, False, 0), median(name, True, 0)
        added_cpu[name] = (median(name, True, 1) - median(name, False, 1)) * 1e6
        base_cpu, ours_cpu = median(name, False, 1), median(name, True, 1)
        print(f"  {name:6}  baseline {base_wall * 1e6:8.1f} us/call   captured {ours_wall * 1e6:8.1f} us/call   "
              f"ratio {ours_wall / base_wall:.3f} (target <= 1.10)   CPU ratio {ours_cpu / base_cpu:.3f}")
    print(f"  added CPU per request:          {added_cpu['plain']:6.1f} us")
    print(f"  added CPU per streamed chunk:   {(added_cpu['stream'] - added_cpu['plain']) / args.chunks:6.2f} us "
          f"({added_cpu['stream']:.1f} us per streamed request)")


if __name__ == "__main__":
    main()
