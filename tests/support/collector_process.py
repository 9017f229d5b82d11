"""A collector running as ``llmlens collector`` in a process of its own, on a free loopback port.

Shared by the collector tests and the second test environment's source tests: both run
the collector with the interpreter that runs the tests, against a SQLite file or a fresh
database of the test PostgreSQL server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pgserver import databases

__all__ = ["CollectorProcess", "free_port", "module_collector", "start_collector"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CollectorProcess:
    """A collector running as ``llmlens collector`` on a free loopback port."""

    process: subprocess.Popen[str]
    url: str
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)
    grpc_port: int = 0  # 0: started without the gRPC receiver

    @property
    def traces_url(self) -> str:
        return self.url + "/v1/traces"

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout)

    def shut_down(self, timeout: float = 30) -> None:
        """Stop the collector whatever state it is in: SIGTERM first (with --workers the
        parent forwards it to its workers, where a SIGKILL of the parent alone would leave
        them serving the port), SIGKILL if it does not exit in ``timeout`` seconds."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start_collector(
    db_url: str, log: Path, *args: str, env: dict[str, str] | None = None, wait_healthy: bool = True,
    grpc: bool = False,
) -> CollectorProcess:
    port = free_port()
    # The gRPC receiver on a free port when asked for, else none: 4317 would be shared.
    grpc_port = free_port() if grpc else 0
    grpc_args = ["--grpc-port", str(grpc_port)]
    # `python -m llmlens` is the `llmlens` command, run with this interpreter.
    command = [sys.executable, "-m", "llmlens", "collector", "--port", str(port), "--db", db_url, *grpc_args, *args]
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
        )
    collector = CollectorProcess(process, f"http://127.0.0.1:{port}", log, grpc_port=grpc_port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"collector exited with {process.returncode}: {log.read_text()}")
        try:
            response = httpx.get(collector.url + "/healthz", timeout=1)
            if response.status_code == 200 or not wait_healthy:
                return collector
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"collector did not become healthy: {log.read_text()}")


@contextmanager
def module_collector(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """A collector (two workers, HTTP and gRPC) on the database ``request.param`` names.

    ``"sqlite"``: a file; ``"postgres"``: a fresh database of the ``pg_server_url`` server,
    dropped afterwards. ``collector.extra["db_url"]`` is the store.
    """
    folder = tmp_path_factory.mktemp("shared-collector")
    with ExitStack() as stack:
        if request.param == "sqlite":
            db_url = f"sqlite:///{folder / 'llmlens.db'}"
        else:
            db_url = stack.enter_context(databases(str(request.getfixturevalue("pg_server_url")))).new("m")
        collector = start_collector(db_url, folder / "collector.log", "--workers", "2", grpc=True)
        collector.extra["db_url"] = db_url
        try:
            yield collector
        finally:
            collector.shut_down(20)
            from llmlens.collector.store import dispose_engines

            dispose_engines()
