"""The first run: ``llmlens dashboard`` and ``llmlens demo`` as a new user (or CI) runs them.

A fresh HOME, stdin closed, no display: Streamlit must not ask for an e-mail address
(with stdin closed it exits 255), must not lay its promotional popup over the pages, and
llmlens must not write into HOME to prevent either. The HOME holds a ``.claude`` folder,
as a developer's machine with an AI coding agent does: that is what makes Streamlit
show its "Help agents write better apps" popup. Then ``llmlens demo`` run twice must not
double a store.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chromium import DevTools, free_port, stop, wait_until

from llmlens.collector.store import Store, open_store, summary
from llmlens.dashboard._demo_store import choose_demo_store

_POPUP = "document.querySelectorAll('[data-testid=\"stSkillsNudge\"]').length"


@pytest.fixture
def fresh_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    return home


def _first_run_env(home: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "XDG_CONFIG_HOME", "LLMLENS_DB_URL")}
    env["HOME"] = str(home)
    env.pop("STREAMLIT_SERVER_HEADLESS", None)
    return env


def _llmlens(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmlens", *args]


def _calls(url: str) -> int:
    return int(summary(open_store(url).engine)["calls"])


@pytest.fixture
def dashboard_process(fresh_home: Path, tmp_path: Path, sqlite_url: str, make_store: Callable[..., Store],
                      span_row: Callable[..., dict[str, Any]]) -> Iterator[tuple[str, Path]]:
    """``llmlens dashboard`` (no flags but the store and port) in a fresh HOME, stdin closed."""
    make_store(sqlite_url, [span_row(start_time=datetime.now(UTC) - timedelta(hours=1), cost_usd=0.25)])
    port = free_port()
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        process = subprocess.Popen(_llmlens("dashboard", "--db", sqlite_url, "--port", str(port)),
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   env=_first_run_env(fresh_home), cwd=tmp_path)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: process.poll() is not None
                       or urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200,
                       90, "the dashboard to answer or exit")
            assert process.poll() is None, f"exited {process.returncode}: {log.read_text()}"
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            assert len(children) == 1  # the Streamlit server
            yield url, log
        finally:
            stop(process)
    # Stopping the CLI stops the server it started.
    wait_until(lambda: not Path(f"/proc/{children[0]}").exists()
               or "zombie" in Path(f"/proc/{children[0]}/status").read_text(), 30, "the server to exit")


def test_the_dashboard_starts_in_a_fresh_home_with_stdin_closed_and_writes_nothing_there(
        dashboard_process: tuple[str, Path], fresh_home: Path) -> None:
    url, log = dashboard_process
    with urllib.request.urlopen(url, timeout=10) as page:
        assert page.status == 200
    output = log.read_text()
    assert "Email" not in output and "Welcome to Streamlit" not in output
    assert "skills" not in output.lower()
    assert url in output  # where to point a browser
    assert sorted(p.name for p in fresh_home.rglob("*")) == [".claude"]


@pytest.mark.browser
def test_the_dashboard_in_a_browser_shows_its_numbers_and_no_promotional_popup(
        dashboard_process: tuple[str, Path], browser: DevTools) -> None:
    url, _ = dashboard_process
    browser.goto(url)
    # Streamlit decides on the popup in the session's first message, before the page
    # draws: once the numbers are there, a popup would be too.
    wait_until(lambda: "$0.25" in browser.text() and "Overview" in browser.text(), 90, "the Overview")
    assert browser.evaluate(_POPUP) == 0
    assert "Help agents" not in browser.text()


def _demo(cwd: Path, env: dict[str, str], *args: str, stdin: Any = subprocess.DEVNULL) -> str:
    result = subprocess.run(_llmlens("demo", "--no-dashboard", "--calls", "40", *args), stdin=stdin,
                            capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_running_the_demo_twice_without_a_terminal_never_doubles_a_store(tmp_path: Path, fresh_home: Path) -> None:
    env = _first_run_env(fresh_home)
    first = _demo(tmp_path, env)
    assert "into sqlite:///llmlens.db" in first
    assert _calls(f"sqlite:///{tmp_path / 'llmlens.db'}") == 40

    second = _demo(tmp_path, env)
    assert "sqlite:///llmlens.db already holds 40 calls" in second
    assert "fresh store instead: sqlite:///llmlens-demo.db (a new file)" in second
    assert _calls(f"sqlite:///{tmp_path / 'llmlens.db'}") == 40
    assert _calls(f"sqlite:///{tmp_path / 'llmlens-demo.db'}") == 40

    third = _demo(tmp_path, env)
    assert "replacing the previous demo store there" in third
    assert _calls(f"sqlite:///{tmp_path / 'llmlens.db'}") == 40
    assert _calls(f"sqlite:///{tmp_path / 'llmlens-demo.db'}") == 40


def test_the_demo_adds_to_a_store_only_when_told_to(tmp_path: Path, fresh_home: Path) -> None:
    env = _first_run_env(fresh_home)
    _demo(tmp_path, env)
    appended = _demo(tmp_path, env, "--append")
    assert "adding the demo's calls to them" in appended
    assert _calls(f"sqlite:///{tmp_path / 'llmlens.db'}") == 80
    assert not (tmp_path / "llmlens-demo.db").exists()


def test_the_demo_asks_before_adding_to_a_store_when_stdin_is_a_terminal(tmp_path: Path, fresh_home: Path) -> None:
    env = _first_run_env(fresh_home)
    _demo(tmp_path, env)
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"y\n")  # typed ahead: the prompt reads it from the terminal
        asked = _demo(tmp_path, env, stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert "already holds 40 calls. Add the demo's calls to them? [y/N]" in asked
    assert _calls(f"sqlite:///{tmp_path / 'llmlens.db'}") == 80


@pytest.mark.postgres
def test_a_postgresql_store_that_holds_calls_is_never_added_to_unasked(
        pg_url: str, make_store: Callable[..., Store], span_row: Callable[..., dict[str, Any]]) -> None:
    make_store(pg_url, [span_row()])
    with pytest.raises(ValueError, match="--append"):
        choose_demo_store(pg_url, interactive=False)
    assert choose_demo_store(pg_url, "append").url == pg_url
    assert choose_demo_store(pg_url, interactive=True, ask=lambda prompt: "yes").url == pg_url
