"""Engines, one per database URL, with each dialect's options; the schema check on open.

Everything that differs between SQLite and PostgreSQL at the connection level lives here:
SQLite's pragmas (WAL, busy timeout, checkpoint size), PostgreSQL's driver name, pool and
connect timeout.

The engines cached here are llmlens' own (an engine an application hands to ``Store`` is
never touched). Their pooled connections are closed at interpreter exit, after the export
pipelines' exit flush (which writes through them), and a forked child starts with empty
pools and a fresh cache lock: it must neither close nor use the parent's connections, nor
wait on a lock another thread of the parent held at the fork.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.pool import ConnectionPoolEntry

from llmlens.collector.store._errors import StoreOutdated, translated
from llmlens.collector.store._tables import metadata

__all__ = [
    "DEFAULT_DB_URL",
    "SCHEMA_REVISION",
    "current_revision",
    "dispose_engines",
    "ensure_schema",
    "get_engine",
    "make_engine",
    "resolve_url",
    "safe_url",
]

DEFAULT_DB_URL: Final = "sqlite:///llmlens.db"
# The newest migration under collector/migrations/versions. A test checks they agree.
SCHEMA_REVISION: Final = "0005"


def resolve_url(url: str | None = None) -> str:
    """Explicit URL, else ``LLMLENS_DB_URL``, else ``sqlite:///llmlens.db`` in the working directory."""
    return url or os.environ.get("LLMLENS_DB_URL") or DEFAULT_DB_URL


def safe_url(engine: Engine) -> str:
    """The engine's URL without its password, for messages."""
    return engine.url.render_as_string(hide_password=True)


def _set_sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets the dashboard read while the exporter writes; NORMAL sync is durable
    # across application crashes (not power loss), the usual trade-off for telemetry.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Processes writing one file take turns, and SQLite's busy handler is not fair: on a
    # loaded machine one of four writers waited over 5 s. 30 s (the connect timeout) keeps
    # that from reading as "store unavailable"; exits stay bounded by the export pipeline.
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA temp_store=MEMORY")
    # Checkpoint every ~4 MB of WAL (SQLite's default). Every ~40 MB gave ~14% more
    # inserts/s, but on a small disk the rows then sat in the WAL (main file 4 KB) and a
    # full disk left nothing to recover from; the writers also checkpoint when idle.
    cursor.execute("PRAGMA wal_autocheckpoint=1000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Create an engine with the options each database wants."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:" and not path.startswith("file:"):
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        # Every read sums a few thousand rollup rows: starting parallel workers for them
        # cost more than it saved (a 30-day sum on the 1M-row store: 33 ms with two, 19 without).
        connect_args={"connect_timeout": 10, "application_name": "llmlens",
                      "options": "-c max_parallel_workers_per_gather=0"},
    )


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (one pool per database)."""
    url = resolve_url(url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    """Close every pooled connection of llmlens' engines and forget them.

    Connections checked out at the time are closed when they are returned.
    """
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _dispose_at_exit() -> None:
    # The export pipelines' exit flush writes through these engines, and atexit runs hooks
    # in the reverse order of registration, which depends on what was imported first: run
    # the flush here (it is idempotent and bounded by exit_timeout), then close.
    pipeline = sys.modules.get("llmlens._pipeline")
    if pipeline is not None:
        pipeline.shutdown_at_exit()
    dispose_engines()


def _after_fork_in_child() -> None:
    global _engines_lock
    # Another thread of the parent may have held the lock at the fork; it never releases
    # it in the child. The pools' connections are the parent's sockets and file handles:
    # drop them without closing (SQLAlchemy's documented pattern), the child connects anew.
    _engines_lock = threading.Lock()
    for engine in _engines.values():
        engine.dispose(close=False)


atexit.register(_dispose_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)


_VERSION_TABLE_DDL: Final = ("CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) NOT NULL, "
                             "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision stamped in the database, or None when it has none."""
    with translated("cannot reach", safe_url(engine)), engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return None if value is None else str(value)


def ensure_schema(engine: Engine) -> None:
    """Create an empty store at the newest revision; refuse an older or foreign one.

    An empty database needs no setup step, so the embedded default just works. A store at
    another revision is never migrated implicitly: the user runs ``llmlens db upgrade``.

    Creation is one transaction under an exclusive lock (SQLite: ``BEGIN IMMEDIATE``;
    PostgreSQL: a transaction-scoped advisory lock), so processes opening one brand-new
    store at once all succeed: one creates and stamps it, the others wait, then find it
    at the newest revision. None ever sees tables without their revision.
    """
    where = safe_url(engine)
    with translated("cannot reach", where):
        with engine.connect() as conn:  # the common case, an existing store: no lock taken
            tables, revision = _schema_state(conn)
        if revision != SCHEMA_REVISION and not tables & _OURS - {"alembic_version"}:
            with engine.connect() as conn, _exclusive(conn):
                tables, revision = _schema_state(conn)
                if not tables & _OURS:
                    metadata.create_all(conn)
                    conn.execute(text(_VERSION_TABLE_DDL))
                    conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"),
                                 {"v": SCHEMA_REVISION})
                    return
    if revision == SCHEMA_REVISION:
        return
    if revision is None:
        raise StoreOutdated(
            f"the store at {where} has tables but no llmlens schema revision (another program's "
            "database, or one whose creation failed): point LLMLENS_DB_URL at a new database"
        )
    raise StoreOutdated(
        f"the store at {where} is at schema {revision}, this llmlens needs {SCHEMA_REVISION}: "
        "run `llmlens db upgrade`"
    )


_OURS: Final = frozenset({"llm_spans", "alembic_version"})
# pg_advisory_xact_lock key for schema creation: any constant unlikely to clash ("llmlens").
_SCHEMA_LOCK_KEY: Final = 0x6C6C6D6C656E73


def _schema_state(conn: Connection) -> tuple[set[str], str | None]:
    tables = set(inspect(conn).get_table_names())
    revision = None
    if "alembic_version" in tables:
        value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        revision = None if value is None else str(value)
    return tables, revision


@contextmanager
def _exclusive(conn: Connection) -> Iterator[None]:
    """One transaction that no other process' schema creation runs alongside."""
    if conn.dialect.name == "sqlite":
        # pysqlite runs DDL outside any transaction of its own; take the write lock first
        # and issue the transaction's statements ourselves.
        dbapi = conn.connection.dbapi_connection
        saved = dbapi.isolation_level  # type: ignore[union-attr]
        dbapi.isolation_level = None  # type: ignore[union-attr]
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
        finally:
            dbapi.isolation_level = saved  # type: ignore[union-attr]
        return
    with conn.begin():
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        yield
