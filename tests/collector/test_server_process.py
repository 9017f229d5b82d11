"""The collector as a real process: SDK exports, tokens, SIGTERM draining, the loopback warning."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from llmlens.collector import server
from llmlens.collector.store import open_store

PROTOBUF = {"content-type": "application/x-protobuf"}


def _export_chat_spans(endpoint: str, n: int, headers: dict[str, str] | None = None) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers, compression=Compression.Gzip, timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    app_tracer = provider.get_tracer("support-bot")
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for i in range(n):
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": 1000 + i,
            "gen_ai.usage.output_tokens": 100,
            "llmlens.task": "answer",
        }
        # The app's own span (not a row) around the instrumentation's span of the request.
        with (
            app_tracer.start_as_current_span("POST /answer"),
            tracer.start_as_current_span("chat gpt-4o-mini", attributes=attributes),
        ):
            pass
    assert provider.force_flush(20_000)
    provider.shutdown()


def test_an_app_using_the_sdk_otlp_exporter_gets_priced_rows_in_the_store(
    db_url: str, run_collector: Callable[..., Any]
) -> None:
    collector = run_collector(db_url)
    _export_chat_spans(collector.traces_url, 7)
    rows = open_store(db_url).fetch_rows()
    assert len(rows) == 7
    assert {row["task"] for row in rows} == {"answer"}
    assert {row["service_name"] for row in rows} == {"support-bot"}
    assert all(row["cost_usd"] and row["cost_usd"] > 0 for row in rows)
    assert sorted(row["input_tokens"] for row in rows) == list(range(1000, 1007))
    assert collector.stop() == 0


def test_with_a_token_from_the_environment_only_exporters_that_send_it_are_stored(
    sqlite_url: str, run_collector: Callable[..., Any], span_request: Callable[..., Any]
) -> None:
    collector = run_collector(sqlite_url, env={"LLMLENS_COLLECTOR_TOKEN": "tok-123"})
    body = span_request(2).SerializeToString()
    assert httpx.post(collector.traces_url, content=body, headers=PROTOBUF).status_code == 401
    _export_chat_spans(collector.traces_url, 3, headers={"Authorization": "Bearer tok-123"})
    assert len(open_store(sqlite_url).fetch_rows()) == 3


def test_sigterm_drains_in_flight_batches_and_exits_cleanly(
    sqlite_url: str, run_collector: Callable[..., Any], span_request: Callable[..., Any]
) -> None:
    collector = run_collector(sqlite_url)
    acknowledged: list[int] = []
    first_ack = threading.Event()

    def send(seed: int) -> None:
        try:
            answer = httpx.post(
                collector.traces_url,
                content=span_request(512, seed=seed).SerializeToString(),
                headers=PROTOBUF,
                timeout=30,
            )
        except httpx.TransportError:
            return  # arrived after the listener closed: not acknowledged, the exporter retries
        if answer.status_code == 200:
            acknowledged.append(seed)
            first_ack.set()

    senders = [threading.Thread(target=send, args=(seed,)) for seed in range(1, 13)]
    for sender in senders:
        sender.start()
        time.sleep(0.01)
    assert first_ack.wait(30)
    collector.process.send_signal(signal.SIGTERM)
    for sender in senders:
        sender.join(60)
    assert collector.process.wait(30) == 0
    stored = {(row["trace_id"], row["span_id"]) for row in open_store(sqlite_url).fetch_rows()}
    for seed in acknowledged:
        request = span_request(512, seed=seed)
        ids = {(s.trace_id.hex(), s.span_id.hex()) for s in request.resource_spans[0].scope_spans[0].spans}
        assert ids <= stored, f"batch {seed} was acknowledged but not stored"
    assert "Traceback" not in collector.output()


def test_binding_beyond_loopback_without_a_token_prints_a_warning(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    ran: list[str] = []
    # Never actually listen beyond loopback in a test: stop at the point uvicorn would start.
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: ran.append(self.config.host))
    server.serve(host="0.0.0.0", port=4318, db_url=sqlite_url)
    assert "warning: listening on 0.0.0.0 without a token" in capsys.readouterr().err
    server.serve(host="0.0.0.0", port=4318, db_url=sqlite_url, token="t")
    server.serve(host="127.0.0.1", port=4318, db_url=sqlite_url)
    assert "warning" not in capsys.readouterr().err
    assert ran == ["0.0.0.0", "0.0.0.0", "127.0.0.1"]


def test_an_unreachable_store_with_no_spool_is_one_clear_line_and_a_nonzero_exit(
    capsys: pytest.CaptureFixture[str], closed_port: int,
) -> None:
    # With a spool (the default) the collector starts and spools until the database is up.
    code = server.serve(port=4318, db_url=f"postgresql+psycopg://nobody@127.0.0.1:{closed_port}/none",
                        spool_max_bytes=0)
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("llmlens collector: ") and len(err.splitlines()) == 1


def test_the_collector_loads_its_price_data_before_it_says_it_is_ready(
    sqlite_url: str, run_collector: Callable[..., Any]
) -> None:
    # Python's import log, in the collector's output: the price data is imported during
    # start-up, before serving (and, with --workers, before forking), not by the first
    # batch. One worker: stopped right after it is healthy, a second worker may still be
    # starting, and a stop then ends it by the signal (a start-up race left alone for now).
    collector = run_collector(sqlite_url, env={"PYTHONPROFILEIMPORTTIME": "1"})
    started = collector.output()
    assert "genai_prices.data_snapshot" in started and "genai_prices.data\n" in started
    assert collector.stop() == 0


def test_a_running_collector_refuses_bad_bodies_with_the_right_code_and_keeps_serving(
    db_url: str, run_collector: Callable[..., Any], span_request: Callable[..., Any]
) -> None:
    import gzip

    collector = run_collector(db_url, "--max-body-mb", "1")
    assert (
        httpx.post(
            collector.traces_url, content=span_request(3, seed=1).SerializeToString(), headers=PROTOBUF
        ).status_code
        == 200
    )
    store = open_store(db_url)
    before = store.fetch_rows()
    bad = [
        (b"\x0a\xff\xff\xff\xff\x0f", PROTOBUF, 400),  # malformed protobuf
        (b'{"resourceSpans": [{"scopeSpans": [', {"content-type": "application/json"}, 400),  # malformed JSON
        (gzip.compress(bytes(256 * 1024 * 1024)), {**PROTOBUF, "content-encoding": "gzip"}, 413),  # gzip bomb
        (bytes(2 * 1024 * 1024), PROTOBUF, 413),  # oversized
    ]
    for body, headers, status in bad:
        assert (
            httpx.post(collector.traces_url, content=body, headers=headers, timeout=30).status_code == status
        )
    assert store.fetch_rows() == before
    assert (
        httpx.post(
            collector.traces_url, content=span_request(3, seed=2).SerializeToString(), headers=PROTOBUF
        ).status_code
        == 200
    )
    assert len(store.fetch_rows()) == 6
    assert collector.stop() == 0


def test_several_worker_processes_share_the_port_store_everything_and_drain_on_sigterm(
    db_url: str, run_collector: Callable[..., Any], span_request: Callable[..., Any]
) -> None:
    collector = run_collector(db_url, "--workers", "2")
    sent: set[tuple[str, str]] = set()
    lock = threading.Lock()

    def send(seed: int) -> None:
        request = span_request(64, seed=seed)
        with httpx.Client(timeout=30) as client:
            answer = client.post(collector.traces_url, content=request.SerializeToString(), headers=PROTOBUF)
        assert answer.status_code == 200, answer.text
        with lock:
            sent.update((s.trace_id.hex(), s.span_id.hex())
                        for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans)

    senders = [threading.Thread(target=send, args=(seed,)) for seed in range(1, 17)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(60)
    assert len(sent) == 16 * 64
    stored = {(row["trace_id"], row["span_id"]) for row in open_store(db_url).fetch_rows()}
    assert stored == sent
    collector.process.send_signal(signal.SIGTERM)
    assert collector.process.wait(30) == 0
    # Both workers served (each logs its own startup).
    assert collector.output().count("Application startup complete") == 2


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker processes from /proc")
def test_workers_drain_and_exit_when_their_master_is_killed(sqlite_url: str, run_collector: Callable[..., Any]) -> None:
    collector = run_collector(sqlite_url, "--workers", "2")
    workers = _children(collector.process.pid)
    assert len(workers) == 2

    collector.process.kill()  # SIGKILL: no signal is forwarded to the workers
    collector.process.wait(10)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)]
    assert "Traceback" not in collector.output()
