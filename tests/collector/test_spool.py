"""The on-disk spool: durable appends, ordered idempotent replay, damage skipped, a hard cap."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
from pathlib import Path

import pytest

from llmlens.collector._spool import Spool, SpoolFull, pack, unpack


def _replay_all(spool: Spool) -> list[bytes]:
    seen: list[bytes] = []
    result = spool.replay(seen.append)
    assert not result.busy
    return seen


def test_records_are_replayed_oldest_first_and_deleted_once_handled(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=1024)
    records = [f"record {i}".encode() * (i + 1) for i in range(40)]  # several segments
    for record in records:
        spool.append(record)
    assert spool.records == 40 and spool.size_bytes > 0
    assert len(list(tmp_path.glob("*.seg"))) > 1

    assert _replay_all(spool) == records
    assert spool.records == 0 and spool.size_bytes == 0
    assert list(tmp_path.glob("*.seg")) == []
    assert _replay_all(spool) == []


def test_what_was_spooled_survives_a_restart(tmp_path: Path) -> None:
    pid = os.fork()
    if pid == 0:  # a process that spools, then dies without closing anything
        first = Spool(tmp_path)
        first.append(b"one")
        first.append(b"two")
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    again = Spool(tmp_path)
    assert again.records == 2
    assert _replay_all(again) == [b"one", b"two"]


def test_a_failing_handler_leaves_the_rest_for_the_next_replay(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append(b"%d" % i)
    handled: list[bytes] = []

    def flaky(record: bytes) -> None:
        if record == b"3":
            raise ConnectionError("database went away again")
        handled.append(record)

    with pytest.raises(ConnectionError):
        spool.replay(flaky)
    assert handled == [b"0", b"1", b"2"]
    assert spool.records == 2
    assert _replay_all(spool) == [b"3", b"4"]


def test_a_torn_tail_and_a_damaged_record_are_skipped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(4):
        spool.append(b"payload %d" % i)
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[12 + 2] ^= 0xFF  # a flipped bit in the first record's payload
    segment.write_bytes(bytes(data) + b"LLS1\x40\x00")  # and a header cut short by a crash

    reopened = Spool(tmp_path)
    seen = []
    result = reopened.replay(seen.append)
    assert seen == [b"payload 1", b"payload 2", b"payload 3"]
    assert result.corrupt == 2 and reopened.corrupt == 2
    assert list(tmp_path.glob("*.seg")) == []


def test_past_its_cap_the_spool_refuses_and_keeps_nothing_partial(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    spool.append(b"x" * 500)
    with pytest.raises(SpoolFull) as refused:
        spool.append(b"y" * 500)
    assert refused.value.cause == "spool_full"
    assert _replay_all(spool) == [b"x" * 500]
    spool.append(b"y" * 500)  # replay made room
    assert _replay_all(spool) == [b"y" * 500]


def test_only_one_replayer_runs_at_a_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(b"once")
    held = os.open(tmp_path / "replay.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another process' replay would
        seen: list[bytes] = []
        assert spool.replay(seen.append).busy and seen == []
    finally:
        os.close(held)
    assert _replay_all(spool) == [b"once"]


def _append_and_wait(directory: str, appended: multiprocessing.synchronize.Event,
                     release: multiprocessing.synchronize.Event) -> None:
    spool = Spool(directory)
    spool.append(b"from another process")
    appended.set()
    release.wait(30)
    spool.close()


def test_a_segment_another_live_process_appends_to_is_left_until_it_is_sealed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    appended, release = context.Event(), context.Event()
    writer = context.Process(target=_append_and_wait, args=(str(tmp_path), appended, release))
    writer.start()
    try:
        assert appended.wait(60)
        spool = Spool(tmp_path)
        assert spool.records == 1
        assert _replay_all(spool) == []
        release.set()
        writer.join(60)
        assert _replay_all(spool) == [b"from another process"]
    finally:
        release.set()
        writer.join(60)


def test_a_forked_child_appends_to_a_segment_of_its_own(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(b"parent before fork")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            spool.append(b"child")
            spool.close()
            code = 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    spool.append(b"parent after fork")
    assert sorted(_replay_all(spool)) == sorted([b"parent before fork", b"child", b"parent after fork"])
    assert len(list(tmp_path.glob("*.seg"))) == 0


def test_a_record_keeps_its_media_type() -> None:
    assert unpack(pack("application/json", b"{}")) == ("application/json", b"{}")
    assert unpack(pack("application/x-protobuf", b"\x0a")) == ("application/x-protobuf", b"\x0a")
