"""Latency histograms: one row per (grain, measure, bucket, key), its bins packed in a blob.

A histogram is a count per log-spaced bin: bin ``i >= 1`` holds ``[FLOOR_MS * GROWTH**(i-1),
FLOOR_MS * GROWTH**i)`` and stands for the harmonic mean of its bounds, which is within
``(GROWTH - 1) / (GROWTH + 1)`` (1.7%) of any value in it: the bound on every percentile's
relative error. Bin 0 holds values below ``FLOOR_MS``; the last bin everything above. It is
stored as ``counts``, a blob (see :func:`encode`). Summing histograms over any range and grouping is adding
counts bin by bin, so percentiles of any selection come from summed bins, within the bins'
relative error.

Why a blob rather than a row per bin: a read's cost is the number of rows it visits. With
a row per bin, a 30-day percentile over a busy store reads keys x days x ~100 bins, and the
bins fill up as traffic grows, so a page got slower with every million calls (1.3-1.5 s
for the latency page at 1M calls). With a row per histogram it reads keys x days rows,
whatever the traffic, and adding their bins in Python is cheaper than letting the
database group a hundred times as many rows.

Writers merge: read the rows a batch touches, add, write back, in the transaction of the
raw insert. On SQLite the writer holds the database's write lock by then (the raw insert
came first), so nobody interleaves. On PostgreSQL, where several collectors write at once,
every merge first takes one transaction-level advisory lock: merges take turns from there
to their commit (a few milliseconds: the raw inserts and sum upserts before it still run
side by side), and each starts from the others' committed counts. No deadlock: a writer
holding the lock needs no other lock a waiting writer holds (histogram rows are written
only under it).
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Iterator, Mapping, Sequence
from operator import add
from typing import Any, Final

from sqlalchemy import Connection

from llmlens.collector.store._tables import rollup_latency
from llmlens.collector.store._write import dumps, pg_arrays, pg_unnest

__all__ = [
    "GROWTH",
    "MAX_BIN",
    "RELATIVE_ERROR",
    "Histogram",
    "HistogramKey",
    "add_blob",
    "bin_of",
    "bin_value",
    "decode",
    "encode",
    "lock_histograms",
    "merge_into_store",
    "merged",
    "new_histogram",
    "percentile_bins",
]

GROWTH: Final = 1.035
FLOOR_MS: Final = 0.01
RELATIVE_ERROR: Final = (GROWTH - 1) / (GROWTH + 1)
_LOG_GROWTH: Final = math.log(GROWTH)
MAX_BIN: Final = int(math.log(1e9 / FLOOR_MS) / _LOG_GROWTH) + 1  # ~11.5 days


def bin_of(ms: float) -> int:
    """The latency bin of a value in milliseconds."""
    if not ms >= FLOOR_MS:  # also NaN
        return 0
    return min(int(math.log(ms / FLOOR_MS) / _LOG_GROWTH) + 1, MAX_BIN)


def bin_value(index: int) -> float:
    """The value bin ``index`` stands for: within RELATIVE_ERROR of anything in it."""
    if index <= 0:
        return 0.0
    low = FLOOR_MS * GROWTH ** (index - 1)
    high = low * GROWTH
    return 2 * low * high / (low + high)


HistogramKey = tuple[int, int, int, int]  # (grain, measure, bucket, key_id): the primary key
Histogram = dict[int, int]  # bin -> count

_SPARSE: Final = 0
_DENSE: Final = 1
_PAIR: Final = struct.Struct("<Hq")
_LOW: Final = struct.Struct("<H")
_ONE_BIN: Final = struct.Struct("<BHq")
_CHUNK: Final = 2000  # keys per read: its key-id list stays well under every driver's parameter limit
_GAP: Final = 8
_MERGE_LOCK: Final = 0x6C6C6D6C656E73  # PostgreSQL advisory lock key of histogram merges ("llmlens")


def encode(bins: Mapping[int, int]) -> bytes:
    """The blob of a histogram (bin -> count), in whichever of two forms is smaller.

    Sparse (``0``, then ``(bin uint16, n int64)`` pairs) suits the few scattered values of
    a minute; dense (``1``, the first bin as uint16, then an int64 count per bin from there)
    suits hours and days, whose bins are mostly filled, and is read and merged at C speed,
    so it is chosen unless it would be over four times the size. All little-endian.
    """
    present = [b for b, n in bins.items() if n]
    if not present:
        return b""
    low = min(present)
    counts = [0] * (max(present) - low + 1)
    for b in present:
        counts[b - low] = bins[b]
    return _pack(low, counts)


def _pack(low: int, counts: list[int]) -> bytes:
    # ``counts``: a count per bin from ``low``; zeros at either end are trimmed here.
    filled = len(counts) - counts.count(0)
    if not filled:
        return b""
    first = next(i for i, n in enumerate(counts) if n)
    last = len(counts) - next(i for i, n in enumerate(reversed(counts)) if n)
    # Dense unless it is over four times the size: dense blobs are packed, merged and read
    # at C speed, sparse ones a pair at a time in Python.
    if (last - first) * 8 + 2 <= 4 * filled * _PAIR.size:
        dense = array("q", counts[first:last])
        if sys.byteorder == "big":
            dense.byteswap()
        return bytes((_DENSE,)) + _LOW.pack(low + first) + dense.tobytes()
    pack = _PAIR.pack
    return bytes((_SPARSE,)) + b"".join(pack(low + i, n) for i, n in enumerate(counts[first:last], first) if n)


def merged(blob: bytes | None, change: Mapping[int, int]) -> bytes:
    """The blob of a stored histogram (None: none yet) plus ``change`` (counts may be
    negative)."""
    if not change:
        return blob or b""
    if not blob and len(change) == 1:
        # A histogram's first value (most minutes hold one per key and measure): one bin,
        # which the dense form stores smallest.
        ((b, n),) = change.items()
        return _ONE_BIN.pack(_DENSE, b, n) if n else b""
    low, high = min(change), max(change)
    if blob and blob[0] == _DENSE:
        start, stored = _dense(blob)
        if low >= start and high < start + len(stored) and min(change.values()) > 0:
            # The usual merge into an hour or a day: new values inside the bins it spans.
            # Its ends stay non-zero and it only gets denser, so it stays this same form,
            # and the counts are added in place without unpacking.
            for b, n in change.items():
                stored[b - start] += n
            if sys.byteorder == "big":
                stored.byteswap()
            return blob[:3] + stored.tobytes()
    dense: array[int] | None = None
    pairs: list[tuple[int, int]] = []
    if blob:
        if blob[0] == _SPARSE:
            pairs = list(_PAIR.iter_unpack(blob[1:]))
            low, high = min(low, pairs[0][0]), max(high, pairs[-1][0])
        else:
            start, dense = _dense(blob)
            low, high = min(low, start), max(high, start + len(dense) - 1)
    counts = [0] * (high - low + 1)
    if dense is not None:
        offset = start - low
        counts[offset:offset + len(dense)] = dense
    for b, n in pairs:
        counts[b - low] += n
    for b, n in change.items():
        counts[b - low] += n
    return _pack(low, counts)


def decode(blob: bytes) -> Iterator[tuple[int, int]]:
    """``(bin, count)`` pairs of a blob, ascending."""
    if not blob:
        return iter(())
    if blob[0] == _SPARSE:
        return _PAIR.iter_unpack(blob[1:])
    low, counts = _dense(blob)
    return ((low + i, n) for i, n in enumerate(counts) if n)


def _dense(blob: bytes) -> tuple[int, array[int]]:
    (low,) = _LOW.unpack_from(blob, 1)
    counts = array("q")
    counts.frombytes(blob[3:])
    if sys.byteorder == "big":
        counts.byteswap()
    return low, counts


def new_histogram() -> list[int]:
    """An empty histogram to add blobs to: a count per bin."""
    return [0] * (MAX_BIN + 1)


def add_blob(into: list[int], blob: bytes) -> None:
    """Add a stored histogram's counts to ``into`` (from :func:`new_histogram`)."""
    if not blob:
        return
    if blob[0] == _SPARSE:
        for b, n in _PAIR.iter_unpack(blob[1:]):
            into[b] += n
        return
    low, counts = _dense(blob)
    high = low + len(counts)
    into[low:high] = map(add, into[low:high], counts)


