"""``llmlens demo`` writes a realistic workload through the real decorator into the store."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pytest
from pgserver import databases

from llmlens.collector import queries
from llmlens.collector.queries import Filters
from llmlens.collector.store import open_store
from llmlens.dashboard import DemoSummary, run_demo


def _last_midday() -> datetime:
    # The demo's traffic and incidents follow the hours of the day its window ends at, and
    # at some hours 400 calls hold too few broken tickets to tell a burst from noise: a
    # window ending at a fixed hour is the same workload in every run (the seed fixes the
    # rest), and within the last day, where the dashboard's default range shows it.
    now = datetime.now(UTC)
    end = now.replace(hour=12, minute=17, second=0, microsecond=0)
    return end if end <= now else end - timedelta(days=1)


_END: Final = _last_midday()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def demo_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[tuple[str, DemoSummary]]:
    """One demo run per database for the whole module; the tests only read what it wrote."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'llmlens.db'}"
        yield url, run_demo(url, calls=400, seed=7, days=2.0, end=_END)
        return
    with databases(str(request.getfixturevalue("pg_server_url"))) as made:
        url = made.new("demo")
        yield url, run_demo(url, calls=400, seed=7, days=2.0, end=_END)


@pytest.fixture
def demo_rows(demo_run: tuple[str, DemoSummary]) -> tuple[DemoSummary, list[dict[str, Any]]]:
    url, summary = demo_run
    return summary, open_store(url).fetch_rows()


def test_the_demo_writes_one_row_per_provider_request(demo_rows: tuple[DemoSummary, list[dict[str, Any]]]) -> None:
    summary, rows = demo_rows
    assert summary.calls == 400
    assert summary.rows == len(rows) > 400  # retried calls made more requests than calls
    assert sum(row["final"] for row in rows) == 400
    assert {row["service_name"] for row in rows} == {"llmlens-demo"}


def test_the_demo_covers_several_tasks_models_and_providers(
        demo_rows: tuple[DemoSummary, list[dict[str, Any]]]) -> None:
    _, rows = demo_rows
    assert {row["task"] for row in rows} == {"extract_ticket", "classify_intent", "draft_reply",
                                            "summarize_thread", "rag_answer"}
    assert len({row["request_model"] for row in rows}) >= 5
    assert {"openai", "anthropic"} <= {row["provider"] for row in rows}
    assert any(row["cache_read_tokens"] for row in rows)
    streamed = [row for row in rows if row["streaming"]]
    assert streamed and all(row["time_to_first_token_ms"] for row in streamed if row["status"] == "ok")
    assert "acme-support-llama-8b" in {row["request_model"] for row in rows}  # a self-hosted model


