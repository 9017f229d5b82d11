"""Alert rules: an invalid-output spike fires once, reaches a real webhook, respects cooldown."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from llmlens._cli import main
from llmlens.collector.alerts import add_rule, check_alerts, ensure_default_rule
from llmlens.collector.schema import alert_events
from llmlens.collector.store import Store, open_store

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class _Hook:
    def __init__(self, status: int = 200) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = status
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append(json.loads(body))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[_Hook]:
    h = _Hook()
    yield h
    h.close()


def _calls(store: Store, task: str, ok: int, invalid: int, minutes_ago: float = 5,
           now: datetime = NOW) -> None:
    start = now - timedelta(minutes=minutes_ago)
    rows = []
    for i in range(ok + invalid):
        rows.append({
            "trace_id": f"{task[:4]:0<4}".encode().hex()[:8] + f"{i:024x}", "span_id": f"{i:016x}",
            "name": "chat", "start_time": start + timedelta(seconds=i), "duration_ms": 100.0 + i,
            "status": "ok" if i < ok else "invalid_output", "attempt": 1, "final": True, "streaming": False,
            "attributes": {}, "task": task, "request_model": "gpt-4o-mini", "cost_usd": 0.001,
        })
    store.insert_rows(rows)


def test_an_invalid_output_spike_fires_once_per_cooldown_and_reaches_the_webhook(db_url: str, hook: _Hook) -> None:
    store = open_store(db_url)
    add_rule(store, name="invalid-output spike", metric="invalid_output_rate", threshold=0.1,
             window_minutes=15, min_calls=20, task="*", webhook_url=hook.url)
    _calls(store, "extract_ticket", ok=20, invalid=10)
    _calls(store, "summarize", ok=30, invalid=1)

    fired = check_alerts(store, now=NOW)
    assert [(f.task, round(f.value, 3), f.delivered) for f in fired] == [("extract_ticket", 0.333, True)]
    assert len(hook.received) == 1
    payload = hook.received[0]
    assert payload["task"] == "extract_ticket" and payload["metric"] == "invalid_output_rate"
    assert "33.3%" in payload["text"] and "30 calls" in payload["text"]

    assert check_alerts(store, now=NOW + timedelta(minutes=5)) == []  # cooldown
    assert len(hook.received) == 1


def test_a_quiet_window_below_min_calls_does_not_fire(db_url: str, hook: _Hook) -> None:
    store = open_store(db_url)
    add_rule(store, name="spike", metric="invalid_output_rate", threshold=0.1, min_calls=20,
             task="extract_ticket", webhook_url=hook.url)
    _calls(store, "extract_ticket", ok=2, invalid=3)
    assert check_alerts(store, now=NOW) == []


def test_calls_outside_the_window_are_not_counted(sqlite_url: str, hook: _Hook) -> None:
    store = open_store(sqlite_url)
    add_rule(store, name="spike", metric="invalid_output_rate", threshold=0.1, window_minutes=15,
             min_calls=5, task=None, webhook_url=hook.url)
    _calls(store, "extract_ticket", ok=0, invalid=10, minutes_ago=60)
    assert check_alerts(store, now=NOW) == []


def test_a_dead_webhook_still_records_the_event(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    dead = _Hook(status=500)
    try:
        add_rule(store, name="spend", metric="spend_usd", threshold=0.01, task=None, webhook_url=dead.url)
        _calls(store, "draft_reply", ok=30, invalid=0)
        (alert,) = check_alerts(store, now=NOW)
    finally:
        dead.close()
    assert alert.delivered is False and alert.delivery_error == "webhook answered 500"
    with store.engine.connect() as conn:
        (event,) = conn.execute(select(alert_events)).mappings().all()
    assert event["delivered"] is False and event["rule_name"] == "spend"


def test_the_default_rule_watches_invalid_outputs_per_task(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    ensure_default_rule(store)
    ensure_default_rule(store)
    _calls(store, "classify", ok=15, invalid=15)
    (alert,) = check_alerts(store, now=NOW, send=False)
    assert alert.rule_name == "invalid-output spike" and alert.task == "classify"


def test_bad_rules_are_refused_with_a_clear_error(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    with pytest.raises(ValueError, match="unknown metric"):
        add_rule(store, name="x", metric="vibes", threshold=1)
    with pytest.raises(ValueError, match="http"):
        add_rule(store, name="x", metric="spend_usd", threshold=1, webhook_url="ftp://example")


def test_the_cli_adds_lists_and_checks_rules(sqlite_url: str, hook: _Hook, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "add", "--db", sqlite_url, "--name", "spend", "--metric", "spend_usd",
                 "--threshold", "0.001", "--all-tasks-together", "--webhook", hook.url]) == 0
    assert main(["alerts", "list", "--db", sqlite_url]) == 0
    assert "spend" in capsys.readouterr().out
    _calls(open_store(sqlite_url), "rag", ok=5, invalid=0, minutes_ago=1, now=datetime.now(UTC))
    assert main(["alerts", "check", "--db", sqlite_url]) == 0
    assert "FIRED spend" in capsys.readouterr().out
    assert len(hook.received) == 1
