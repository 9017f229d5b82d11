"""Forked children that run and exit while PostgreSQL is down spool their spans; once it is
back, the parent (or a later process) writes every one of them, once.

The application is a real program: configured in the parent, which forks ``os.fork``
children and ``multiprocessing`` ("fork") processes while the test holds the database down.
Each child leaves before the database returns, so only its spool segment can carry its spans.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from llmlens.collector.store import open_store

PROGRAM = """
import os, sys, multiprocessing
import llmlens

url, role = sys.argv[1], sys.argv[2]  # "parent": drains; "leaves": exits first; "later": drains
llmlens.configure(db_url=url)

@llmlens.observe(task="work")
def call(i):
    return {"model": "gpt-4o-mini", "object": "chat.completion",
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}

def work(n):
    for i in range(n):
        call(i)

if role == "later":  # a later process: its first export finds what others spooled
    call(-2)
    assert llmlens.flush(timeout=60)
    print("exported", flush=True)
    sys.stdin.readline()  # until the test has seen every row
    sys.exit(0)

call(-1)
assert llmlens.flush(timeout=60)  # the store exists; the parent holds a pooled connection
print("ready", flush=True)
assert sys.stdin.readline().strip() == "down"

pids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        work(CALLS)
        sys.exit(0)  # normal interpreter exit: the exit flush spools what is queued
    pids.append(pid)
ctx = multiprocessing.get_context("fork")
processes = [ctx.Process(target=work, args=(CALLS,)) for _ in range(2)]
for p in processes:
    p.start()
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
for p in processes:
    p.join()
assert codes == [0, 0, 0] and [p.exitcode for p in processes] == [0, 0], (codes, processes)
print("children done", flush=True)

if role == "parent":
    assert sys.stdin.readline().strip() == "up"
    call(-2)  # the parent's next export finds the spool its children left
    assert llmlens.flush(timeout=60)
    print("exported", flush=True)
    sys.stdin.readline()
"""

CALLS = 200
CHILDREN = 5


def _segments(home: Path) -> list[Path]:
    return sorted((home / "spool").glob("*/*.seg"))


def _wait_for_rows(url: str, expected: int, timeout: float = 120) -> int:
    store = open_store(url)
    deadline = time.monotonic() + timeout
    count = store.count_rows()
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        count = store.count_rows()
    return count


def _start(tmp_path: Path, url: str, drainer: str) -> subprocess.Popen[str]:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(PROGRAM).replace("CALLS", str(CALLS)))
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", "LLMLENS_EXIT_TIMEOUT": "60"}
    return subprocess.Popen([sys.executable, str(script), url, drainer], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


def _expect(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdout is not None
    got = process.stdout.readline().strip()
    if got != line:
        process.kill()
        raise AssertionError(f"expected {line!r}, got {got!r}: {process.communicate()[1]}")


def _say(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()


def _finish(process: subprocess.Popen[str]) -> str:
    _, stderr = process.communicate("\n", timeout=120)
    assert process.returncode == 0, stderr
    return stderr


@pytest.mark.parametrize("drainer", ["parent", "later"])
def test_fork_children_that_exit_during_a_postgresql_outage_lose_and_duplicate_nothing(
        own_postgres: Any, tmp_path: Path, drainer: str) -> None:
    url = own_postgres.url
    home = Path(os.environ["LLMLENS_HOME"])
    app = _start(tmp_path, url, "parent" if drainer == "parent" else "leaves")
    try:
        _expect(app, "ready")
        own_postgres.stop("fast")
        _say(app, "down")
        _expect(app, "children done")
        # Every child has exited; their spans are on disk and nowhere else.
        assert _segments(home), "the children spooled nothing"
        if drainer == "later":
            _finish(app)
        own_postgres.restart_later()
        own_postgres.wait_ready()
        if drainer == "later":
            app = _start(tmp_path, url, "later")
        else:
            _say(app, "up")
        _expect(app, "exported")
        expected = 1 + CHILDREN * CALLS + 1  # the parent's first call, the children's, the drainer's
        stored = _wait_for_rows(url, expected)
        stderr = _finish(app)
    finally:
        if app.poll() is None:
            app.kill()
            app.communicate()
    assert stored == expected, stderr
    with open_store(url).engine.connect() as conn:
        distinct = conn.execute(text("SELECT count(DISTINCT (trace_id, span_id)) FROM llm_spans")).scalar()
    assert distinct == expected
    assert _segments(home) == []  # drained: nothing left to replay