def test_a_fresh_demo_store_has_every_request_priced(demo_run: tuple[str, DemoSummary],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = demo_run
    assert queries.summary(open_store(url).engine, Filters())["unpriced_requests"] == 0
    # The self-hosted model has no public price: the demo's override prices it, per token.
    llama = [row for row in open_store(url).fetch_rows() if row["request_model"] == "acme-support-llama-8b"
             and row["output_tokens"]]
    assert llama
    for row in llama:
        assert row["cost_usd"] == pytest.approx((row["input_tokens"] * 0.10 + row["output_tokens"] * 0.30) / 1e6)
    # So the Overview raises no "requests have no price" banner.
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from llmlens.dashboard import APP_PATH

    st.cache_data.clear()  # per process: another test's store must not answer
    monkeypatch.setenv("LLMLENS_DB_URL", url)
    at = AppTest.from_file(str(APP_PATH), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Overview" in [t.value for t in at.title]
    assert not [w.value for w in at.warning if "no price" in str(w.value)]


def test_the_demo_has_a_burst_of_invalid_outputs_from_one_prompt_version(
        demo_rows: tuple[DemoSummary, list[dict[str, Any]]]) -> None:
    _, rows = demo_rows
    by_version: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        if row["task"] == "extract_ticket" and row["final"]:
            by_version[row["prompt_version"]].append(row["status"] == "invalid_output")
    assert set(by_version) == {"ticket_prompt@3", "ticket_prompt@4", "ticket_prompt@5"}
    bad = by_version["ticket_prompt@4"]
    assert sum(bad) / len(bad) > 0.3
    assert sum(by_version["ticket_prompt@3"]) / len(by_version["ticket_prompt@3"]) < 0.05
    broken = [row for row in rows if row["status"] == "invalid_output"]
    assert sum(row["prompt_version"] == "ticket_prompt@4" for row in broken) >= 5  # retried ones included
    assert all("priority" in row["failure_reason"] for row in broken)
    times = sorted(row["start_time"] for row in rows if row["prompt_version"] == "ticket_prompt@4")
    assert times[-1] - times[0] <= timedelta(hours=3)  # a burst, then a rollback


def test_the_demo_retries_with_linked_attempts(demo_rows: tuple[DemoSummary, list[dict[str, Any]]]) -> None:
    _, rows = demo_rows
    calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["call_id"]:
            calls[row["call_id"]].append(row)
    retried = [attempts for attempts in calls.values() if len(attempts) > 1]
    assert retried
    for attempts in retried:
        attempts.sort(key=lambda r: r["attempt"])
        assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
        assert [a["final"] for a in attempts] == [False] * (len(attempts) - 1) + [True]
        assert attempts[0]["status"] in {"rate_limited", "provider_error", "timeout", "invalid_output"}
        assert attempts[-1]["call_duration_ms"]  # the whole call, on its final row
        assert attempts[-1]["start_time"] - attempts[0]["start_time"] < timedelta(minutes=5)
    assert any(a["status"] == "rate_limited" for attempts in retried for a in attempts)


def test_the_demo_spreads_history_over_the_requested_days(
        demo_rows: tuple[DemoSummary, list[dict[str, Any]]]) -> None:
    summary, rows = demo_rows
    times = [row["start_time"].replace(tzinfo=UTC) if row["start_time"].tzinfo is None
             else row["start_time"] for row in rows]
    assert summary.end == _END
    assert min(times) >= _END - timedelta(days=2, minutes=5)
    assert max(times) <= _END + timedelta(minutes=5)  # the last calls' retries run on past it
    assert max(times) - min(times) > timedelta(days=1, hours=18)
    days = {t.date() for t in times}
    assert len(days) >= 2
    assert summary.start <= min(times) and max(times) <= summary.end + timedelta(minutes=5)


def test_demo_latencies_are_on_the_simulated_scale(demo_run: tuple[str, DemoSummary]) -> None:
    engine = open_store(demo_run[0]).engine
    by_model = {r["model"]: r for r in queries.latency_percentiles(engine, Filters(), by="model", measure="request")}
    # Hundreds of ms to seconds, as the fake provider's models take, not the microseconds a
    # sleep-free run would measure.
    assert 300 < by_model["gpt-4o-mini"]["p50_ms"] < 5000
    assert by_model["claude-sonnet-4-5"]["p50_ms"] > by_model["gemini-2.0-flash"]["p50_ms"]


def test_the_same_seed_gives_the_same_workload(tmp_path: Any) -> None:
    end = datetime.now(UTC) - timedelta(hours=1)

    def shape(url: str) -> list[tuple[Any, ...]]:
        run_demo(url, calls=120, seed=3, days=1.0, end=end)
        rows = queries.breakdown(open_store(url).engine, Filters(), by=("task", "model", "status"))
        return sorted((r["task"], r["model"], r["status"], r["calls"], r["requests"]) for r in rows)

    assert shape(f"sqlite:///{tmp_path / 'a.db'}") == shape(f"sqlite:///{tmp_path / 'b.db'}")


def test_the_default_demo_writes_its_calls_and_its_alert_fires(sqlite_url: str) -> None:
    summary = run_demo(sqlite_url)
    assert summary.calls == 1500
    assert summary.seconds > 0  # printed for the user, not asserted: tests time nothing
    assert "1,500 calls" in str(summary)
    # The real alert evaluator, replayed over the bad rollout, caught it.
    assert summary.alerts_fired >= 1
    events = queries.list_alert_events(open_store(sqlite_url).engine)
    assert {e["rule_name"] for e in events} == {"ticket JSON breaks (demo)"}
    deployed = min(r["start_time"] for r in open_store(sqlite_url).fetch_rows(prompt_version="ticket_prompt@4"))
    assert all(e["fired_at"] - deployed.replace(tzinfo=UTC) < timedelta(hours=4) for e in events)


def test_the_demo_rejects_nonsense_sizes(sqlite_url: str) -> None:
    with pytest.raises(ValueError):
        run_demo(sqlite_url, calls=0)
