"""Start a throwaway PostgreSQL server for the tests (and .ci/run) on loopback.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
``postgres`` user; its data directory and socket live in a temp dir either way.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bindir() -> Path | None:
    if found := shutil.which("pg_ctl"):
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    return Path(candidates[0]) if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


class PostgresServer:
    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (install postgresql-15)")
        self.bindir = bindir
        self.root = root or Path(tempfile.mkdtemp(prefix="llmlens-pg-"))
        self.data = self.root / "data"
        self.port = port or _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            os.chmod(self.root, 0o700)
        subprocess.run(
            _as_postgres([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth=trust", "--no-sync", "-E", "UTF8"]),
            check=True, capture_output=True,
        )
        subprocess.run(
            _as_postgres([
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60",
                "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off"
                      " -c full_page_writes=off -c max_connections=200",
                "start",
            ]),
            check=True, capture_output=True,
        )
        return self.url

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]),
            capture_output=True,
        )

    def restart_later(self) -> None:
        subprocess.run(
            _as_postgres([
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off", "start",
            ]),
            check=True, capture_output=True,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise TimeoutError("PostgreSQL did not start")


class Databases:
    """Fresh databases on one server for tests, each dropped by :meth:`drop_all`.

    The one place tests create and drop PostgreSQL databases: every store test gets an
    empty database of its own on the shared server.
    """

    def __init__(self, server_url: str) -> None:
        self._admin = server_url.replace("postgresql+psycopg://", "postgresql://")
        self._base = server_url.rsplit("/", 1)[0]
        self._names: list[str] = []

    def reserve(self, prefix: str) -> str:
        """A new database's name, not created yet (:meth:`create`), dropped at the end."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._names.append(name)
        return name

    def url_of(self, name: str) -> str:
        return f"{self._base}/{name}"

    def create(self, name: str) -> str:
        """Create a reserved database; return its URL."""
        import psycopg

        with psycopg.connect(self._admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def new(self, prefix: str) -> str:
        """The URL of a new, empty database."""
        return self.create(self.reserve(prefix))

    def drop_all(self) -> None:
        """Drop every database reserved here, closing the store's pooled connections first."""
        import psycopg

        from llmlens.collector.store import dispose_engines

        dispose_engines()
        names, self._names = self._names, []
        with psycopg.connect(self._admin, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def databases(server_url: str) -> Iterator[Databases]:
    """:class:`Databases` on ``server_url``, all dropped on the way out."""
    made = Databases(server_url)
    try:
        yield made
    finally:
        made.drop_all()


if __name__ == "__main__":
    # `python tests/support/pgserver.py start DIR` for .ci/run: prints the URL.
    if sys.argv[1:2] == ["start"]:
        server = PostgresServer(Path(sys.argv[2]) if len(sys.argv) > 2 else None)
        print(server.start())
    elif sys.argv[1:2] == ["stop"]:
        PostgresServer(Path(sys.argv[2])).stop()
