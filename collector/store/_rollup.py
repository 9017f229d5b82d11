"""Rollups on the write side: what a batch of rows adds to the pre-aggregated tables.

A batch is aggregated in Python first (one entry per minute and dimension key, then per
hour and day), so the database sees one upsert row per (grain, bucket, key) and one
histogram per (grain, measure, bucket, key), whatever the batch size. Sum upserts add
(``x = x + excluded.x``) and histograms are merged under a lock (``_histogram``), so
writers on several processes or collectors never lose an increment, and they run in the
transaction that inserted the rows, from the rows actually inserted, so a duplicate adds
nothing.

Minute rollups are written that way always. The coarse grains (hour, six hours, day) of
recent minutes are not: :func:`fold` adds whole hours of committed minute rollups into
them, about once an hour, and moves the store mark ``coarse_rollups_to`` past them. A
batch writes coarse rollups itself only for minutes before the mark (late rows), so every
row is counted once at every grain, and reads take the coarse grains up to the mark and
minutes after it (``_plan``). Why: a batch of live traffic touches each of its keys'
minutes once, but their hours, six hours and days as well, four times the upserts and
histogram merges; most of a write's cost was there. Folding an hour of minutes costs
about as much as one batch's coarse writes, once an hour.

The mark moves only under an exclusive lock that every rollup writer takes shared before
reading it (PostgreSQL: an advisory lock; SQLite: the database's write lock), so a writer
sees either the old mark and commits before the fold reads the minutes, or the new one.

Latency values are counted in the log-spaced bins of ``_histogram``.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from llmlens.collector.store._histogram import (
    GROWTH,
    RELATIVE_ERROR,
    Histogram,
    HistogramKey,
    bin_of,
    bin_value,
    decode,
    merge_into_store,
)
from llmlens.collector.store._marks import FOLDED_TO, advance_mark, read_mark
from llmlens.collector.store._tables import ROW_COLUMNS, rollup_keys, rollup_latency, rollups
from llmlens.collector.store._write import pg_arrays, pg_unnest, take_write_lock

__all__ = [
    "DAY",
    "GRAINS",
    "GROWTH",
    "HOUR",
    "KEY_COLUMNS",
    "MEASURES",
    "MINUTE",
    "RELATIVE_ERROR",
    "SIX_HOURS",
    "SUM_COLUMNS",
    "Delta",
    "KeyCache",
    "bin_of",
    "bin_value",
    "fold",
    "fold_due",
    "folded_to",
]

MINUTE: Final = 60
HOUR: Final = 3600
SIX_HOURS: Final = 6 * 3600
DAY: Final = 86400
# Six hours sits between hour and day because 7 to 30-day charts draw 1 to 6-hour buckets
# and 30-day edges are up to 23 hours: it cuts what those read sixfold for one more upsert.
GRAINS: Final = (MINUTE, HOUR, SIX_HOURS, DAY)

KEY_COLUMNS: Final = ("service_name", "task", "provider", "request_model", "response_model", "prompt_name",
                      "prompt_version", "status", "failure_reason", "final", "streaming")
SUM_COLUMNS: Final = ("requests", "retried_calls", "unpriced_requests", "cost_usd", "input_tokens", "output_tokens",
                      "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "call_ms", "request_ms",
                      "ttft_ms", "ttft_requests")
MEASURES: Final = {"call": 0, "request": 1, "ttft": 2}

Key = tuple[Any, ...]
_N_SUMS: Final = len(SUM_COLUMNS)
_MINUTE_ONLY: Final = (MINUTE,)


@dataclass
class Delta:
    """What some rows add to (or, with ``sign=-1``, take from) the rollups, per minute.

    Dimension keys are numbered as they are first seen, so the per-row dictionaries hash
    small tuples of integers rather than the eleven dimension values each time.
    """

    key_list: list[Key] = field(default_factory=list)
    key_index: dict[Key, int] = field(default_factory=dict)
    sums: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    bins: defaultdict[tuple[int, int, int, int], int] = field(default_factory=lambda: defaultdict(int))

    @classmethod
    def of(cls, rows: Iterable[Mapping[str, Any]], sign: int = 1) -> Delta:
        """The contribution of ``rows`` (``sign=-1``: its removal)."""
        return cls().add(rows, sign)

    def add(self, rows: Iterable[Mapping[str, Any]], sign: int = 1) -> Delta:
        """Add the contribution of more rows (or, with ``sign=-1``, their removal)."""
        for row in rows:
            try:
                self._add(row, sign)
            except KeyError:  # a hand-built row with only some columns
                self._add({col: row.get(col) for col in ROW_COLUMNS}, sign)
        return self

    def _add(self, row: Mapping[str, Any], sign: int) -> None:
        # The hot path of every write: plain indexing and small integer tuples.
        minute = int(row["start_time"].timestamp()) // MINUTE * MINUTE
        final = bool(row["final"])
        streaming = bool(row["streaming"])
        key = (row["service_name"], row["task"], row["provider"], row["request_model"], row["response_model"],
               row["prompt_name"], row["prompt_version"], row["status"], row["failure_reason"], final, streaming)
        k = self.key_index.get(key)
        if k is None:
            k = self.key_index[key] = len(self.key_list)
            self.key_list.append(key)
        sums = self.sums.get((minute, k))
        if sums is None:
            sums = self.sums[(minute, k)] = [0] * _N_SUMS
        bins = self.bins
        sums[0] += sign
        cost = row["cost_usd"]
        if cost is None:
            sums[2] += sign
        else:
            sums[3] += sign * cost
        value = row["input_tokens"]
        if value:
            sums[4] += sign * value
        value = row["output_tokens"]
        if value:
            sums[5] += sign * value
        value = row["cache_read_tokens"]
        if value:
            sums[6] += sign * value
        value = row["cache_write_tokens"]
        if value:
            sums[7] += sign * value
        value = row["reasoning_tokens"]
        if value:
            sums[8] += sign * value
        duration = row["duration_ms"]
        sums[10] += sign * duration
        duration_bin = bin_of(duration)
        bins[(minute, k, 1, duration_bin)] += sign
        if final:
            if (row["attempt"] or 1) > 1:
                sums[1] += sign
            call = row["call_duration_ms"]
            if call is None:
                call = duration
            sums[9] += sign * call
            # A call of one attempt lasts as long as its request: the same bin, once computed.
            bins[(minute, k, 0, duration_bin if call == duration else bin_of(call))] += sign
        ttft = row["time_to_first_token_ms"]
        if streaming and ttft is not None:
            sums[11] += sign * ttft
            sums[12] += sign
            bins[(minute, k, 2, bin_of(ttft))] += sign

    def keys(self) -> list[Key]:
        return self.key_list

    def sum_rows(self, ids: Mapping[Key, int], ordered: bool, folded: int | None = None) -> list[tuple[Any, ...]]:
        """Upsert parameters for ``rollups``: minutes, and the coarse grains of minutes
        before ``folded`` (None: of every minute; see :func:`fold`). ``ordered`` sorts them,
        so concurrent writers lock rows in one order (PostgreSQL; SQLite writers take turns)."""
        rows: list[tuple[Any, ...]] = []
        coarser: dict[tuple[int, int, int], list[float]] = {}
        id_of = [ids[key] for key in self.key_list]
        for (minute, k), sums in self.sums.items():
            if not any(sums):
                continue
            key_id = id_of[k]
            rows.append((MINUTE, minute, key_id, *sums))
            if folded is not None and minute >= folded:
                continue
            for grain in GRAINS[1:]:
                slot = (grain, minute // grain * grain, key_id)
                total = coarser.get(slot)
                if total is None:
                    coarser[slot] = list(sums)
                else:
                    for i, value in enumerate(sums):
                        total[i] += value
        rows += [(*slot, *values) for slot, values in coarser.items() if any(values)]
        return sorted(rows) if ordered else rows

    def histograms(self, ids: Mapping[Key, int], folded: int | None = None) -> dict[HistogramKey, Histogram]:
        """What the rows add to ``rollup_latency``, per (grain, measure, bucket, key id):
        bin -> count, at the grains :meth:`sum_rows` writes."""
        out: dict[HistogramKey, Histogram] = {}
        id_of = [ids[key] for key in self.key_list]
        for (minute, k, measure, index), n in self.bins.items():
            if not n:
                continue
            key_id = id_of[k]
            for grain in GRAINS if folded is None or minute < folded else _MINUTE_ONLY:
                slot = (grain, measure, minute // grain * grain, key_id)
                hist = out.get(slot)
                if hist is None:
                    out[slot] = {index: n}
                else:
                    hist[index] = hist.get(index, 0) + n
        return out


def key_hash(key: Key) -> str:
    """A fixed-width identity for a combination of dimension values (NULLs included)."""
    return hashlib.sha1(json.dumps(key, separators=(",", ":")).encode(), usedforsecurity=False).hexdigest()


class KeyCache:
    """Dimension keys to ``rollup_keys`` ids, remembered per store once committed."""

    def __init__(self) -> None:
        self._ids: dict[Key, int] = {}

    def resolve(self, conn: Connection, keys: Iterable[Key]) -> dict[Key, int]:
        """Ids of ``keys``, creating the missing ones on ``conn`` (not yet remembered: the
        transaction may roll back; call :meth:`remember` after it commits)."""
        ids = self._ids
        found = {key: ids[key] for key in keys if key in ids}
        missing = {key_hash(key): key for key in keys if key not in ids}
        if missing:
            values = [{"key_hash": h, **dict(zip(KEY_COLUMNS, key, strict=True))}
                      for h, key in sorted(missing.items())]  # one lock order for all writers
            dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
            conn.execute(dialect.insert(rollup_keys).on_conflict_do_nothing(index_elements=["key_hash"]), values)
            c = rollup_keys.c
            for key_id, digest in conn.execute(select(c.id, c.key_hash).where(c.key_hash.in_(list(missing)))):
                found[missing[digest]] = int(key_id)
        return found

    def remember(self, ids: Mapping[Key, int]) -> None:
        self._ids.update(ids)


def _upsert_sql(table: str, keys: tuple[str, ...], values: tuple[str, ...], dialect: str) -> str:
    marker = "?" if dialect == "sqlite" else "%s"
    columns = (*keys, *values)
    updates = ", ".join(f"{v} = {table}.{v} + excluded.{v}" for v in values)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(marker for _ in columns)}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}")


_SUM_KEYS: Final = ("grain", "bucket", "key_id")
_UPSERT_POSTGRES: Final = (
    f"INSERT INTO rollups ({', '.join((*_SUM_KEYS, *SUM_COLUMNS))}) "
    f"SELECT * FROM {pg_unnest(rollups, (*_SUM_KEYS, *SUM_COLUMNS))} ON CONFLICT ({', '.join(_SUM_KEYS)}) "
    "DO UPDATE SET " + ", ".join(f"{name} = rollups.{name} + excluded.{name}" for name in SUM_COLUMNS)
)


def apply(conn: Connection, delta: Delta, keys: KeyCache) -> dict[Key, int]:
    """Add ``delta`` to the rollups on ``conn``; return the key ids it used (to remember
    after commit). Rows a negative delta empties are deleted."""
    if not delta.sums:
        return {}
    dialect = conn.dialect.name
    folded = _enter(conn)
    ids = keys.resolve(conn, delta.keys())
    ordered = dialect != "sqlite"
    sums = delta.sum_rows(ids, ordered, folded)
    if dialect == "postgresql":  # a batch touches hundreds of rollup rows (four grains)
        columns = [list(column) for column in zip(*sums, strict=True)]
        conn.exec_driver_sql(_UPSERT_POSTGRES, pg_arrays(rollups, (*_SUM_KEYS, *SUM_COLUMNS), columns))
    else:
        conn.exec_driver_sql(_upsert_sql("rollups", _SUM_KEYS, SUM_COLUMNS, dialect), sums)
    if any(row[3] < 0 for row in sums):
        marker = "?" if dialect == "sqlite" else "%s"
        conn.exec_driver_sql(f"DELETE FROM rollups WHERE grain = {marker} AND bucket = {marker} "
                             f"AND key_id = {marker} AND requests = 0", [row[:3] for row in sums])
    # After the sums: on SQLite this transaction holds the write lock by now (see _histogram).
    merge_into_store(conn, delta.histograms(ids, folded))
    return ids


# --- Folding minutes into the coarse grains ------------------------------------------------

# An hour is folded once it has been over for this long: rows arrive seconds to minutes
# late (export batching, retries, a spool replaying); later ones are written to the coarse
# grains by their batch.
FOLD_LAG: Final = HOUR
_FOLD_LOCK: Final = 0x6C6C6D666F6C64  # PostgreSQL advisory lock key of the fold ("llmfold")


def folded_to(conn: Connection) -> int | None:
    """The mark: coarse rollups hold every minute before it and none from it on. None: an
    older store, whose writers kept every grain (a first :func:`fold` sets it)."""
    return read_mark(conn, FOLDED_TO)


def _take_fold_lock(conn: Connection, *, exclusive: bool) -> None:
    # Until this transaction ends. SQLite has one lock for both: the database's write lock.
    if conn.dialect.name == "postgresql":
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        conn.exec_driver_sql(f"SELECT {function}(%s)", (_FOLD_LOCK,))
    else:
        take_write_lock(conn)


def _enter(conn: Connection) -> int | None:
    # A rollup writer: hold off any fold until this transaction ends, then read the mark.
    _take_fold_lock(conn, exclusive=False)
    return folded_to(conn)


def fold_due(folded: int | None) -> float:
    """When the next fold has an hour to do (epoch seconds; a store without the mark: now)."""
    return 0.0 if folded is None else folded + FOLD_LAG + HOUR


def fold(conn: Connection, now: float) -> int:
    """Add the minute rollups of every whole hour ended ``FOLD_LAG`` before ``now`` and not
    yet folded into the coarse grains, and move the mark past them; return the mark.

    Safe to run from any number of processes at once: they take turns, and each folds only
    what the mark says is left. Writers wait for a fold (it holds their lock exclusively).
    """
    _take_fold_lock(conn, exclusive=True)
    target = int(now - FOLD_LAG) // HOUR * HOUR
    folded = folded_to(conn)
    if folded is None:
        # Writers so far kept every grain: nothing is left to fold, only the mark to set,
        # past the newest minute, so no minute counted already is ever added again.
        newest = conn.execute(select(rollups.c.bucket).where(rollups.c.grain == MINUTE)
                              .order_by(rollups.c.bucket.desc()).limit(1)).scalar()
        mark = target if newest is None else max(target, int(newest) // HOUR * HOUR + HOUR)
        advance_mark(conn, FOLDED_TO, mark)
        return mark
    if target <= folded:
        return folded
    _fold_sums(conn, folded, target)
    _fold_histograms(conn, folded, target)
    advance_mark(conn, FOLDED_TO, target)
    return target


def _fold_sums(conn: Connection, start: int, end: int) -> None:
    marker = "?" if conn.dialect.name == "sqlite" else "%s"
    columns = ", ".join(SUM_COLUMNS)
    sums = ", ".join(f"SUM({name})" for name in SUM_COLUMNS)
    updates = ", ".join(f"{name} = rollups.{name} + excluded.{name}" for name in SUM_COLUMNS)
    for grain in GRAINS[1:]:
        # (SQLite reads ON CONFLICT after INSERT ... SELECT only when the SELECT has a
        # WHERE, as this one does.) Sorted: the lock order PostgreSQL's writers use.
        conn.exec_driver_sql(
            f"INSERT INTO rollups (grain, bucket, key_id, {columns}) "
            f"SELECT {grain}, bucket / {grain} * {grain} AS coarse, key_id, {sums} FROM rollups "
            f"WHERE grain = {MINUTE} AND bucket >= {marker} AND bucket < {marker} "
            f"GROUP BY coarse, key_id ORDER BY coarse, key_id "
            f"ON CONFLICT (grain, bucket, key_id) DO UPDATE SET {updates}",
            (start, end),
        )


def _fold_histograms(conn: Connection, start: int, end: int) -> None:
    c = rollup_latency.c
    changes: dict[HistogramKey, Histogram] = {}
    minutes = conn.execute(select(c.measure, c.bucket, c.key_id, c.counts)
                           .where(c.grain == MINUTE, c.bucket >= start, c.bucket < end))
    for measure, bucket, key_id, blob in minutes:
        pairs = list(decode(bytes(blob)))
        for grain in GRAINS[1:]:
            slot = (grain, int(measure), int(bucket) // grain * grain, int(key_id))
            hist = changes.get(slot)
            if hist is None:
                changes[slot] = dict(pairs)
            else:
                for index, n in pairs:
                    hist[index] = hist.get(index, 0) + n
    merge_into_store(conn, changes)
