"""A real pre-fork server: gunicorn with sync workers, llmlens configured in the master.

The WSGI app is loaded in the master before the workers are forked (``preload_app``), and
the master makes a call first, so its export pipeline, worker thread and pooled store
connection all exist at the fork, as in a production app. Each request makes an
``@llmlens.observe``'d call through the real ``openai`` client to the loopback fake
provider. gunicorn is stopped with SIGTERM, as a process manager stops it: the workers leave
through normal interpreter exit and flush there.

uwsgi is not tested: it has no wheel and builds from C sources on install, with a compiler
toolchain and Python headers the suite does not otherwise need.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fake_hosts import hosts_variable
from fake_provider import FakeProvider

from llmlens.collector.store import open_store

APP = """
import os
import openai
import llmlens

llmlens.configure()  # LLMLENS_DB_URL
client = openai.OpenAI(base_url=os.environ["FAKE_PROVIDER_URL"] + "/v1", api_key="test", max_retries=0)


@llmlens.observe(task="answer")
def answer(question):
    return client.chat.completions.create(model="gpt-4o-mini",
                                          messages=[{"role": "user", "content": question}])


# In the master, before any worker is forked.
answer("warm-up")
assert llmlens.flush(timeout=60)


def application(environ, start_response):
    result = answer(environ.get("PATH_INFO", "/"))
    body = f"{os.getpid()} {result.choices[0].message.content}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

CONFIG = """
bind = "127.0.0.1:{port}"
workers = 3
worker_class = "sync"
preload_app = True
graceful_timeout = 60
timeout = 120
"""

REQUESTS = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_gunicorn_sync_workers_forked_from_a_configured_master_store_every_call_once(
        tmp_path: Path, sqlite_url: str) -> None:
    port = _free_port()
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "gunicorn.conf.py").write_text(textwrap.dedent(CONFIG.format(port=port)))
    with FakeProvider() as fake:
        env = {**os.environ, "LLMLENS_DB_URL": sqlite_url, "LLMLENS_HOSTS": hosts_variable(fake),
               "FAKE_PROVIDER_URL": fake.url, "LLMLENS_EXIT_TIMEOUT": "60",
               "PYTHONWARNINGS": "ignore::DeprecationWarning"}
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:application"],
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(1200):  # the master loads the app (and the store) before it binds
                if server.poll() is not None or _listening(port):
                    break
                time.sleep(0.1)
            assert server.poll() is None, server.communicate()[1]
            url = f"http://127.0.0.1:{port}"
            # Concurrent requests: a sync worker serves one at a time, so they spread over workers.
            with httpx.Client(timeout=60) as client, ThreadPoolExecutor(6) as pool:
                bodies = list(pool.map(lambda i: client.get(f"{url}/q{i}").raise_for_status().text,
                                       range(REQUESTS)))
            worker_pids = {int(body.split()[0]) for body in bodies}
            assert server.pid not in worker_pids and len(worker_pids) >= 2, worker_pids
            # No flush, no shutdown() in the app: only what SIGTERM leads to.
            server.send_signal(signal.SIGTERM)
            _, stderr = server.communicate(timeout=120)
        finally:
            if server.poll() is None:
                server.kill()
                server.communicate()
        assert server.returncode == 0, stderr
        assert len(fake.requests) == REQUESTS + 1

    rows = open_store(sqlite_url).fetch_rows()
    # One row per request (the master's warm-up call included), no call twice.
    assert len(rows) == REQUESTS + 1, stderr
    assert len({row["call_id"] for row in rows}) == REQUESTS + 1
    assert len({(row["trace_id"], row["span_id"]) for row in rows}) == REQUESTS + 1
    assert {(row["task"], row["status"]) for row in rows} == {("answer", "ok")}
