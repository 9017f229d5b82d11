"""Time every page of the running dashboard in headless Chromium (used by bench_dashboard.py).

Starts ``llmlens dashboard``'s command on the store and Chromium with a fresh profile,
drives it over the DevTools protocol, and for each page measures from navigation until
it is fully drawn: its title is on the page, Streamlit's "running" indicator is gone and
nothing changes for half a second (the time of the first such moment is reported).
After one untimed visit (the server's first script run imports pandas and plotly), each
page is opened once, in order: the sidebar's queries are then cached by Streamlit, as they
are for a user moving between pages; each page's own queries run uncached.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from llmlens.dashboard import dashboard_command

CHROMIUM = "/usr/bin/chromium"
PAGES = {"overview": "Overview", "cost": "Cost", "latency": "Latency", "failures": "Failures",
         "traces": "Traces", "alerts": "Alerts"}
_STATE = """(() => {
  const h1 = document.querySelector('h1');
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const body = document.body ? document.body.innerText : '';
  return JSON.stringify({title: h1 ? h1.innerText : '', running: !!running, size: body.length,
                         charts: document.querySelectorAll('.js-plotly-plot .main-svg').length});
})()"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError("timed out")


class _Page:
    def __init__(self, ws: Any) -> None:
        self._ws, self._next = ws, 0
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def send(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        self._ws.send(json.dumps(message))
        while True:
            reply = json.loads(self._ws.recv(timeout=60))
            if reply.get("id") == self._next:
                return dict(reply.get("result", {}))

    def state(self) -> dict[str, Any]:
        result = self.send("Runtime.evaluate", session=True, expression=_STATE, returnByValue=True)
        return dict(json.loads(result["result"].get("value") or "{}"))


def time_pages(db_url: str) -> dict[str, float]:
    """Seconds until each page of the dashboard on ``db_url`` is fully drawn."""
    from websockets.sync.client import connect  # a dependency of streamlit

    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        env = {**os.environ, "LLMLENS_DB_URL": db_url, "HOME": tmp}
        server = subprocess.Popen(dashboard_command(port=port), env=env, cwd=tmp,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        profile = Path(tmp) / "profile"
        chromium = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait(lambda: urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200, 60)
            active = profile / "DevToolsActivePort"
            lines = _wait(lambda: active.exists() and active.read_text().split(), 30)
            with connect(f"ws://127.0.0.1:{lines[0]}{lines[1]}", max_size=None, open_timeout=10) as ws:
                page = _Page(ws)
                # One untimed visit first: Streamlit's first script run imports pandas and
                # plotly and builds the navigation, a one-off cost of the server process.
                _drawn(page, f"{url}/alerts", "Alerts")
                for path, title in PAGES.items():
                    timings[path] = _drawn(page, f"{url}/{'' if path == 'overview' else path}", title)
        finally:
            for process in (chromium, server):
                process.terminate()
                process.wait(timeout=20)
    return timings


def _drawn(page: _Page, url: str, title: str, settle: float = 0.5, timeout: float = 120.0) -> float:
    page.send("Page.navigate", session=True, url=url)
    began = time.perf_counter()
    ready_at: float | None = None
    last: dict[str, Any] | None = None
    while time.perf_counter() - began < timeout:
        state = page.state()
        ready = state.get("title") == title and not state.get("running")
        if ready and state == last:
            if ready_at is None:
                ready_at = time.perf_counter()
            elif time.perf_counter() - ready_at >= settle:
                return ready_at - began
        else:
            ready_at = None
        last = state
        time.sleep(0.05)
    return float("nan")
