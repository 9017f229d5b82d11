"""The store: schema from empty, idempotent bulk writes, UTC, revision checks, migrations."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from llmlens._cli import main
from llmlens.collector import migrate
from llmlens.collector.schema import metadata
from llmlens.collector.store import (
    SCHEMA_REVISION,
    StoreOutdated,
    StoreUnavailable,
    current_revision,
    get_engine,
    open_store,
)
from llmlens.collector.store._time import sqlite_text


def _row(span_id: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "trace_id": "ab" * 16, "span_id": span_id, "name": "chat gpt-4o-mini",
        "start_time": datetime(2026, 11, 27, 10, 0, tzinfo=UTC), "duration_ms": 120.0,
        "status": "ok", "attempt": 1, "final": True, "streaming": False, "attributes": {"k": "v"},
        "request_model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 200, "cost_usd": 0.00027,
    }
    row.update(values)
    return row


def test_an_empty_store_is_created_at_the_newest_revision(db_url: str) -> None:
    store = open_store(db_url)
    assert current_revision(store.engine) == SCHEMA_REVISION == migrate.head_revision()
    tables = set(inspect(store.engine).get_table_names())
    assert {"llm_spans", "alert_rules", "alert_events", "alembic_version"} <= tables


def test_writing_the_same_span_twice_is_one_row(db_url: str) -> None:
    store = open_store(db_url)
    assert store.insert_rows([_row("1" * 16), _row("2" * 16)]) == 2
    assert store.insert_rows([_row("1" * 16), _row("3" * 16)]) == 1
    assert store.count_rows() == 3
    # Within one batch too, and across the statements a large batch is split into.
    batch = [_row(f"{i:016x}") for i in range(10, 460)]
    assert store.insert_rows(batch + batch[:3]) == 450
    assert store.insert_rows(batch) == 0
    assert store.count_rows() == 453


def test_timestamps_come_back_as_utc_whatever_zone_they_went_in_with(db_url: str) -> None:
    store = open_store(db_url)
    paris = timezone(timedelta(hours=1))
    store.insert_rows([_row("4" * 16, start_time=datetime(2026, 11, 27, 11, 0, tzinfo=paris))])
    (row,) = store.fetch_rows()
    assert row["start_time"] == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert row["start_time"].utcoffset() == timedelta(0)
    assert row["attributes"] == {"k": "v"}
    assert row["final"] is True and row["streaming"] is False


def test_a_utc_start_time_is_stored_as_the_same_text_as_that_moment_in_any_zone() -> None:
    # A UTC time (what normalize makes) has its text's offset cut off; any other converts first.
    rng = random.Random(7)
    paris = timezone(timedelta(hours=1))
    moments = [datetime(2026, 11, 27, 10, 0, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
               *(datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**15)) for _ in range(300))]
    for moment in moments:
        stored = sqlite_text(moment)
        naive = moment.replace(tzinfo=None)
        assert stored == sqlite_text(naive) == naive.isoformat(sep=" ", timespec="microseconds")
        if moment.year > 1:
            assert stored == sqlite_text(moment.astimezone(paris))


def test_migrations_build_the_same_schema_as_the_models_from_empty(db_url: str) -> None:
    before, after = migrate.upgrade(db_url)
    assert (before, after) == (None, SCHEMA_REVISION)
    with get_engine(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    store = open_store(db_url)  # the migrated store is accepted as is
    assert store.insert_rows([_row("5" * 16)]) == 1


def test_migrations_downgrade_to_empty_and_back(db_url: str) -> None:
    migrate.upgrade(db_url)
    migrate.downgrade(db_url, "base")
    assert "llm_spans" not in inspect(get_engine(db_url)).get_table_names()
    migrate.upgrade(db_url)
    assert open_store(db_url).count_rows() == 0


def test_an_older_store_asks_for_llmlens_db_upgrade(db_url: str) -> None:
    open_store(db_url)
    with get_engine(db_url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(StoreOutdated, match="run `llmlens db upgrade`"):
        open_store(db_url)


def test_the_cli_turns_an_outdated_store_into_one_line(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    open_store(sqlite_url)
    with get_engine(sqlite_url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    assert main(["prices", "recompute", "--db", sqlite_url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "llmlens db upgrade" in err and "Traceback" not in err


def test_db_upgrade_on_the_cli_creates_an_empty_store(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--db", sqlite_url]) == 0
    assert f"upgraded empty store -> {SCHEMA_REVISION}" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", sqlite_url]) == 0
    assert f"already at revision {SCHEMA_REVISION}" in capsys.readouterr().out


def test_an_unreachable_database_is_store_unavailable(pg_server_url: str) -> None:
    dead = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    with pytest.raises(StoreUnavailable, match="cannot reach the store"):
        open_store(dead)
