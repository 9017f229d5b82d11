"""Real processes: what llmlens opens (database connections, spool files, threads) is closed
by ``shutdown()`` and by interpreter exit, and a forked child never shares the parent's pool.

The programs run with ``-X dev``, which shows every ``ResourceWarning``; on Python 3.13 an
unclosed ``sqlite3`` connection is one ("unclosed database"), so these tests need 3.13 to
see a leak (the suite runs on it too, see the Makefile's ``test-newest``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmlens.collector.store import open_store

needs_313 = pytest.mark.skipif(sys.version_info < (3, 13),
                               reason="sqlite3 reports an unclosed connection from Python 3.13 on")

APP = """
import sys
import llmlens

llmlens.configure(db_url=sys.argv[1])

@llmlens.observe(task="work")
def call(i):
    return {"model": "gpt-4o-mini", "object": "chat.completion",
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}

for i in range(20):
    call(i)
"""


def run_dev(tmp_path: Path, *argv: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -X dev -W error::ResourceWarning argv...`` with stdin closed."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    if home is not None:
        env["HOME"] = str(home)
        env.pop("LLMLENS_HOME", None)
    return subprocess.run([sys.executable, "-X", "dev", "-W", "error::ResourceWarning", *argv],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
                          stdin=subprocess.DEVNULL)


def assert_nothing_leaked(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    # A leak found by the garbage collector is printed ("Exception ignored in ..."), not raised.
    assert "ResourceWarning" not in done.stderr, done.stderr
    assert "unclosed" not in done.stderr, done.stderr


@needs_313
def test_an_app_exiting_without_shutdown_leaves_no_database_connection_open(tmp_path: Path,
                                                                            sqlite_url: str) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(APP))
    done = run_dev(tmp_path, str(script), sqlite_url)
    assert_nothing_leaked(done)
    # The exit flush ran before the connections were closed: every span is a row.
    assert open_store(sqlite_url).count_rows() == 20


@needs_313
def test_shutdown_closes_the_connections_llmlens_opened(tmp_path: Path, sqlite_url: str) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(APP + """
import gc, sqlite3, threading, warnings

assert llmlens.shutdown(timeout=60)
# Nothing of llmlens' is left: no pooled connection for the collector to find, no thread.
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    gc.collect()
assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
threads = [t.name for t in threading.enumerate() if t.name.startswith("llmlens")]
assert not threads, threads
print("shut down", flush=True)
"""))
    done = run_dev(tmp_path, str(script), sqlite_url)
    assert_nothing_leaked(done)
    assert "shut down" in done.stdout
    assert open_store(sqlite_url).count_rows() == 20


@needs_313
def test_the_demo_in_a_fresh_home_with_stdin_closed_leaves_nothing_open(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    done = run_dev(tmp_path, "-m", "llmlens", "demo", "--db", url, "--calls", "60", "--no-dashboard",
                   home=home)
    assert_nothing_leaked(done)
    # Every provider request the demo made (retries included; how many depends on the hour
    # the demo's window ends at) is a row: the exit flushed them all.
    requests = re.search(r"wrote 60 calls \(([\d,]+) provider requests", done.stdout)
    assert requests is not None, done.stdout
    assert open_store(url).count_rows() == int(requests.group(1).replace(",", "")) >= 60


# Python 3.12+ warns about fork() when other threads run (earlier tests' daemon threads may).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_neither_inherits_a_held_engine_lock_nor_the_parents_pooled_connections(
        tmp_path: Path) -> None:
    from llmlens.collector.store import _engine

    url = f"sqlite:///{tmp_path / 'fork.db'}"
    engine = _engine.get_engine(url)
    with engine.connect() as conn:  # one connection now sits in the parent's pool
        conn.exec_driver_sql("SELECT 1")
    parent_pool = engine.pool
    assert parent_pool.checkedin() == 1
    read, write = os.pipe()
    with _engine._engines_lock:  # another thread of the parent is inside get_engine at fork time
        pid = os.fork()
        if pid == 0:  # the child: report, then leave without running the parent's exit hooks
            os.close(read)
            try:
                lock_free = _engine._engines_lock.acquire(timeout=5)
                inherited = engine.pool.checkedin()
                ok = False
                if lock_free:  # (else get_engine would wait forever)
                    _engine._engines_lock.release()
                    # The child connects on its own and can use the store.
                    with _engine.get_engine(url).connect() as conn:
                        ok = conn.exec_driver_sql("SELECT 1").scalar() == 1
                os.write(write, f"{lock_free} {inherited} {ok}".encode())
            finally:
                os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)
    assert report == "True 0 True"
    # The parent's pooled connection was left alone: still there, still working.
    assert engine.pool is parent_pool and parent_pool.checkedin() == 1
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    _engine.dispose_engines()