def merge_into_store(conn: Connection, changes: Mapping[HistogramKey, Histogram]) -> None:
    """Add ``changes`` (counts may be negative: a re-price takes rows out) to the stored
    histograms, in the caller's transaction. A histogram left empty is deleted."""
    if not changes:
        return
    keys = sorted(changes)
    lock_histograms(conn)
    stored: dict[HistogramKey, bytes] = {}
    # One fixed statement with the key ids as a single parameter, run as is: building and
    # compiling a Core select with an expanding IN per run cost more than the reads.
    sqlite = conn.dialect.name == "sqlite"
    sql = _READ_SQLITE if sqlite else _READ_POSTGRES
    for grain, measure, first, last, key_ids in _runs(keys):
        ids = dumps(key_ids) if sqlite else key_ids
        for b, k, blob in conn.exec_driver_sql(sql, (grain, measure, first, last, ids)):
            key = (grain, measure, int(b), int(k))
            if key in changes:
                stored[key] = bytes(blob)
    writes: list[dict[str, Any]] = []
    emptied: list[HistogramKey] = []
    for key in keys:
        counts = merged(stored.get(key), changes[key])
        if counts:
            writes.append({"grain": key[0], "measure": key[1], "bucket": key[2], "key_id": key[3], "counts": counts})
        elif key in stored:
            emptied.append(key)
    if writes:
        _upsert(conn, writes)
    if emptied:
        marker = "?" if conn.dialect.name == "sqlite" else "%s"
        conn.exec_driver_sql(f"DELETE FROM rollup_latency WHERE grain = {marker} AND measure = {marker} "
                             f"AND bucket = {marker} AND key_id = {marker}", emptied)


