"""The prompt-hash secret: created once, atomically, and never used empty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmlens import _redact

RACE = """
import json, multiprocessing, os, sys

from llmlens import _redact  # imported once; every child starts with no secret cached

def first_use(barrier, results):
    barrier.wait()  # ten processes reach their first prompt hash at the same moment
    secret = _redact._secret()
    results.put((secret.decode() if secret else "", _redact.prompt_hash("Summarise the report")))

if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    runs = []
    for run in range(int(sys.argv[2])):
        os.environ["LLMLENS_HOME"] = os.path.join(sys.argv[1], f"home-{run}")
        barrier, results = ctx.Barrier(10), ctx.Queue()
        processes = [ctx.Process(target=first_use, args=(barrier, results)) for _ in range(10)]
        for p in processes:
            p.start()
        runs.append([results.get(timeout=60) for _ in processes])
        for p in processes:
            p.join()
    print(json.dumps(runs))
"""


def test_ten_processes_racing_on_a_fresh_home_all_get_the_same_non_empty_secret(tmp_path: Path) -> None:
    script = tmp_path / "race.py"
    script.write_text(textwrap.dedent(RACE))
    env = {k: v for k, v in os.environ.items() if k != "LLMLENS_HASH_SECRET"}
    done = subprocess.run([sys.executable, str(script), str(tmp_path), "20"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)
    assert len(runs) == 20
    for run, results in enumerate(runs):
        secrets_seen = {secret for secret, _ in results}
        hashes = {digest for _, digest in results}
        assert len(results) == 10
        assert len(secrets_seen) == 1 and len(next(iter(secrets_seen))) == 64, (run, secrets_seen)
        assert len(hashes) == 1 and None not in hashes, (run, hashes)
        on_disk = (tmp_path / f"home-{run}" / "secret").read_text()
        assert secrets_seen == {on_disk}
        assert not [p.name for p in (tmp_path / f"home-{run}").iterdir() if p.name != "secret"], "no temp files left"


def test_an_empty_secret_file_is_never_used_as_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret").write_bytes(b"")  # left behind by a crash between create and write
    monkeypatch.setenv("LLMLENS_HOME", str(home))
    monkeypatch.setattr(_redact, "_READ_PATIENCE", 0.05)
    monkeypatch.setattr(_redact, "_secret_cache", {})
    assert _redact.prompt_hash("Summarise the report") is None
    assert "prompt hashes are not recorded" in caplog.text


def test_a_secret_being_written_by_another_process_is_waited_for(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    home = tmp_path / "home"
    home.mkdir()
    path = home / "secret"
    path.write_bytes(b"")  # created, not yet written
    monkeypatch.setenv("LLMLENS_HOME", str(home))
    monkeypatch.setattr(_redact, "_secret_cache", {})
    writer = threading.Timer(0.2, lambda: path.write_bytes(b"a" * 64))
    writer.start()
    try:
        assert _redact._secret() == b"a" * 64
    finally:
        writer.join()
