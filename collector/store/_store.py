""":class:`Store`, a handle on one database, and :func:`open_store`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, bindparam, func, select, text, update

from llmlens.collector.store import _names, _rollup, _write
from llmlens.collector.store._engine import ensure_schema, get_engine, safe_url
from llmlens.collector.store._errors import StoreError, StoreUnavailable, translated
from llmlens.collector.store._tables import SpanRow, llm_spans

__all__ = ["Store", "open_store"]

_t = llm_spans.c
_log = logging.getLogger("llmlens.store")


class Store:
    """A handle on one database: schema checked once, rows written in bulk.

    >>> store = open_store("sqlite:///llmlens.db")  # doctest: +SKIP
    >>> store.insert_rows([row])  # doctest: +SKIP
    1
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._sql = _write.insert_sql(self.dialect)
        self._keys = _rollup.KeyCache()
        self._clock = clock
        self._fold_due = _rollup.fold_due(None)

    @property
    def url(self) -> str:
        return safe_url(self.engine)

    def insert_rows(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        names: Sequence[_names.NameLike] = (),
        unresolved: Sequence[SpanRow] = (),
    ) -> int:
        """Insert rows in one transaction; return how many were new (duplicates are skipped).

        ``names`` are spans that name the work beneath them: they are kept, and give their
        name to stored rows of their trace that started within them and have no task.
        ``unresolved`` are rows among ``rows`` whose ancestors the caller could not walk:
        they take the innermost stored name holding their start. See ``_names``.

        Raises :class:`StoreUnavailable` when the database cannot be reached; then
        nothing of the batch was committed and the caller may retry it whole.
        """
        if not rows and not names:
            return 0
        self._fold_if_due()
        # Built before the transaction, so a writer holds SQLite's one write lock only for
        # the statements (see _write.prepare). The delta assumes every row is new, as
        # nearly always; the rows actually inserted replace it when some were not. Rows
        # named from the store (unresolved) get their task inside the transaction: both
        # are built after that then.
        dialect = self.engine.dialect.name
        batch = _write.prepare(dialect, rows) if rows and not unresolved else None
        expected = _rollup.Delta.of(rows) if not unresolved else None
        with translated("cannot write to", self.url), self.engine.begin() as conn:
            if names or unresolved:
                _names.take_turns(conn, {n.trace_id for n in names} | {r["trace_id"] for r in unresolved})
            moved = []
            if names:
                _names.save_names(conn, names)
                # Before this batch's rows go in: those were named from what is known now.
                moved = _names.fill_tasks(conn, names)
            if unresolved:
                _names.name_rows(conn, unresolved)
            if rows and batch is None:
                batch = _write.prepare(dialect, rows)
            fresh = _write.insert_rows(conn, self._sql, batch) if batch is not None else []
            delta = expected if expected is not None and len(fresh) == len(rows) else _rollup.Delta.of(fresh)
            if moved:
                # A row given its task moves from the "no task" rollups to its task's.
                delta.add([old for old, _task in moved], -1)
                delta.add([{**old, "task": task} for old, task in moved], 1)
            ids = _rollup.apply(conn, delta, self._keys)
        self._keys.remember(ids)
        return len(fresh)

    def _fold_if_due(self) -> None:
        # Before a batch rather than after: a new store's first fold sets the mark, and
        # the batch's minutes after it are then written as minutes only.
        if self._clock() < self._fold_due:
            return
        try:
            self.fold_rollups()
        except StoreUnavailable:
            raise  # the batch could not be written either: the caller retries it whole
        except StoreError as exc:
            # Not this batch's failure: the fold is tried again with the next batch.
            _log.warning("llmlens: folding minute rollups into hours failed, retrying later: %s", exc)

    def fold_rollups(self, now: float | None = None) -> int:
        """Fold the minute rollups of hours ended over an hour before ``now`` (default: the
        store's clock) into the hour, six-hour and day rollups; return the mark (epoch
        seconds) before which they hold every minute. Writes call it about once an hour;
        several processes may call it at once."""
        with translated("cannot write to", self.url), self.engine.begin() as conn:
            mark = _rollup.fold(conn, self._clock() if now is None else now)
        self._fold_due = _rollup.fold_due(mark)
        return mark

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def parent_links(self, trace_ids: Iterable[str]) -> set[tuple[str, str]]:
        """(trace_id, parent_span_id) of the stored rows of these traces that have a parent."""
        with translated("cannot read from", self.url), self.engine.connect() as conn:
            return _write.parent_links(conn, trace_ids)

    def count_rows(self) -> int:
        """How many raw rows the store holds."""
        with translated("cannot read from", self.url), self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(llm_spans)).scalar_one())

    def fetch_rows(self, limit: int | None = None, **equals: Any) -> list[dict[str, Any]]:
        """Rows as dicts, oldest first, optionally filtered by column equality (tests, CLI)."""
        query = select(llm_spans)
        for column, value in equals.items():
            query = query.where(llm_spans.c[column] == value)
        query = query.order_by(_t.start_time, _t.id)
        if limit is not None:
            query = query.limit(limit)
        with translated("cannot read from", self.url), self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def timings_of_traces(self, trace_ids: Iterable[str]) -> list[dict[str, Any]]:
        """``id``, ``trace_id`` and the time columns of every row of these traces."""
        columns = (_t.id, _t.trace_id, _t.start_time, _t.duration_ms, _t.time_to_first_token_ms,
                   _t.call_duration_ms)
        with translated("cannot read from", self.url), self.engine.connect() as conn:
            rows = conn.execute(select(*columns).where(_t.trace_id.in_(sorted(set(trace_ids))))).all()
        return [dict(row._mapping) for row in rows]

    def retime_rows(self, changes: Sequence[Mapping[str, Any]]) -> int:
        """Set ``start_time``, ``duration_ms``, ``time_to_first_token_ms`` and
        ``call_duration_ms`` of rows by ``id`` (each change names all five), moving their
        share of the rollups along, in one transaction.

        ``llmlens demo`` uses it to move a run of seconds into days of history.
        """
        if not changes:
            return 0
        statement = update(llm_spans).where(_t.id == bindparam("row_id")).values(
            start_time=bindparam("new_start"), duration_ms=bindparam("new_duration"),
            time_to_first_token_ms=bindparam("new_ttft"), call_duration_ms=bindparam("new_call_duration"))
        params = [{"row_id": c["id"], "new_start": c["start_time"], "new_duration": c["duration_ms"],
                   "new_ttft": c["time_to_first_token_ms"], "new_call_duration": c["call_duration_ms"]}
                  for c in changes]
        by_id = {c["id"]: c for c in changes}
        with translated("cannot write to", self.url), self.engine.begin() as conn:
            before = [dict(r._mapping) for r in conn.execute(select(llm_spans).where(_t.id.in_(list(by_id))))]
            after = [{**row, **{k: by_id[row["id"]][k] for k in _TIMING}} for row in before]
            conn.execute(statement, params)
            ids = _rollup.apply(conn, _rollup.Delta.of(before, -1).add(after), self._keys)
        self._keys.remember(ids)
        return len(params)


_TIMING = ("start_time", "duration_ms", "time_to_first_token_ms", "call_duration_ms")


def open_store(url: str | None = None, *, create: bool = True, clock: Callable[[], float] = time.time) -> Store:
    """Open the store at ``url`` (or ``LLMLENS_DB_URL``), creating an empty one's tables.
    ``clock`` (epoch seconds) decides when minute rollups are folded into hours.

    Raises :class:`StoreOutdated` with the ``llmlens db upgrade`` hint for an older
    schema, and :class:`StoreUnavailable` when the database cannot be reached.
    """
    engine = get_engine(url)
    if create:
        ensure_schema(engine)
    return Store(engine, clock=clock)
