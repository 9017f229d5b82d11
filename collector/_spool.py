"""A bounded, durable on-disk spool: what cannot be written to the database now is written later.

Both doors into the store use it: the embedded exporter when its database is unreachable,
and the collector's writer when the database behind it is. They spool the same thing, an
OTLP ``ExportTraceServiceRequest`` body (see :func:`pack`), and replay it through the same
decode -> normalize -> price -> insert path as a live batch. Spooled bodies rather than
normalized rows because a body is what the collector already holds, its format is a public
specification that does not change with our schema (a spool written before an upgrade
replays after it), and replay is rare enough that decoding again costs nothing that matters.
Replay is idempotent: rows are unique on (trace_id, span_id), so a record replayed twice
(a crash between commit and delete) is one row.

On disk, a spool directory holds segment files, appended to and never rewritten::

    <dir>/target                          the database it belongs to, for humans
    <dir>/replay.lock                     flock: one replayer at a time, across processes
    <dir>/00001764547200123456789-4242-0.seg
          record = magic "LLS1" | length (u32 LE) | crc32 (u32 LE) | payload

* :meth:`Spool.append` writes one record and ``fdatasync``\\ s it before returning, so a
  caller may acknowledge the batch: a crash or restart loses nothing appended.
* Each process appends to a segment of its own, holding an exclusive ``flock`` on it while
  it is active. A replayer skips segments it cannot lock (another live process is still
  appending), so a segment is read only once it is sealed or its writer has died.
* :meth:`Spool.replay` hands records to a handler oldest first and deletes a segment only
  once every record in it was handled (committed); a handler error stops the replay, and
  the next one starts at the first record not handled.
* A torn or corrupt record (a crash mid-append, a bad disk) is counted in
  :attr:`Spool.corrupt` and skipped; it never stops replay of the records after it.
* The total size of the segments is capped (``max_bytes``): past it :meth:`append` raises
  :class:`SpoolFull` and the caller counts the batch as dropped (cause ``spool_full``). A
  write failing for lack of disk space raises it too, with cause ``disk_full``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import itertools
import logging
import os
import re
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

logger = logging.getLogger("llmlens")

DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
DEFAULT_SEGMENT_BYTES: Final = 8 * 1024 * 1024
_MAGIC: Final = b"LLS1"
_HEADER: Final = struct.Struct("<4sII")
_SUFFIX: Final = ".seg"
_PROTOBUF_TAG: Final = b"P"
_JSON_TAG: Final = b"J"
PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"


@dataclass(frozen=True)
class SpoolSettings:
    """Where the spool of one database lives and how large it may grow (0 bytes: no spool)."""

    directory: Path
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def resolve(cls, db_url: str, directory: str | Path | None = None,
                max_bytes: int | None = None) -> SpoolSettings:
        """Explicit values over ``LLMLENS_SPOOL_DIR`` / ``LLMLENS_SPOOL_MAX_BYTES`` over defaults.

        The default directory is ``$LLMLENS_HOME/spool`` (``~/.llmlens/spool``). Each
        database gets a subdirectory of its own, so a spool is only ever replayed into the
        database its records were meant for, whoever (embedded exporter or collector) wrote them.
        """
        env = os.environ
        if directory is None:
            directory = env.get("LLMLENS_SPOOL_DIR") or None
        if directory is None:
            home = env.get("LLMLENS_HOME") or Path.home() / ".llmlens"
            directory = Path(home) / "spool"
        if max_bytes is None:
            raw = env.get("LLMLENS_SPOOL_MAX_BYTES", "").strip()
            try:
                max_bytes = int(raw) if raw else DEFAULT_MAX_BYTES
            except ValueError:
                raise ValueError(f"LLMLENS_SPOOL_MAX_BYTES must be a number of bytes, got {raw!r}") from None
        if max_bytes < 0:
            raise ValueError("the spool's size limit cannot be negative")
        return cls(Path(directory).expanduser() / spool_key(db_url), max_bytes)

    def open(self, target: str = "") -> Spool | None:
        """The spool, or None when it is disabled (``max_bytes`` 0)."""
        return Spool(self.directory, max_bytes=self.max_bytes, target=target) if self.max_bytes else None


def spool_key(db_url: str) -> str:
    """A directory name for the database at ``db_url`` (its password left out)."""
    url = re.sub(r"://([^:/@]*):[^@]*@", r"://\1@", db_url)
    if url.startswith("sqlite") and "///" in url:
        prefix, path = url.split("///", 1)
        if path and not path.startswith((":memory:", "file:")):
            url = f"{prefix}///{os.path.abspath(os.path.expanduser(path))}"
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    kind = url.split(":", 1)[0].split("+", 1)[0]
    return f"{kind}-{hashlib.sha256(url.encode()).hexdigest()[:16]}"


class SpoolFull(Exception):
    """The record was not spooled: the spool is at its cap, or the disk is full (``cause``)."""

    def __init__(self, message: str, cause: str = "spool_full") -> None:
        super().__init__(message)
        self.cause = cause


def pack(media_type: str, body: bytes) -> bytes:
    """A spool record for an OTLP request body of ``media_type`` (protobuf or JSON)."""
    return (_JSON_TAG if media_type == JSON else _PROTOBUF_TAG) + body


def unpack(record: bytes) -> tuple[str, bytes]:
    """(media type, body) of a record made by :func:`pack`."""
    return (JSON if record[:1] == _JSON_TAG else PROTOBUF), record[1:]


@dataclass
class ReplayResult:
    """What one :meth:`Spool.replay` did."""

    replayed: int = 0  # records handed to the handler that returned normally
    corrupt: int = 0  # torn or damaged records skipped
    busy: bool = False  # another process holds the replay lock: nothing was done
    stopped: bool = False  # should_stop() ended it early; the rest waits for the next replay


_live: weakref.WeakSet[Spool] = weakref.WeakSet()
_sequence = itertools.count()


class Spool:
    """One spool directory.

    >>> spool = Spool(Path("/var/lib/llmlens/spool"), max_bytes=256 << 20)  # doctest: +SKIP
    >>> spool.append(pack("application/x-protobuf", body))  # durable once this returns  # doctest: +SKIP
    >>> spool.replay(lambda record: ingest(record))  # doctest: +SKIP
    ReplayResult(replayed=1, corrupt=0, busy=False)
    """

    def __init__(self, directory: Path | str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES, target: str = "") -> None:
        if max_bytes < 1:
            raise ValueError("the spool's max_bytes must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if target:
            marker = self.directory / "target"
            if not marker.exists():
                marker.write_text(target + "\n")
        self.max_bytes = max_bytes
        self.segment_bytes = max(1024, min(segment_bytes, max_bytes))
        self.corrupt = 0  # records found torn or damaged and skipped, since this object was made
        self._lock = threading.Lock()
        self._fd: int | None = None  # the active segment this process appends to
        self._active: Path | None = None
        self._active_size = 0
        self._finalizer: weakref.finalize[[int], Spool] | None = None
        self._resume: dict[str, int] = {}  # segment name -> offset of its first unhandled record
        self._bytes = 0
        self._records = 0
        self._rescan()
        _live.add(self)

    # --- state -----------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Bytes of spooled records (all processes' segments, as of the last scan)."""
        return self._bytes

    @property
    def records(self) -> int:
        """Records waiting to be replayed (as of the last scan, plus this process' appends)."""
        return self._records

    def _segments(self) -> list[Path]:
        try:
            names = sorted(e.name for e in os.scandir(self.directory) if e.name.endswith(_SUFFIX))
        except FileNotFoundError:
            return []
        return [self.directory / name for name in names]

    def _rescan(self, *, count_records: bool = True) -> None:
        total = records = 0
        for path in self._segments():
            start = self._resume.get(path.name, 0)
            try:
                total += path.stat().st_size - start
                if count_records:
                    records += _count_frames(path, start)
            except FileNotFoundError:  # replayed and deleted meanwhile
                continue
        self._bytes = total
        if count_records:
            self._records = records

    # --- appending -------------------------------------------------------------------------

    def append(self, record: bytes) -> None:
        """Write ``record`` durably (fsynced before returning).

        Raises :class:`SpoolFull` when it would take the spool past ``max_bytes`` or the
        disk has no room for it; nothing of it is then left in the spool.
        """
        frame = _HEADER.pack(_MAGIC, len(record), zlib.crc32(record)) + record
        with self._lock:
            if self._bytes + len(frame) > self.max_bytes:
                # Another process may have replayed since the last look (sizes only: cheap).
                self._rescan(count_records=False)
                if self._bytes + len(frame) > self.max_bytes:
                    raise SpoolFull(f"the spool at {self.directory} is full ({self.max_bytes} bytes)")
            try:
                if self._fd is None or (self._active_size and self._active_size + len(frame) > self.segment_bytes):
                    self._seal()
                    self._open_segment()
                assert self._fd is not None
                self._write(self._fd, frame)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise SpoolFull(f"no space left for the spool at {self.directory}", "disk_full") from exc
                raise
            self._active_size += len(frame)
            self._bytes += len(frame)
            self._records += 1

    def _write(self, fd: int, frame: bytes) -> None:
        view = memoryview(frame)
        written = 0
        try:
            while written < len(frame):
                written += os.write(fd, view[written:])
            os.fdatasync(fd)
        except OSError:
            # Take a partial record back out, so the segment ends on a whole record.
            try:
                os.ftruncate(fd, self._active_size)
            except OSError:
                pass  # the torn tail is detected and skipped at replay
            raise

    def _open_segment(self) -> None:
        name = f"{time.time_ns():023d}-{os.getpid()}-{next(_sequence)}{_SUFFIX}"
        # Locked under a name replay ignores, then renamed: a replayer never sees it unlocked.
        temporary = self.directory / f".{name}.new"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(temporary, self.directory / name)
            _fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._active, self._active_size = fd, self.directory / name, 0
        # A spool dropped without close() still releases its segment (and its lock).
        self._finalizer = weakref.finalize(self, _close_quietly, fd)

    def _seal(self) -> None:
        """Stop appending to the active segment, so replay (ours or another process') may take it."""
        if self._fd is not None:
            fd, self._fd, self._active = self._fd, None, None
            if self._finalizer is not None:
                self._finalizer.detach()
            os.close(fd)  # releases the flock; an empty segment is deleted by the next replay
        self._active_size = 0

    # --- replaying -------------------------------------------------------------------------

    def replay(self, handler: Callable[[bytes], object], *, should_stop: Callable[[], bool] | None = None,
               ) -> ReplayResult:
        """Hand every sealed record to ``handler``, oldest first, deleting what was handled.

        The handler commits the record (raising if it cannot); the exception propagates and
        the records from that one on stay spooled for the next replay. Records this process
        appends from now on wait for the next call.
        """
        result = ReplayResult()
        with self._lock:
            self._seal()
        lock_fd = os.open(self.directory / "replay.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                result.busy = True
                return result
            try:
                for path in self._segments():
                    if should_stop is not None and should_stop():
                        result.stopped = True
                        break
                    self._replay_segment(path, handler, result, should_stop)
            finally:
                with self._lock:
                    self._rescan()
        finally:
            os.close(lock_fd)  # releases the replay lock
        return result

    def _replay_segment(self, path: Path, handler: Callable[[bytes], object], result: ReplayResult,
                        should_stop: Callable[[], bool] | None) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a live process is still appending to it
            with os.fdopen(os.dup(fd), "rb") as file:
                data = file.read()
            offset = self._resume.get(path.name, 0)
            for start, end, payload in _frames_checked(data, offset):
                if should_stop is not None and should_stop():
                    result.stopped = True
                    return  # resumes at this record next time
                if payload is None:
                    self._count_corrupt(path, start, result)
                else:
                    handler(payload)
                    result.replayed += 1
                self._resume[path.name] = end
                if end < 0:  # the rest of the segment cannot be framed
                    break
            path.unlink(missing_ok=True)
            self._resume.pop(path.name, None)
        finally:
            os.close(fd)

    def _count_corrupt(self, path: Path, offset: int, result: ReplayResult) -> None:
        result.corrupt += 1
        self.corrupt += 1
        logger.warning("llmlens: skipped a damaged spool record in %s at byte %d", path, offset)

    def close(self) -> None:
        """Seal the active segment (it stays on disk for the next replay)."""
        with self._lock:
            self._seal()

    def _after_fork_in_child(self) -> None:
        # The parent still appends to the active segment (and holds its flock through the
        # shared open file): the child closes its copy and starts a segment of its own.
        self._lock = threading.Lock()
        if self._fd is not None:
            if self._finalizer is not None:
                self._finalizer.detach()
            os.close(self._fd)
        self._fd, self._active, self._active_size = None, None, 0


def has_segments(directory: Path) -> bool:
    """True when ``directory`` holds a segment (of this process or any other), cheaply."""
    try:
        with os.scandir(directory) as entries:
            return any(entry.name.endswith(_SUFFIX) for entry in entries)
    except OSError:  # no spool directory yet: nothing was ever spooled
        return False


def _count_frames(path: Path, offset: int) -> int:
    """Records in a segment from ``offset``, reading headers only."""
    count = 0
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        while offset + _HEADER.size <= size:
            file.seek(offset)
            magic, length, _ = _HEADER.unpack(file.read(_HEADER.size))
            offset += _HEADER.size + length
            if magic != _MAGIC or offset > size:
                break
            count += 1
    return count


def _frames_checked(data: bytes, offset: int) -> list[tuple[int, int, bytes | None]]:
    """(start, end, payload or None when damaged) of each record from ``offset``.

    A record whose header is sane but whose checksum fails is skipped on its own; a header
    that is not one (torn write, garbage) leaves nothing to frame after it: end is -1.
    """
    out: list[tuple[int, int, bytes | None]] = []
    size = len(data)
    while offset < size:
        if size - offset < _HEADER.size:
            out.append((offset, -1, None))
            break
        magic, length, crc = _HEADER.unpack_from(data, offset)
        end = offset + _HEADER.size + length
        if magic != _MAGIC or end > size:
            out.append((offset, -1, None))
            break
        payload = data[offset + _HEADER.size:end]
        out.append((offset, end, payload if zlib.crc32(payload) == crc else None))
        offset = end
    return out


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reinit_after_fork() -> None:
    for spool in list(_live):
        spool._after_fork_in_child()


os.register_at_fork(after_in_child=_reinit_after_fork)
