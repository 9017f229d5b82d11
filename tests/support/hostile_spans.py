"""Spans whose every free-text value tries to make a renderer fetch a URL or draw a link.

Each value points at ``origin`` (a loopback "pixel" server the test runs, see
:class:`PixelServer`), so a browser that rendered any of them as Markdown, HTML or a
Plotly link would be seen requesting it. The spans go in through the real write path
(normalize, price, store), as a span sent to the collector would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llmlens.collector.ingest import Ingestor
from llmlens.collector.pricing import Pricer
from llmlens.collector.record import SpanRecord
from llmlens.collector.store import Store

# A 1x1 transparent GIF, so an image that does get fetched loads like a real tracking pixel.
_GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


def corpus(origin: str) -> dict[str, str]:
    """Field name → hostile value; every URL in them is on ``origin``."""
    return {
        # Markdown image and link syntax, rendered by captions, tooltips and labels.
        "task": f"![task]({origin}/pixel/task.png)",
        # Plotly renders <a href> in axis labels, legends and hover text.
        "task_html": f'<a href="{origin}/pixel/task-link">tasklink</a><img src="{origin}/pixel/task-img.png">',
        # Slack's link and mention syntax, for the alert webhook.
        "task_slack": f"<{origin}/pixel/slack|click> <!channel> @here",
        "model": f"<img src=\"{origin}/pixel/model.png\" onerror=\"fetch('{origin}/pixel/model-js')\">",
        "prompt_version": f":red[v1] **bold** [pv](javascript:fetch('{origin}/pixel/pv-js')) $x^2$",
        "failure_reason": f"![reason]({origin}/pixel/reason.png) [why]({origin}/pixel/reason-link) www.example.com",
        "error_type": f"<img src={origin}/pixel/error-type.png>",
        # normalize keeps 16 characters of a call id: a backtick breakout into a relative image.
        "call_id": "a`![](/cid.png)`",
        "service_name": f"<a href='{origin}/pixel/service'>svc</a>",
        "response_id": f"![attr]({origin}/pixel/attr.png)",
        "attribute_key": f"<img src={origin}/pixel/attr-key.png>",
    }


def _record(n: int, start: datetime, attributes: dict[str, Any], *, service: str = "support-bot",
            error: bool = False) -> SpanRecord:
    start_ns = int(start.timestamp() * 1e9)
    return SpanRecord(
        trace_id=f"{n:032x}", span_id=f"{n:016x}", name="chat", start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + 400_000_000, status_code=2 if error else 0,
        attributes={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 100, **attributes},
        resource_attributes={"service.name": service},
    )


def write_hostile_store(store: Store, origin: str, now: datetime | None = None) -> dict[str, str]:
    """Write calls carrying every value of :func:`corpus` into ``store``; return the corpus.

    The newest call is the one with the hostile call id, failure reason and error type, so
    the Traces page opens it first.
    """
    values = corpus(origin)
    now = now or datetime.now(UTC)
    records = []
    for i in range(3):
        records.append(_record(100 + i, now - timedelta(minutes=50 - i), {
            "llmlens.task": values["task"], "gen_ai.prompt.version": values["prompt_version"],
            "gen_ai.response.id": values["response_id"], values["attribute_key"]: "x"}))
        records.append(_record(110 + i, now - timedelta(minutes=40 - i), {
            "llmlens.task": values["task_html"], "gen_ai.request.model": values["model"]}))
        records.append(_record(120 + i, now - timedelta(minutes=30 - i), {
            "llmlens.task": values["task_slack"], "llmlens.status": "invalid_output",
            "llmlens.failure_reason": values["failure_reason"]}))
    # No task: the service's name is kept in its own column.
    records.append(_record(130, now - timedelta(minutes=20), {}, service=values["service_name"]))
    records.append(_record(140, now - timedelta(minutes=5), {
        "llmlens.task": values["task"], "llmlens.call_id": values["call_id"], "llmlens.status": "provider_error",
        "llmlens.failure_reason": values["failure_reason"], "error.type": values["error_type"],
        "gen_ai.response.id": values["response_id"]}, error=True))
    result = Ingestor(store, Pricer()).ingest(records)
    assert result.stored == len(records), result
    return values


class _Recorder(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, self.path, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.send_header("Content-Length", str(len(_GIF)))
        self.end_headers()
        self.wfile.write(_GIF)

    do_POST = do_GET
    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class PixelServer:
    """A loopback HTTP server that records every request it receives: (method, path, body)."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self.origin = f"http://127.0.0.1:{server.server_address[1]}"

    @property
    def requests(self) -> list[tuple[str, str, bytes]]:
        return list(self._server.requests)  # type: ignore[attr-defined]


@contextmanager
def pixel_server() -> Iterator[PixelServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="pixel-server", daemon=True)
    thread.start()
    try:
        yield PixelServer(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
