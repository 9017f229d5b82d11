"""A full disk under the SQLite store: spans wait in the spool, writing resumes once space is freed."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

import llmlens
from llmlens.collector.store import dispose_engines, open_store


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of this test's own: room for the rows, their rollups and a 4 MB WAL once freed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs here: {mounted.stderr.strip()}"
        if os.environ.get("LLMLENS_TEST_STRICT"):  # in CI every test must run
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield disk
    finally:
        dispose_engines()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _fill(disk: Path) -> Path:
    """Take every free byte of ``disk``; the returned file gives them back when deleted."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (64 * 1024, 512):  # then the last bytes, below a chunk
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _calls(provider: TracerProvider, start: int, n: int) -> None:
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for i in range(start, start + n):
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": i,
            "gen_ai.usage.output_tokens": 7, "gen_ai.conversation.id": f"conversation-{i:08d}" * 4,
        }):
            pass


def test_a_full_disk_stalls_nothing_and_the_main_file_holds_every_row_once_space_is_freed(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{small_disk / 'llmlens.db'}"
    provider = TracerProvider()
    llmlens.configure(db_url=url, tracer_provider=provider)  # the spool is under LLMLENS_HOME: another disk
    _calls(provider, 0, 500)
    assert llmlens.flush(30)
    filler = _fill(small_disk)

    with caplog.at_level(logging.WARNING, logger="llmlens"):
        for batch in range(10):  # the app keeps going on a full disk
            _calls(provider, 500 + batch * 500, 500)
            assert llmlens.flush(30)  # spooled, not lost
        assert open_store(url).count_rows() < 5500
        filler.unlink()  # space is freed
        store = open_store(url)
        deadline = time.monotonic() + 120
        while store.count_rows() < 5500 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.count_rows() == 5500
        assert llmlens.shutdown(30)
    messages = [r.getMessage() for r in caplog.records]
    full = [m for m in messages if "full" in m]
    assert len(full) == 1 and "the store is unavailable" in full[0], messages  # reported once
    assert any("spans now stored" in m for m in messages), messages

    dispose_engines()
    with sqlite3.connect(small_disk / "llmlens.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    # The main file alone, without its write-ahead log, holds every row.
    alone = small_disk.parent / "main-file-only.db"
    shutil.copyfile(small_disk / "llmlens.db", alone)
    with sqlite3.connect(alone) as conn:
        assert conn.execute("SELECT count(*) FROM llm_spans").fetchone() == (5500,)
    conn.close()
