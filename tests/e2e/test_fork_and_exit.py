"""Real processes: fork children export their spans, and exit is bounded whatever the target does.

Each test runs a small program in a fresh interpreter (the way an application runs), on a
real SQLite store or against a loopback target that is dead or never answers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmlens.collector.store import open_store

PRELUDE = """
import os, sys, multiprocessing
import llmlens

llmlens.configure(db_url=sys.argv[1])

@llmlens.observe(task="work")
def call(i):
    return {"model": "gpt-4o-mini", "object": "chat.completion",
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}

def work(n):
    for i in range(n):
        call(i)
    return n

# The store exists before the children start (a brand-new store's creation race is
# tested with the store); the parent's pipeline and connections exist at fork time.
call(-1)
assert llmlens.flush(timeout=60)  # the first export opens the store: slow on a loaded machine
"""


def run_program(tmp_path: Path, body: str, *args: str, timeout: float = 120,
                exit_timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(body))
    # A generous exit budget: these tests are about what is exported, not how fast (the
    # exit tests below set their own); on a loaded machine four children writing one
    # SQLite file can take seconds.
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", "LLMLENS_EXIT_TIMEOUT": str(exit_timeout)}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=tmp_path)


def stored(url: str) -> int:
    return open_store(url).count_rows()


def test_children_of_os_fork_export_all_their_spans(tmp_path: Path, sqlite_url: str) -> None:
    done = run_program(tmp_path, PRELUDE + """
pids = []
for k in range(4):
    pid = os.fork()
    if pid == 0:
        work(500)
        sys.exit(0)  # a pre-fork server's worker leaves through normal interpreter exit
    pids.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
assert codes == [0, 0, 0, 0], codes
""", sqlite_url)
    assert done.returncode == 0, done.stderr
    assert stored(sqlite_url) == 1 + 4 * 500, done.stderr


def test_multiprocessing_fork_processes_export_all_their_spans(tmp_path: Path, sqlite_url: str) -> None:
    done = run_program(tmp_path, PRELUDE + """
ctx = multiprocessing.get_context("fork")
processes = [ctx.Process(target=work, args=(500,)) for _ in range(4)]
for p in processes:
    p.start()
for p in processes:
    p.join()
assert [p.exitcode for p in processes] == [0, 0, 0, 0]
""", sqlite_url)
    assert done.returncode == 0, done.stderr
    assert stored(sqlite_url) == 1 + 4 * 500, done.stderr


def test_a_multiprocessing_pool_closed_and_joined_exports_all_its_spans(tmp_path: Path, sqlite_url: str) -> None:
    done = run_program(tmp_path, PRELUDE + """
pool = multiprocessing.get_context("fork").Pool(4)
assert sum(pool.map(work, [250] * 8)) == 2000
pool.close()
pool.join()
""", sqlite_url)
    assert done.returncode == 0, done.stderr
    assert stored(sqlite_url) == 1 + 2000, done.stderr


def test_a_multiprocessing_pool_left_with_a_with_block_exports_all_its_spans(tmp_path: Path,
                                                                              sqlite_url: str) -> None:
    # Leaving the block terminates the workers (SIGTERM) right after the last result.
    done = run_program(tmp_path, PRELUDE + """
with multiprocessing.get_context("fork").Pool(4) as pool:
    assert sum(pool.map(work, [250] * 8)) == 2000
""", sqlite_url)
    assert done.returncode == 0, done.stderr
    assert stored(sqlite_url) == 1 + 2000, done.stderr


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread states from /proc")
def test_a_multiprocessing_child_whose_sigterm_reaches_another_thread_still_flushes_and_dies_of_it(
        tmp_path: Path, sqlite_url: str) -> None:
    # Pool.terminate() sends SIGTERM to workers whose main thread waits, for good, on the task
    # queue's read lock, which terminate() itself holds. The kernel hands a signal to any thread
    # that does not block it, here the export thread; Python runs handlers on the main thread
    # only, once it is back in the interpreter: it never is, and the parent's join never returns.
    done = run_program(tmp_path, PRELUDE + """
import signal, threading, time

ctx = multiprocessing.get_context("fork")
held = ctx.Lock()
held.acquire()  # as Pool.terminate() holds the task queue's read lock while it stops the workers

def sleeping(tid):
    with open(f"/proc/self/task/{tid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "S"

def child():
    work(250)
    exporter = next(t for t in threading.enumerate() if t.name == "llmlens-export")
    main = threading.main_thread().native_id

    def waiting_on_the_lock():
        # Asleep twice, 50 ms apart: not merely waiting for the interpreter's own lock.
        if not sleeping(main):
            return False
        time.sleep(0.05)
        return sleeping(main)

    def deliver():
        while not waiting_on_the_lock():
            time.sleep(0.05)
        signal.pthread_kill(exporter.ident, signal.SIGTERM)

    threading.Thread(target=deliver, daemon=True).start()
    held.acquire()

p = ctx.Process(target=child)
p.start()
p.join(60)
if p.exitcode is None:
    p.kill()
    p.join()
print("exit code", p.exitcode)
""", sqlite_url, exit_timeout=10)
    assert done.returncode == 0, done.stderr
    assert f"exit code {-signal.SIGTERM}" in done.stdout, (done.stdout, done.stderr)
    assert stored(sqlite_url) == 1 + 250, done.stderr


# --- exit ------------------------------------------------------------------------------------------
EXIT_PROGRAM = """
import sys, time, logging
import llmlens

logging.basicConfig(level=logging.WARNING)
target = sys.argv[1]
if target.startswith("http"):
    llmlens.configure(endpoint=target, exit_timeout=1)
else:
    llmlens.configure(db_url=target, exit_timeout=1)

@llmlens.observe(task="work")
def call(i):
    return {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 3, "completion_tokens": 1}}

for i in range(10):
    call(i)
time.sleep(1)  # the worker is now inside the exporter, waiting on the target
# The time exit begins (the monotonic clock is the machine's, shared by every process).
print("exiting at", time.monotonic(), flush=True)
# no llmlens.shutdown(): the interpreter exits with spans unexported
"""


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback listener that accepts connections and never says a word (a blackholed host)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def _exit_time(tmp_path: Path, target: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """How long the program took to exit, from its last line on: its start-up and imports,
    slow on a machine busy with other tests, are not part of the exit."""
    done = run_program(tmp_path, EXIT_PROGRAM, target, timeout=90)
    ended = time.monotonic()
    began = [float(line.split()[-1]) for line in done.stdout.splitlines() if line.startswith("exiting at ")]
    assert began, (done.stdout, done.stderr)
    return ended - began[0], done


@pytest.mark.parametrize("kind", ["dead collector port", "collector that never answers",
                                  "blackholed PostgreSQL"])
def test_exit_without_shutdown_is_bounded_and_the_loss_is_logged_with_its_count(
        tmp_path: Path, silent_server: int, closed_port: int, kind: str) -> None:
    target = {
        "dead collector port": f"http://127.0.0.1:{closed_port}",
        "collector that never answers": f"http://127.0.0.1:{silent_server}",
        "blackholed PostgreSQL": f"postgresql+psycopg://app:pw@127.0.0.1:{silent_server}/llmlens",
    }[kind]
    elapsed, done = _exit_time(tmp_path, target)
    assert done.returncode == 0, done.stderr
    assert "exiting" in done.stdout
    # exit_timeout is 1 s; the bound below only says "not the exporter's own 10-30 s".
    assert elapsed < 1 + 8, f"exit took {elapsed:.1f}s"
    assert "dropped 10 spans (shutdown" in done.stderr, done.stderr