_READ_SQLITE: Final = ("SELECT bucket, key_id, counts FROM rollup_latency WHERE grain = ? AND measure = ? "
                       "AND bucket >= ? AND bucket <= ? AND key_id IN (SELECT value FROM json_each(?))")
_READ_POSTGRES: Final = ("SELECT bucket, key_id, counts FROM rollup_latency WHERE grain = %s AND measure = %s "
                         "AND bucket >= %s AND bucket <= %s AND key_id = ANY(%b)")


def lock_histograms(conn: Connection) -> None:
    """Take the histogram writers' lock (PostgreSQL), held to the end of the transaction.

    Every writer of ``rollup_latency`` takes it (merges, prunes). Row locks would not do: a
    histogram a concurrent writer is about to create has no row to lock yet.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_MERGE_LOCK,))


def _runs(keys: Sequence[HistogramKey]) -> Iterator[tuple[int, int, int, int, list[int]]]:
    """Sorted keys as (grain, measure, first bucket, last bucket, key ids) ranges.

    A range of the primary key is what both databases read fastest (a list of row values
    is not: SQLite scans the table for it). A batch usually covers a few minutes, so a
    range per grain and measure; buckets further apart than ``_GAP`` grains start a new
    range, so a batch of scattered old rows (a re-price) never reads the days between them.
    """
    start = 0
    for i in range(1, len(keys) + 1):
        if i < len(keys):
            g, m, b, _ = keys[i]
            pg, pm, pb, _ = keys[i - 1]
            if (g, m) == (pg, pm) and b - pb <= _GAP * g and i - start < _CHUNK:
                continue
        run = keys[start:i]
        yield run[0][0], run[0][1], run[0][2], run[-1][2], sorted({k for _, _, _, k in run})
        start = i


_COLUMNS: Final = ("grain", "measure", "bucket", "key_id", "counts")
_UPSERT_POSTGRES: Final = (f"INSERT INTO rollup_latency ({', '.join(_COLUMNS)}) "
                           f"SELECT * FROM {pg_unnest(rollup_latency, _COLUMNS)} "
                           "ON CONFLICT (grain, measure, bucket, key_id) DO UPDATE SET counts = excluded.counts")


def _upsert(conn: Connection, writes: Sequence[dict[str, Any]]) -> None:
    # Straight to the driver: this runs for every batch the store takes.
    if conn.dialect.name == "postgresql":
        columns = [[w[name] for w in writes] for name in _COLUMNS]
        conn.exec_driver_sql(_UPSERT_POSTGRES, pg_arrays(rollup_latency, _COLUMNS, columns))
        return
    marker = "?"
    conn.exec_driver_sql(
        f"INSERT INTO rollup_latency (grain, measure, bucket, key_id, counts) "
        f"VALUES ({marker}, {marker}, {marker}, {marker}, {marker}) "
        f"ON CONFLICT (grain, measure, bucket, key_id) DO UPDATE SET counts = excluded.counts",
        [(w["grain"], w["measure"], w["bucket"], w["key_id"], w["counts"]) for w in writes],
    )


def percentile_bins(hist: Sequence[int], quantiles: Sequence[float]) -> tuple[int, list[int | None]]:
    """(count, the nearest-rank bin of each quantile): the first bin whose cumulative count
    reaches ``q * count``. ``hist`` holds a count per bin (:func:`new_histogram`)."""
    total = sum(hist)
    found: list[int | None] = [None] * len(quantiles)
    if total <= 0:
        return total, found
    # Integer arithmetic (q in parts per ten thousand) so 0.07 * 100 never rounds up a rank.
    targets = [total * round(q * 10000) for q in quantiles]
    pending = sorted(range(len(targets)), key=lambda i: targets[i])
    position = 0
    cumulative = 0
    for b, n in enumerate(hist):
        if not n:
            continue
        cumulative += n
        while position < len(pending) and cumulative * 10000 >= targets[pending[position]]:
            found[pending[position]] = b
            position += 1
        if position == len(pending):
            break
    return total, found
