"""The bulk row writer, and the few updates that rewrite stored rows.

Writes go through a prepared ``INSERT … ON CONFLICT (trace_id, span_id) DO NOTHING``
executed with the driver's ``executemany``: the same span written twice is one row on
both databases, so an OTLP exporter's retry never double-counts cost. SQLAlchemy's ORM
and Core insert are ~10x slower for bulk inserts; Core serves every other statement.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from sqlalchemy import JSON, Connection, Float, Table
from sqlalchemy.dialects import postgresql

from llmlens.collector.store._tables import ROW_COLUMNS, llm_spans
from llmlens.collector.store._time import sqlite_text

__all__ = ["Batch", "dumps", "insert_rows", "insert_sql", "parent_links", "pg_arrays", "pg_unnest", "prepare",
           "sqlite_params", "take_write_lock"]

# Rows from normalize carry every column; a C-level getter builds the parameter tuple.
_pick_columns: Final = operator.itemgetter(*ROW_COLUMNS)
_START: Final = ROW_COLUMNS.index("start_time")
_ATTRS: Final = ROW_COLUMNS.index("attributes")
_FINAL: Final = ROW_COLUMNS.index("final")
_STREAMING: Final = ROW_COLUMNS.index("streaming")


def _json_encoder() -> Callable[[Any], str]:
    # orjson (installed with the server extra) encodes the attributes column ~5x faster
    # than the standard library, which shows on the collector's ingest path.
    try:
        import orjson
    except ImportError:
        return json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=False).encode

    encode_bytes, option = orjson.dumps, orjson.OPT_NON_STR_KEYS

    def encode(value: Any) -> str:
        return encode_bytes(value, default=str, option=option).decode()

    return encode


dumps: Final = _json_encoder()


def insert_sql(dialect: str) -> str:
    """The driver-level insert, duplicates of (trace_id, span_id) skipped: of one row on
    SQLite (run with ``executemany``), of a whole batch on PostgreSQL (see :func:`pg_unnest`)."""
    cols = ", ".join(ROW_COLUMNS)
    if dialect == "postgresql":
        picked = ", ".join("attributes::json" if c == "attributes" else c for c in ROW_COLUMNS)
        return (f"INSERT INTO llm_spans ({cols}) SELECT {picked} FROM {pg_unnest(llm_spans, ROW_COLUMNS)} "
                f"AS batch ({cols}) ON CONFLICT (trace_id, span_id) DO NOTHING RETURNING trace_id, span_id")
    values = ", ".join("?" for _ in ROW_COLUMNS)
    return f"INSERT INTO llm_spans ({cols}) VALUES ({values}) ON CONFLICT (trace_id, span_id) DO NOTHING"


# --- PostgreSQL bulk statements: a batch as one statement over arrays -----------------------

def pg_unnest(table: Table, columns: Sequence[str]) -> str:
    """``unnest(%b::<type>[], …)``: the rows of a batch as one array parameter per column.

    One statement per batch, because an ``executemany`` is a round of the protocol per row,
    which cost more than the writes themselves. Each array is bound in binary (``%b``): as
    text, psycopg quotes every element (and hex-escapes every blob) in Python. Its type is
    the column's own, without a length, so a value too long fails the write as it would row
    by row (a cast to ``VARCHAR(n)`` would cut it silently); JSON travels as text, to be
    cast in the statement's select list. Pass the arrays through :func:`pg_arrays`.
    """
    return f"unnest({', '.join(f'%b::{_pg_array_type(table, name)}' for name in columns)})"


def _pg_array_type(table: Table, column: str) -> str:
    type_ = table.c[column].type
    if isinstance(type_, JSON):
        return "text[]"
    declared: str = type_.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
    return f"{declared.split('(')[0]}[]"


def pg_arrays(table: Table, columns: Sequence[str], arrays: Sequence[list[Any]]) -> tuple[list[Any], ...]:
    """``arrays`` (one list per column of ``columns``) ready for :func:`pg_unnest`.

    An array holds one type: a float column's integers (a duration of 0, a cost summed from
    nothing) become floats, in place.
    """
    for name, array in zip(columns, arrays, strict=True):
        if isinstance(table.c[name].type, Float):
            array[:] = [None if value is None else float(value) for value in array]
    return tuple(arrays)


def take_write_lock(conn: Connection) -> None:
    """SQLite: take the database's write lock now (``BEGIN IMMEDIATE``), so what the
    transaction reads next is what it writes against; the driver would begin the transaction
    only at its first write. Writers on other connections wait for the commit."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    # (An engine that begins its transactions itself has begun this one already.) Through
    # SQLAlchemy, so its logging and events see the statement that may wait.
    if not dbapi.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_params(rows: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
    """Rows as the SQLite driver's parameter lists, in ``ROW_COLUMNS`` order."""
    out = []
    pick = _pick_columns
    for row in rows:
        try:
            values = list(pick(row))
        except KeyError:  # a hand-built row with only some columns
            values = [row.get(col) for col in ROW_COLUMNS]
        values[_START] = sqlite_text(values[_START])
        values[_ATTRS] = dumps(values[_ATTRS] or {})
        values[_FINAL] = 1 if values[_FINAL] else 0
        values[_STREAMING] = 1 if values[_STREAMING] else 0
        out.append(values)
    return out


def _pg_columns(rows: Sequence[Mapping[str, Any]]) -> tuple[list[Any], ...]:
    """Rows as one list per column, in ``ROW_COLUMNS`` order (the arrays ``unnest`` takes)."""
    columns = [[row.get(col) for row in rows] for col in ROW_COLUMNS]
    columns[_ATTRS][:] = [dumps(value or {}) for value in columns[_ATTRS]]
    columns[_FINAL][:] = [bool(value) for value in columns[_FINAL]]
    columns[_STREAMING][:] = [bool(value) for value in columns[_STREAMING]]
    return pg_arrays(llm_spans, ROW_COLUMNS, columns)


class Batch(NamedTuple):
    """Rows with their driver parameters, built before the transaction (:func:`prepare`)."""

    rows: Sequence[Mapping[str, Any]]
    params: Any


def prepare(dialect: str, rows: Sequence[Mapping[str, Any]]) -> Batch:
    """The rows' driver parameters, built before the write transaction begins.

    SQLite has one writer at a time: whatever runs while it holds the lock is time every
    other writer (collector workers, processes sharing the file) waits. Parameters depend
    on the rows alone, so they are built outside it.
    """
    if dialect == "sqlite":
        return Batch(rows, sqlite_params(rows))
    # Concurrent collectors inserting the same spans must take their index locks in one
    # order, or two transactions wait for each other (a deadlock). ``unnest`` yields the
    # rows in that order, and a stable sort keeps the first of two duplicates first: the
    # one the statement keeps.
    rows = sorted(rows, key=_span_of)
    return Batch(rows, _pg_columns(rows))


def insert_rows(conn: Connection, sql: str, batch: Batch) -> list[Mapping[str, Any]]:
    """Insert a batch from :func:`prepare` on ``conn`` (inside its transaction); return
    the rows that were new, in the batch's order.

    Rollups are built from what this returns, so it must be exact under concurrency.
    PostgreSQL says which rows it inserted (``RETURNING``, one result per row). SQLite's
    ``executemany`` returns nothing, so the transaction takes the write lock first
    (``BEGIN IMMEDIATE``: no other process can insert until it commits); when the count
    inserted shows duplicates, the new rows are those above the id the table ended at.
    """
    if conn.dialect.name == "sqlite":
        return _insert_sqlite(conn, sql, batch)
    return _insert_postgres(conn, sql, batch)


def _span_of(row: Mapping[str, Any]) -> tuple[str, str]:
    return row["trace_id"], row["span_id"]


def _first_of_each_span(rows: Sequence[Mapping[str, Any]], skip: set[tuple[str, str]]) -> list[Mapping[str, Any]]:
    # Within a batch the first of two rows with one span id is the one ON CONFLICT keeps.
    fresh = []
    for row in rows:
        span = (row["trace_id"], row["span_id"])
        if span not in skip:
            skip.add(span)
            fresh.append(row)
    return fresh


def _insert_sqlite(conn: Connection, sql: str, batch: Batch) -> list[Mapping[str, Any]]:
    rows = batch.rows
    take_write_lock(conn)
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    # Holding the write lock, the rows this transaction inserts are exactly those with an
    # id above the largest one before it (INTEGER PRIMARY KEY takes max(rowid) + 1).
    last_id = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM llm_spans").scalar()
    cursor = dbapi.cursor()
    try:
        cursor.executemany(sql, batch.params)
        inserted = cursor.rowcount
    finally:
        cursor.close()
    if inserted == len(rows):  # the usual case: no duplicate, nothing to look up
        return list(rows)
    new = {(t, s) for t, s in conn.exec_driver_sql(_NEW_SPANS_SQLITE, (last_id,))}
    return [row for row in _first_of_each_span(rows, set()) if (row["trace_id"], row["span_id"]) in new]


def _insert_postgres(conn: Connection, sql: str, batch: Batch) -> list[Mapping[str, Any]]:
    rows = batch.rows
    inserted = {(t, s) for t, s in conn.exec_driver_sql(sql, batch.params)}
    if len(inserted) == len(rows):
        return list(rows)
    return [row for row in _first_of_each_span(rows, set()) if (row["trace_id"], row["span_id"]) in inserted]


_NEW_SPANS_SQLITE: Final = "SELECT trace_id, span_id FROM llm_spans WHERE id > ?"
_PARENTS_SQLITE: Final = ("SELECT trace_id, parent_span_id FROM llm_spans "
                          "WHERE trace_id IN (SELECT value FROM json_each(?))")
_PARENTS_POSTGRES: Final = "SELECT trace_id, parent_span_id FROM llm_spans WHERE trace_id = ANY(%b)"


def parent_links(conn: Connection, trace_ids: Iterable[str]) -> set[tuple[str, str]]:
    """(trace_id, parent_span_id) of the stored rows of these traces that have a parent."""
    ids = sorted(set(trace_ids))
    if not ids:
        return set()
    # One statement with the ids as a single parameter, run as is: compiling an
    # expanding IN of ~1,500 parameters per batch cost 3-8 ms, several times the
    # lookup. The unique index on (trace_id, span_id) serves the lookup by trace_id.
    params: tuple[Any, ...]
    if conn.dialect.name == "sqlite":
        sql, params = _PARENTS_SQLITE, (dumps(ids),)
    else:
        sql, params = _PARENTS_POSTGRES, (ids,)
    return {(t, p) for t, p in conn.exec_driver_sql(sql, params) if p is not None}
