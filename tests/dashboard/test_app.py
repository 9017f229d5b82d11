"""Every dashboard view, run by Streamlit's AppTest against a SQLite store of known rows.

The rows (relative to now, so the default "Last 7 days" range holds them all):

    extract_ticket    gpt-4o-mini  ticket_prompt@3  ok              0.010  x3
    extract_ticket    gpt-4o       ticket_prompt@4  invalid_output  0.050
    draft_reply       gpt-4o       reply@12         rate_limited    0.002  attempt 1 (retried)
    draft_reply       gpt-4o       reply@12         ok              0.010  attempt 2, final
    summarize_thread  claude-sonnet-4-5  summary@2  ok              NULL   streamed, TTFT 120 ms

So: 6 calls, 7 requests, $0.0920 spend, $0.0520 wasted, 1 unpriced request, 1 of 6 calls
invalid (16.7%).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from llmlens.collector.schema import alert_events, alert_rules
from llmlens.collector.store import RELATIVE_ERROR, Store
from llmlens.dashboard import APP_PATH

NOW = datetime.now(UTC)


def _rows(span_row: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    def ago(minutes: float) -> datetime:
        return NOW - timedelta(minutes=minutes)

    rows = [span_row(start_time=ago(m), prompt_version="ticket_prompt@3", prompt_name="ticket_prompt")
            for m in (180, 120, 60)]
    rows.append(span_row(start_time=ago(90), request_model="gpt-4o", response_model="gpt-4o",
                         prompt_version="ticket_prompt@4", prompt_name="ticket_prompt", status="invalid_output",
                         failure_reason="priority: input should be 'low', 'normal', 'high' or 'urgent'",
                         cost_usd=0.05, duration_ms=900.0))
    rows.append(span_row(trace_id="d" * 32, span_id="d1" * 8, call_id="dc" * 8, attempt=1, final=False,
                         max_attempts=3, task="draft_reply", request_model="gpt-4o", prompt_version="reply@12",
                         status="rate_limited", failure_reason="RateLimitError", error_type="RateLimitError",
                         cost_usd=0.002, start_time=ago(30), attributes={"llmlens.retry_reason": "rate_limited"}))
    rows.append(span_row(trace_id="d" * 32, span_id="d2" * 8, call_id="dc" * 8, attempt=2, final=True,
                         max_attempts=3, task="draft_reply", request_model="gpt-4o", prompt_version="reply@12",
                         cost_usd=0.01, duration_ms=1500.0, call_duration_ms=2100.0,
                         start_time=ago(30) + timedelta(seconds=1),
                         attributes={"gen_ai.response.id": "chatcmpl-demo-42"}))
    rows.append(span_row(start_time=ago(20), task="summarize_thread", provider="anthropic",
                         request_model="claude-sonnet-4-5", response_model="claude-sonnet-4-5",
                         prompt_version="summary@2", cost_usd=None, streaming=True, time_to_first_token_ms=120.0,
                         duration_ms=2400.0))
    return rows


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    # Streamlit's caches are per process: one test's store must not answer for the next.
    st.cache_data.clear()
    st.cache_resource.clear()
    yield


@pytest.fixture
def store(sqlite_url: str, make_store: Callable[..., Store], span_row: Callable[..., dict[str, Any]],
          monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("LLMLENS_DB_URL", sqlite_url)
    return make_store(sqlite_url, _rows(span_row))


def _app() -> AppTest:
    return AppTest.from_file(str(APP_PATH), default_timeout=60)


def _open(view: str | None = None) -> AppTest:
    at = _app().run()
    if view is not None:
        at.switch_page(f"views/{view}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _text(at: AppTest) -> str:
    parts = [e.value for e in (*at.markdown, *at.caption, *at.info, *at.warning, *at.success, *at.title,
                                *at.subheader)]
    return "\n".join(str(p) for p in parts)


def test_an_empty_store_greets_with_what_to_run(sqlite_url: str, make_store: Callable[..., Store],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMLENS_DB_URL", sqlite_url)
    make_store(sqlite_url)
    at = _open()
    assert "No data yet" in at.info[0].value and "llmlens demo" in at.info[0].value
    assert not at.metric


def test_a_missing_store_file_is_created_empty_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMLENS_DB_URL", f"sqlite:///{tmp_path / 'new' / 'llmlens.db'}")
    assert "No data yet" in _open().info[0].value


def test_overview_shows_the_headline_numbers(store: Store) -> None:
    at = _open()
    metrics = _metrics(at)
    assert metrics["Calls"] == "6"
    assert metrics["Requests"] == "7"
    assert metrics["Spend"] == "$0.0920"
    assert metrics["Wasted spend"] == "$0.0520"
    assert metrics["Invalid output"] == "16.7%"
    assert metrics["Unpriced requests"] == "1"
    assert "1 requests have no price" in _text(at)
    tasks = at.dataframe[0].value
    assert list(tasks["task"]) == ["extract_ticket", "draft_reply", "summarize_thread"]


def test_sidebar_filters_apply_to_the_views(store: Store) -> None:
    at = _open()
    at.multiselect(key="llmlens.tasks").set_value(["summarize_thread"]).run()
    assert _metrics(at)["Calls"] == "1"
    at.multiselect(key="llmlens.models").set_value(["gpt-4o"]).run()
    assert "No LLM calls match these filters" in _text(at)


def test_filters_survive_switching_views(store: Store) -> None:
    at = _open()
    at.multiselect(key="llmlens.models").set_value(["gpt-4o"]).run()
    at.switch_page("views/cost.py").run()
    assert _metrics(at)["Spend"] == "$0.0620"


def test_cost_view_shows_waste_and_prompt_versions(store: Store) -> None:
    at = _open("cost")
    metrics = _metrics(at)
    assert metrics["Wasted spend"] == "$0.0520"
    assert metrics["Cost per call"] == "$0.0153"
    waste = at.dataframe[0].value
    assert list(waste["task"]) == ["extract_ticket", "draft_reply"]
    assert waste["retry_spend_usd"].tolist() == pytest.approx([0.0, 0.002])
    versions = at.dataframe[1].value
    assert "ticket_prompt@4" in set(versions["prompt_version"])


def test_latency_view_shows_percentiles_and_time_to_first_token(store: Store) -> None:
    at = _open("latency")
    metrics = _metrics(at)
    # Percentiles come from histogram bins, within RELATIVE_ERROR (1.7%) of exact.
    assert float(metrics["p50 time to first token"].removesuffix(" ms")) == pytest.approx(120, rel=RELATIVE_ERROR)
    assert float(metrics["p95 call"].removesuffix(" s")) == pytest.approx(2.40, rel=RELATIVE_ERROR)
    by_task = at.dataframe[0].value
    p50 = by_task.set_index("task").loc["draft_reply", "p50_ms"]
    assert p50 == pytest.approx(2100.0, rel=RELATIVE_ERROR)  # the whole retried call


def test_failures_view_highlights_invalid_output(store: Store) -> None:
    at = _open("failures")
    assert _metrics(at)["Invalid output"] == "16.7%"
    assert "Invalid output" in _text(at)
    reasons = at.dataframe[0].value
    assert set(reasons["status"]) == {"invalid_output", "rate_limited"}
    assert any("priority" in r for r in reasons["failure_reason"])


def test_traces_view_lists_calls_and_opens_one(store: Store) -> None:
    at = _open("traces")
    calls = at.dataframe[0].value
    assert len(calls) == 6
    assert list(calls["task"])[:2] == ["summarize_thread", "draft_reply"]  # newest first
    at.selectbox(key="traces.selected").set_value(1).run()
    assert not at.exception
    assert _metrics(at)["Attempts"] == "2"
    attempts = at.dataframe[1].value
    assert list(attempts["status"]) == ["rate_limited", "ok"]
    assert any("chatcmpl-demo-42" in str(j.value) for j in at.json)


def test_traces_view_filters_by_status(store: Store) -> None:
    at = _open("traces")
    at.multiselect(key="traces.status").set_value(["invalid_output"]).run()
    calls = at.dataframe[0].value
    assert list(calls["status"]) == ["invalid_output"]


def test_alerts_view_lists_rules_and_recent_events(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(alert_rules.insert(), [{"name": "ticket JSON breaks", "metric": "invalid_output_rate",
                                             "threshold": 0.1, "window_minutes": 15, "min_calls": 20,
                                             "task": "extract_ticket", "cooldown_minutes": 60, "enabled": True}])
        conn.execute(alert_events.insert(), [{"rule_id": 1, "rule_name": "ticket JSON breaks",
                                              "fired_at": NOW - timedelta(minutes=85), "value": 0.42,
                                              "threshold": 0.1, "task": "extract_ticket",
                                              "message": "invalid_output_rate 42% > 10%", "delivered": True}])
    at = _open("alerts")
    rules = at.dataframe[0].value
    assert list(rules["name"]) == ["ticket JSON breaks"] and list(rules["threshold"]) == ["10.0%"]
    events = at.dataframe[1].value
    assert list(events["message"]) == ["invalid_output_rate 42% > 10%"]
    assert list(events["value"]) == ["42.0%"]


def test_alerts_view_without_rules_says_so(store: Store) -> None:
    at = _open("alerts")
    assert "No alert rules yet" in _text(at)


def test_time_ranges_select_rows(store: Store, span_row: Callable[..., dict[str, Any]]) -> None:
    store.insert_rows([span_row(start_time=NOW - timedelta(days=40), cost_usd=1.0)])
    at = _open()
    assert _metrics(at)["Calls"] == "6"  # the default range is the last 7 days
    at.selectbox(key="llmlens.range").set_value("All time").run()
    assert _metrics(at)["Calls"] == "7"
    at.selectbox(key="llmlens.range").set_value("Last hour").run()
    assert _metrics(at)["Calls"] == "2"
    at.selectbox(key="llmlens.range").set_value("Custom dates").run()
    today = NOW.date()
    at.date_input(key="llmlens.dates").set_value((today - timedelta(days=60), today)).run()
    assert not at.exception
    assert _metrics(at)["Calls"] == "7"


def test_an_outdated_store_says_how_to_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3
    from contextlib import closing

    path = tmp_path / "old.db"
    # A sqlite3 connection's own "with" commits but does not close: closing() does.
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('0000')")
    monkeypatch.setenv("LLMLENS_DB_URL", f"sqlite:///{path}")
    at = _app().run()
    assert not at.exception
    assert "llmlens db upgrade" in at.error[0].value


def test_spans_lost_in_the_selected_range_are_a_banner_on_every_page(store: Store) -> None:
    from llmlens.collector.store import record_drops

    minute = NOW.replace(second=0, microsecond=0)
    record_drops(store.engine, {(minute - timedelta(minutes=5), "billing", "queue_full"): 2560,
                                (minute - timedelta(minutes=5), "billing", "spool_full"): 300,
                                (minute - timedelta(minutes=1), "worker", "spool_full"): 12,
                                (minute - timedelta(days=30), "billing", "rejected"): 9})  # outside the range
    banner = "2,872 spans were lost in this range (queue full: 2,560, spool full: 312)"
    for view in (None, "cost", "traces"):
        at = _open(view)
        assert [w.value for w in at.warning if "lost" in str(w.value)] == [banner]


def test_no_banner_when_nothing_was_lost(store: Store) -> None:
    assert not [w for w in _open().warning if "lost" in str(w.value)]
