"""Headless Chromium driven over the DevTools protocol, and the helpers browser tests share.

Streamlit draws the page in the browser over a WebSocket, so a test that wants to see what
a person sees drives a real Chromium: navigate, evaluate JavaScript, take a screenshot.
Only loopback is reached: background networking, component updates and sync are off.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"

PAGE_TEXT = "document.body ? document.body.innerText : ''"
EXCEPTIONS = "document.querySelectorAll('[data-testid=\"stException\"]').length"


def chromium_path() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` s."""
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


def stop(process: subprocess.Popen[Any]) -> None:
    """Terminate a child process, killing it if it does not exit within 10 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class DevTools:
    """Just enough of the Chrome DevTools protocol: one page, navigate, evaluate, screenshot.

    Every URL the page requests (documents, scripts, images, fetches, WebSockets) is kept
    in :attr:`requested`, from the browser's own network log.
    """

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._next = 0
        self.requested: list[str] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Network.enable", session=True)

    def send(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        self._ws.send(json.dumps(message))
        while True:
            reply = json.loads(self._ws.recv(timeout=30))
            self._note(reply)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return dict(reply["result"])

    def _note(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method == "Network.requestWillBeSent":
            self.requested.append(message["params"]["request"]["url"])
        elif method == "Network.webSocketCreated":
            self.requested.append(message["params"]["url"])

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                           awaitPromise=True)
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", session=True, url=url)

    def text(self) -> str:
        return str(self.evaluate(PAGE_TEXT) or "")

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))


@contextmanager
def chromium(profile: Path) -> Iterator[DevTools]:
    """A headless Chromium with a throwaway profile, driven through :class:`DevTools`."""
    from websockets.sync.client import connect  # a dependency of streamlit

    binary = chromium_path()
    if binary is None:
        raise FileNotFoundError("Chromium is not installed (apt-get install chromium)")
    process = subprocess.Popen(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", "--window-size=1400,1000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # Chromium writes the port it picked, and the browser endpoint's path, to this file.
        active = profile / "DevToolsActivePort"
        lines = wait_until(lambda: active.exists() and active.read_text().split(), 30, "Chromium's DevTools port")
        with connect(f"ws://127.0.0.1:{lines[0]}{lines[1]}", max_size=None, open_timeout=10,
                     ping_interval=None) as ws:
            yield DevTools(ws)
    finally:
        stop(process)


def _click_point(devtools: DevTools, selector: str) -> tuple[float, float] | None:
    box = devtools.evaluate(
        f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
        " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
        " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    return (float(box[0]), float(box[1])) if box else None


def click(devtools: DevTools, selector: str) -> bool:
    """Click the middle of the first element matching ``selector``, as a mouse would."""
    point = _click_point(devtools, selector)
    if point is None:
        return False
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        devtools.send("Input.dispatchMouseEvent", session=True, type=kind, x=point[0], y=point[1],
                      button="left" if kind != "mouseMoved" else "none", clickCount=1)
    return True


def hover(devtools: DevTools, selector: str) -> bool:
    """Move the mouse over the first element matching ``selector`` (tooltips, hover labels)."""
    point = _click_point(devtools, selector)
    if point is None:
        return False
    devtools.send("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=point[0], y=point[1])
    return True


@contextmanager
def serving(command: list[str], port: int, env: dict[str, str], cwd: Path) -> Iterator[str]:
    """Run a Streamlit server command until the block ends; yield its URL once healthy."""
    import urllib.request

    server = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: server.poll() is not None
                   or urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200,
                   90, "the Streamlit server")
        assert server.poll() is None, f"the server exited with {server.returncode}"
        yield url
    finally:
        stop(server)
