"""Fixtures for the dashboard and query tests: rows built by hand, stores filled with them."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chromium import DevTools, chromium, chromium_path

from llmlens.collector.schema import ROW_COLUMNS
from llmlens.collector.store import Store, open_store

T0 = datetime(2026, 1, 10, 10, 0, tzinfo=UTC)
_ids = itertools.count(1)


def make_row(**values: Any) -> dict[str, Any]:
    """A complete ``llm_spans`` row: a final, successful, priced first attempt unless told otherwise."""
    n = next(_ids)
    row: dict[str, Any] = {column: None for column in ROW_COLUMNS}
    row.update(
        trace_id=f"{n:032x}", span_id=f"{n:016x}", name="chat", start_time=T0, duration_ms=100.0,
        task="extract_ticket", operation="chat", provider="openai", request_model="gpt-4o-mini",
        response_model="gpt-4o-mini", status="ok", input_tokens=1000, output_tokens=100,
        cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0, cost_usd=0.01, attempt=1,
        final=True, streaming=False, attributes={}, service_name="support-bot",
    )
    row.update(values)
    return row


def known_rows() -> list[dict[str, Any]]:
    """Six requests whose aggregates the tests know by heart (see test_queries.py)."""
    rows = [
        make_row(start_time=T0, duration_ms=100.0, prompt_version="3"),
        # A call retried once after a rate limit: two rows, one call.
        make_row(trace_id="b" * 32, span_id="b1" * 8, call_id="bc" * 8, attempt=1, final=False, max_attempts=3,
                 status="rate_limited", failure_reason="RateLimitError", cost_usd=0.002, duration_ms=50.0,
                 start_time=T0 + timedelta(minutes=1), prompt_version="4"),
        make_row(trace_id="b" * 32, span_id="b2" * 8, call_id="bc" * 8, attempt=2, final=True, max_attempts=3,
                 cost_usd=0.01, duration_ms=200.0, call_duration_ms=300.0,
                 start_time=T0 + timedelta(minutes=1, seconds=5), prompt_version="4",
                 attributes={"gen_ai.response.id": "resp-b2"}),
        make_row(start_time=T0 + timedelta(minutes=61), request_model="gpt-4o", response_model="gpt-4o",
                 status="invalid_output", failure_reason="ValidationError: priority", cost_usd=0.05,
                 duration_ms=400.0, prompt_version="4"),
        make_row(start_time=T0 + timedelta(minutes=62), task="summarize_thread", provider="anthropic",
                 request_model="claude-sonnet-4-5", response_model="claude-sonnet-4-5", cost_usd=None,
                 duration_ms=800.0, streaming=True, time_to_first_token_ms=120.0),
        make_row(start_time=T0 + timedelta(days=1), task="summarize_thread", provider="anthropic",
                 request_model="claude-sonnet-4-5", response_model=None, status="timeout",
                 failure_reason="APITimeoutError", cost_usd=0.0, input_tokens=0, output_tokens=0,
                 duration_ms=1000.0),
    ]
    # Outside the tests' time window, and with no task (another instrumentation's span).
    rows.append(make_row(start_time=T0 - timedelta(days=1), task=None, cost_usd=9.0))
    return rows


@pytest.fixture
def t0() -> datetime:
    """The start of the known rows' first hour."""
    return T0


@pytest.fixture
def span_row() -> Callable[..., dict[str, Any]]:
    """Build one complete row; keyword arguments override the defaults."""
    return make_row


@pytest.fixture
def make_store() -> Callable[[str, Iterable[dict[str, Any]]], Store]:
    def make(url: str, rows: Iterable[dict[str, Any]] = ()) -> Store:
        store = open_store(url)
        store.insert_rows(list(rows))
        return store

    return make


@pytest.fixture
def known_store(db_url: str, make_store: Callable[..., Store]) -> Store:
    """The rows of :func:`known_rows` on each supported database."""
    return make_store(db_url, known_rows())


@pytest.fixture
def pg_known_store(pg_url: str, make_store: Callable[..., Store]) -> Store:
    """The rows of :func:`known_rows` on PostgreSQL only."""
    return make_store(pg_url, known_rows())


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    """Headless Chromium driven over DevTools, with a profile of its own; skipped without Chromium."""
    if chromium_path() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with chromium(tmp_path / "chromium-profile") as devtools:
        yield devtools
