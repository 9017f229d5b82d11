"""The SQL aggregates, on SQLite and PostgreSQL, over rows whose answers we know.

The known rows (tests/dashboard/conftest.py) inside the window [t0, t0 + 2 days):

    A  extract_ticket gpt-4o-mini       v3  ok              0.010  100 ms
    B1 extract_ticket gpt-4o-mini       v4  rate_limited    0.002   50 ms   attempt 1, not final
    B2 extract_ticket gpt-4o-mini       v4  ok              0.010  200 ms   attempt 2, call 300 ms
    C  extract_ticket gpt-4o            v4  invalid_output  0.050  400 ms   t0 + 61 min
    D  summarize_thread claude-sonnet-4-5   ok              NULL   800 ms   streamed, TTFT 120 ms
    E  summarize_thread claude-sonnet-4-5   timeout         0.000 1000 ms   t0 + 1 day

plus one row a day before t0, with no task, costing 9.00.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from llmlens.collector import queries
from llmlens.collector.queries import Filters
from llmlens.collector.store import RELATIVE_ERROR, Store


def _about(*values: float) -> Any:
    # Percentiles come from log-spaced histogram bins: within RELATIVE_ERROR of exact.
    approx = [pytest.approx(v, rel=RELATIVE_ERROR) for v in values]
    return approx[0] if len(approx) == 1 else tuple(approx)


@pytest.fixture
def window(t0: datetime) -> Filters:
    return Filters(start=t0, end=t0 + timedelta(days=2))


def test_summary_counts_calls_on_final_rows_and_spend_on_every_row(known_store: Store, window: Filters) -> None:
    s = queries.summary(known_store.engine, window)
    assert (s["calls"], s["requests"], s["retried_calls"]) == (5, 6, 1)
    assert s["spend_usd"] == pytest.approx(0.072)
    assert s["input_tokens"] == 5000 and s["output_tokens"] == 500


def test_wasted_spend_is_everything_but_final_ok_rows(known_store: Store, window: Filters) -> None:
    s = queries.summary(known_store.engine, window)
    assert s["wasted_spend_usd"] == pytest.approx(0.052)


def test_unpriced_rows_are_counted_not_treated_as_free(known_store: Store, window: Filters) -> None:
    assert queries.summary(known_store.engine, window)["unpriced_requests"] == 1


def test_outcome_rates_are_per_call(known_store: Store, window: Filters) -> None:
    s = queries.summary(known_store.engine, window)
    assert (s["failed_calls"], s["invalid_output_calls"]) == (2, 1)
    assert s["failure_rate"] == pytest.approx(0.4)
    assert s["invalid_output_rate"] == pytest.approx(0.2)


def test_call_latency_percentiles_are_nearest_rank_over_whole_calls(known_store: Store, window: Filters) -> None:
    # Calls take 100, 300 (two attempts and backoff), 400, 800 and 1000 ms.
    s = queries.summary(known_store.engine, window)
    assert (s["p50_ms"], s["p95_ms"], s["p99_ms"]) == _about(400.0, 1000.0, 1000.0)


def test_request_latency_percentiles_count_every_attempt(known_store: Store, window: Filters) -> None:
    [row] = queries.latency_percentiles(known_store.engine, window, measure="request", quantiles=(0.5, 0.25))
    assert (row["n"], row["p50_ms"], row["p25_ms"]) == (6, *_about(200.0, 100.0))


def test_latency_percentiles_by_group(known_store: Store, window: Filters) -> None:
    rows = queries.latency_percentiles(known_store.engine, window, by="task")
    by_task = {r["task"]: r for r in rows}
    assert by_task["extract_ticket"]["n"] == 3 and by_task["extract_ticket"]["p50_ms"] == _about(300.0)
    assert by_task["summarize_thread"]["p95_ms"] == _about(1000.0)
    assert rows[0]["task"] == "summarize_thread"  # slowest p95 first


def test_time_to_first_token_only_looks_at_streamed_requests(known_store: Store, window: Filters) -> None:
    [row] = queries.latency_percentiles(known_store.engine, window, by="model", measure="ttft")
    assert (row["model"], row["n"], row["p50_ms"]) == ("claude-sonnet-4-5", 1, _about(120.0))


def test_summary_of_an_empty_selection_is_zeros_and_no_rates(known_store: Store, t0: datetime) -> None:
    s = queries.summary(known_store.engine, Filters(start=t0 + timedelta(days=30)))
    assert s["calls"] == 0 and s["spend_usd"] == 0.0
    assert s["failure_rate"] is None and s["p95_ms"] is None


def test_hourly_buckets_start_on_the_utc_hour(known_store: Store, window: Filters, t0: datetime) -> None:
    rows = queries.timeseries(known_store.engine, window, bucket_seconds=3600)
    assert [(r["bucket"], r["requests"], r["calls"]) for r in rows] == [
        (t0, 3, 2), (t0 + timedelta(hours=1), 2, 2), (t0 + timedelta(days=1), 1, 1)]
    assert rows[0]["spend_usd"] == pytest.approx(0.022)
    assert rows[0]["bucket"].tzinfo is not None


def test_daily_buckets_are_utc_days(known_store: Store, window: Filters, t0: datetime) -> None:
    rows = queries.timeseries(known_store.engine, window, bucket_seconds=86400)
    midnight = t0.replace(hour=0)
    assert [(r["bucket"], r["requests"]) for r in rows] == [(midnight, 5), (midnight + timedelta(days=1), 1)]


def test_minute_buckets_split_by_status(known_store: Store, t0: datetime) -> None:
    rows = queries.timeseries(known_store.engine, Filters(start=t0, end=t0 + timedelta(minutes=5)),
                              bucket_seconds=60, by="status")
    assert [(r["bucket"], r["status"], r["requests"]) for r in rows] == [
        (t0, "ok", 1), (t0 + timedelta(minutes=1), "ok", 1), (t0 + timedelta(minutes=1), "rate_limited", 1)]


def test_breakdown_by_task(known_store: Store, window: Filters) -> None:
    rows = queries.breakdown(known_store.engine, window, by="task")
    assert [(r["task"], r["calls"], r["requests"]) for r in rows] == [
        ("extract_ticket", 3, 4), ("summarize_thread", 2, 2)]
    assert rows[0]["wasted_spend_usd"] == pytest.approx(0.052)
    assert rows[1]["unpriced_requests"] == 1


def test_breakdown_by_two_dimensions(known_store: Store, window: Filters) -> None:
    rows = queries.breakdown(known_store.engine, window, by=("task", "prompt_version"))
    got = {(r["task"], r["prompt_version"]): r["calls"] for r in rows}
    assert got == {("extract_ticket", "3"): 1, ("extract_ticket", "4"): 2, ("summarize_thread", None): 2}


def test_breakdown_rejects_an_unknown_dimension(known_store: Store) -> None:
    with pytest.raises(ValueError, match="unknown dimension"):
        queries.breakdown(known_store.engine, Filters(), by="user_email")


@pytest.mark.parametrize(
    ("filters", "calls"),
    [
        ({"tasks": ("summarize_thread",)}, 2),
        ({"models": ("gpt-4o-mini", "gpt-4o")}, 3),
        ({"prompt_versions": ("4",)}, 2),
        ({"statuses": ("invalid_output", "timeout")}, 2),
        ({"services": ("other-service",)}, 0),
    ],
)
def test_filters_select_rows(known_store: Store, window: Filters, filters: dict[str, tuple[str, ...]],
                             calls: int) -> None:
    narrowed = Filters(start=window.start, end=window.end, **filters)  # type: ignore[arg-type]
    assert queries.summary(known_store.engine, narrowed)["calls"] == calls


def test_none_in_a_filter_selects_rows_without_that_column(known_store: Store) -> None:
    s = queries.summary(known_store.engine, Filters(tasks=(None,)))
    assert (s["calls"], s["spend_usd"]) == (1, 9.0)


def test_time_range_is_half_open_and_naive_times_are_utc(known_store: Store, t0: datetime) -> None:
    naive = t0.replace(tzinfo=None)
    assert queries.summary(known_store.engine, Filters(start=naive, end=naive + timedelta(minutes=1)))["requests"] == 1
    berlin = timezone(timedelta(hours=1))
    same_window = Filters(start=t0.astimezone(berlin), end=(t0 + timedelta(minutes=1)).astimezone(berlin))
    assert queries.summary(known_store.engine, same_window)["requests"] == 1


def test_retry_waste_splits_retried_attempts_from_failed_calls(known_store: Store, window: Filters) -> None:
    rows = queries.retry_waste(known_store.engine, window)
    extract = rows[0]
    assert extract["task"] == "extract_ticket"
    assert extract["retry_spend_usd"] == pytest.approx(0.002)
    assert extract["failed_spend_usd"] == pytest.approx(0.05)
    assert extract["wasted_spend_usd"] == pytest.approx(0.052)
    assert extract["wasted_requests"] == 2
    assert rows[1]["task"] == "summarize_thread" and rows[1]["wasted_requests"] == 1


def test_list_calls_is_newest_first_with_totals_over_attempts(known_store: Store, window: Filters) -> None:
    calls = queries.list_calls(known_store.engine, window)
    assert [c["status"] for c in calls] == ["timeout", "ok", "invalid_output", "ok", "ok"]
    retried = calls[3]
    assert (retried["attempts"], retried["latency_ms"]) == (2, 300.0)
    assert retried["cost_usd"] == pytest.approx(0.012)
    assert retried["input_tokens"] == 2000
    assert calls[1]["cost_usd"] is None  # unpriced stays unknown, not free
    assert queries.count_calls(known_store.engine, window) == 5


def test_list_calls_pages(known_store: Store, window: Filters) -> None:
    first = queries.list_calls(known_store.engine, window, limit=2)
    second = queries.list_calls(known_store.engine, window, limit=2, before=first[-1]["cursor"])
    third = queries.list_calls(known_store.engine, window, limit=2, before=second[-1]["cursor"])
    assert [c["status"] for c in first + second + third] == ["timeout", "ok", "invalid_output", "ok", "ok"]
    assert queries.list_calls(known_store.engine, window, limit=2, before=third[-1]["cursor"]) == []


def test_call_detail_returns_every_attempt_with_attributes(known_store: Store) -> None:
    attempts = queries.call_detail(known_store.engine, "b" * 32, "b2" * 8)
    assert [(a["attempt"], a["status"], a["final"]) for a in attempts] == [
        (1, "rate_limited", False), (2, "ok", True)]
    assert attempts[1]["attributes"] == {"gen_ai.response.id": "resp-b2"}
    assert attempts[0]["start_time"].tzinfo is UTC


def test_call_detail_of_an_unknown_span_is_empty(known_store: Store) -> None:
    assert queries.call_detail(known_store.engine, "f" * 32, "f" * 16) == []


def test_filter_options_are_distinct_values_in_the_time_range(known_store: Store, window: Filters) -> None:
    options = queries.filter_options(known_store.engine, Filters(start=window.start, end=window.end,
                                                                 tasks=("summarize_thread",)))
    assert options["tasks"] == ["extract_ticket", "summarize_thread"]
    assert options["models"] == ["claude-sonnet-4-5", "gpt-4o", "gpt-4o-mini"]
    assert options["prompt_versions"] == ["3", "4"]
    assert options["statuses"] == ["invalid_output", "ok", "rate_limited", "timeout"]


def test_has_rows(db_url: str, make_store) -> None:  # type: ignore[no-untyped-def]
    store = make_store(db_url)
    assert not queries.has_rows(store.engine)
    assert queries.summary(store.engine)["calls"] == 0


def test_alert_rules_and_events_read_back(known_store: Store, t0: datetime) -> None:
    from llmlens.collector.schema import alert_events, alert_rules

    with known_store.engine.begin() as conn:
        conn.execute(alert_rules.insert(), [{"name": "invalid outputs", "metric": "invalid_output_rate",
                                             "threshold": 0.1, "window_minutes": 15, "min_calls": 20,
                                             "cooldown_minutes": 60, "enabled": True}])
        conn.execute(alert_events.insert(), [
            {"rule_id": 1, "rule_name": "invalid outputs", "fired_at": t0 + timedelta(hours=h), "value": 0.2,
             "threshold": 0.1, "task": "extract_ticket", "message": f"fired {h}", "delivered": True}
            for h in (1, 2, 30)])
    assert [r["name"] for r in queries.list_alert_rules(known_store.engine)] == ["invalid outputs"]
    events = queries.list_alert_events(known_store.engine, Filters(start=t0, end=t0 + timedelta(days=1)))
    assert [e["message"] for e in events] == ["fired 2", "fired 1"]


def test_choose_bucket_keeps_charts_readable() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert queries.choose_bucket(start, start + timedelta(hours=1)) == 60
    assert queries.choose_bucket(start, start + timedelta(days=1)) == 900
    assert queries.choose_bucket(start, start + timedelta(days=7)) == 3600
    assert queries.choose_bucket(start, start + timedelta(days=365)) == 86400


def test_filters_reject_a_backwards_range(t0: datetime) -> None:
    with pytest.raises(ValueError):
        Filters(start=t0, end=t0 - timedelta(seconds=1))


def test_aggregates_accept_a_connection(known_store: Store, window: Filters) -> None:
    with known_store.engine.connect() as conn:
        assert queries.summary(conn, window)["calls"] == 5


def test_time_extent_spans_the_selected_rows(known_store: Store, window: Filters, t0: datetime) -> None:
    assert queries.time_extent(known_store.engine, window) == (t0, t0 + timedelta(days=1))
    assert queries.time_extent(known_store.engine, Filters(start=t0 + timedelta(days=9))) == (None, None)


def test_results_do_not_depend_on_the_postgres_session_time_zone(pg_known_store: Store, window: Filters,
                                                                 t0: datetime) -> None:
    from sqlalchemy import text

    with pg_known_store.engine.connect() as conn:
        conn.execute(text("SET TIME ZONE 'Asia/Kolkata'"))  # UTC+05:30: shifts day boundaries
        assert queries.summary(conn, window)["requests"] == 6
        daily = queries.timeseries(conn, window, bucket_seconds=86400)
        assert [r["bucket"] for r in daily] == [t0.replace(hour=0), t0.replace(hour=0) + timedelta(days=1)]
        assert queries.time_extent(conn, window)[0] == t0
        conn.rollback()


def test_latency_percentiles_per_time_bucket(known_store: Store, window: Filters, t0: datetime) -> None:
    rows = queries.latency_percentiles(known_store.engine, window, bucket_seconds=3600)
    # Calls: 100 and 300 ms in the first hour, 400 and 800 in the second, 1000 a day later.
    assert [(r["bucket"], r["n"], r["p50_ms"], r["p95_ms"]) for r in rows] == [
        (t0, 2, *_about(100.0, 300.0)), (t0 + timedelta(hours=1), 2, *_about(400.0, 800.0)),
        (t0 + timedelta(days=1), 1, *_about(1000.0, 1000.0))]
    by_task = queries.latency_percentiles(known_store.engine, window, bucket_seconds=86400, by="task")
    assert [(r["task"], r["n"]) for r in by_task] == [("extract_ticket", 3), ("summarize_thread", 1),
                                                      ("summarize_thread", 1)]
