"""The store package keeps to itself: own MetaData, one error tree, one typed row."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import llmlens
from llmlens.collector import store as store_package
from llmlens.collector.store import (
    ROW_COLUMNS,
    SpanRow,
    StoreError,
    StoreOutdated,
    StoreUnavailable,
    llm_spans,
    open_store,
)

ROOT = Path(__file__).resolve().parents[2]

_APP = """
import sqlmodel
from sqlmodel import Field, SQLModel, create_engine

class Invoice(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)

before_tables = sorted(SQLModel.metadata.tables)
before_convention = dict(SQLModel.metadata.naming_convention)

from llmlens.collector.store import open_store
from llmlens.collector import alerts, queries, reprice, schema  # every module that touches the store
store = open_store("sqlite:///{path}")
queries.summary(store.engine)

engine = create_engine("sqlite:///{app_path}")
SQLModel.metadata.create_all(engine)  # the app's own create_all
from sqlalchemy import inspect
print(sorted(SQLModel.metadata.tables) == before_tables)
print(dict(SQLModel.metadata.naming_convention) == before_convention)
print(sorted(inspect(engine).get_table_names()))
"""


def test_an_apps_sqlmodel_metadata_stays_untouched_by_the_store(tmp_path: Path) -> None:
    code = _APP.format(path=tmp_path / "llmlens.db", app_path=tmp_path / "app.db")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    same_tables, same_convention, created = out.stdout.strip().splitlines()
    assert same_tables == "True"
    assert same_convention == "True"
    assert created == "['invoice']"


def test_the_stores_tables_live_on_their_own_metadata() -> None:
    from sqlmodel import SQLModel

    assert llm_spans.metadata is store_package.metadata
    assert store_package.metadata is not SQLModel.metadata
    assert "llm_spans" not in SQLModel.metadata.tables


def test_every_store_error_is_an_llmlens_error() -> None:
    for error in (StoreError, StoreUnavailable, StoreOutdated):
        assert issubclass(error, llmlens.LLMLensError)


def test_the_row_type_names_exactly_the_tables_columns() -> None:
    assert tuple(SpanRow.__annotations__) == ROW_COLUMNS


def _isort_style(name: str) -> tuple[int, str]:
    # Constants, then classes, then functions: the order ruff keeps __all__ in.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_the_store_package_declares_a_sorted_public_api() -> None:
    assert store_package.__all__ == sorted(store_package.__all__, key=_isort_style)
    for name in store_package.__all__:
        assert getattr(store_package, name) is not None


def test_a_read_from_a_broken_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "llmlens.db"
    store = open_store(f"sqlite:///{path}")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE llm_spans")
    with pytest.raises(StoreError, match="cannot read from the store"):
        store.count_rows()
    with pytest.raises(StoreError, match="cannot write to the store"):
        store.insert_rows([{"trace_id": "a" * 32, "span_id": "b" * 16, "start_time": datetime.now(UTC),
                            "duration_ms": 1.0, "status": "ok", "attempt": 1, "final": True, "streaming": False,
                            "attributes": {}}])


def test_no_sql_is_written_outside_the_store_package() -> None:
    # Statements and dialect switches have one home: modules outside the store build none.
    markers = ("from sqlalchemy", "import sqlalchemy", "exec_driver_sql", ".execute(")
    outside = [*ROOT.joinpath("collector").glob("*.py"), *ROOT.joinpath("dashboard").rglob("*.py")]
    offenders = [str(path.relative_to(ROOT)) for path in outside
                 if any(marker in path.read_text() for marker in markers)]
    assert offenders == []
