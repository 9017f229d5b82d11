"""A real browser on the running dashboard: ``llmlens dashboard``'s command, headless Chromium.

Streamlit draws the page in the browser over a WebSocket, so the test drives Chromium
through the DevTools protocol and waits until the numbers it knows are on the page. It
skips when Chromium is not installed (CI installs it: apt-get install chromium).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from llmlens.collector.store import Store
from llmlens.dashboard import dashboard_command

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def dashboard(sqlite_url: str, make_store: Callable[..., Store], span_row: Callable[..., dict[str, Any]],
              tmp_path: Path) -> Iterator[str]:
    """The dashboard served on a free loopback port, over a store with two calls."""
    now = datetime.now(UTC)
    make_store(sqlite_url, [
        span_row(start_time=now - timedelta(hours=2), cost_usd=0.25, prompt_version="ticket_prompt@3"),
        span_row(start_time=now - timedelta(hours=1), cost_usd=0.5, status="invalid_output",
                 failure_reason="priority: input should be 'low' or 'high'", prompt_version="ticket_prompt@4"),
    ])
    port = _free_port()
    env = {**os.environ, "LLMLENS_DB_URL": sqlite_url, "HOME": str(tmp_path)}
    server = subprocess.Popen(dashboard_command(port=port), env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until(lambda: urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200, 60,
                    "the Streamlit server")
        yield url
    finally:
        _stop(server)


class _DevTools:
    """Just enough of the Chrome DevTools protocol: one page, evaluate, screenshot."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._next = 0
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def send(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        self._ws.send(json.dumps(message))
        while True:
            reply = json.loads(self._ws.recv(timeout=30))
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return dict(reply["result"])

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", session=True, url=url)

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[_DevTools]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from websockets.sync.client import connect  # a dependency of streamlit

    profile = tmp_path / "chromium-profile"
    process = subprocess.Popen(
        [CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium")),
         "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", "--window-size=1400,1000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # Chromium writes the port it picked, and the browser endpoint's path, to this file.
        active = profile / "DevToolsActivePort"
        lines = _wait_until(lambda: active.exists() and active.read_text().split(), 30, "Chromium's DevTools port")
        with connect(f"ws://127.0.0.1:{lines[0]}{lines[1]}", max_size=None, open_timeout=10) as ws:
            yield _DevTools(ws)
    finally:
        _stop(process)


_PAGE_TEXT = "document.body ? document.body.innerText : ''"
_EXCEPTIONS = "document.querySelectorAll('[data-testid=\"stException\"]').length"


def test_the_running_dashboard_renders_real_numbers_in_a_browser(dashboard: str, browser: _DevTools,
                                                                  tmp_path: Path) -> None:
    browser.goto(dashboard)
    text = _wait_until(lambda: (t := browser.evaluate(_PAGE_TEXT)) and "$0.75" in t and "Wasted spend" in t and t,
                       60, "the Overview's numbers")
    assert "Spend" in text and "Calls" in text
    assert browser.evaluate(_EXCEPTIONS) == 0
    browser.screenshot(tmp_path / "overview.png")
    assert (tmp_path / "overview.png").stat().st_size > 10_000

    browser.goto(f"{dashboard}/failures")
    # One of the two calls returned invalid output. Streamlit streams elements in, so wait
    # for the numbers rather than for the first heading.
    text = _wait_until(lambda: (t := browser.evaluate(_PAGE_TEXT)) and "Failure reasons" in t and "50.0%" in t
                       and t, 60, "the Failures view")
    assert "Invalid output" in text
    assert browser.evaluate(_EXCEPTIONS) == 0
