"""Start the dashboard: ``streamlit run`` on the packaged entry script, as a child process.

A subprocess rather than Streamlit's in-process bootstrap: Streamlit owns signal handlers,
the event loop and its config singletons, which a CLI should not share. The store is
handed over in ``LLMLENS_DB_URL``, the one variable the dashboard reads it from.

Streamlit always runs headless here. Outside headless mode it treats every start as a
developer's first run: on a fresh HOME it asks for an e-mail address on the terminal
(and exits 255 when stdin is closed, as under ``make``, CI or a service manager), and
when it finds an AI coding agent's folder in HOME it lays a "Help agents write better
apps" popup over every page. Neither belongs to an installed app. So the command line
sets ``server.headless`` and ``server.showEmailPrompt``, the packaged
``.streamlit/config.toml`` next to ``app.py`` sets the same for a bare ``streamlit run``,
nothing is written into the user's HOME, and opening a browser tab is done here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import webbrowser
from pathlib import Path
from typing import Final

APP_PATH: Final = Path(__file__).with_name("app.py")
_READY_TIMEOUT: Final = 60.0  # seconds to wait for the server before giving up on the browser tab


def dashboard_command(host: str = "127.0.0.1", port: int = 8501) -> list[str]:
    """The ``python -m streamlit run …`` command line :func:`run_dashboard` executes."""
    if not 0 < port < 65536:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.address", host,
        "--server.port", str(port),
        # No e-mail prompt, no promotional popup, no browser opened by Streamlit (see above).
        "--server.headless", "true",
        "--server.showEmailPrompt", "false",
        "--browser.gatherUsageStats", "false",
        # An installed app, not a script being edited: no file watching, no "Deploy" button.
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
    ]


def _can_open_browser() -> bool:
    # What Streamlit itself assumes: a Linux or BSD machine without a display has no
    # browser to open, and Python's webbrowser would fall back to a terminal one there.
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _open_when_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    webbrowser.open(url)
                    return
        except OSError:
            pass
        time.sleep(0.25)


def run_dashboard(db_url: str | None, host: str = "127.0.0.1", port: int = 8501, headless: bool = True) -> int:
    """Serve the dashboard on ``host:port`` until interrupted; return Streamlit's exit code.

    ``db_url`` names the store (``None``: keep ``LLMLENS_DB_URL`` or the default
    ``sqlite:///llmlens.db``). With ``headless=False`` a browser tab opens once the
    server answers, when the machine has a display.

    >>> run_dashboard("sqlite:///llmlens.db", port=8502)  # doctest: +SKIP
    """
    command = dashboard_command(host, port)
    env = dict(os.environ)
    if db_url is not None:
        env["LLMLENS_DB_URL"] = db_url
    # The server never reads stdin: closed, nothing can ever wait on it.
    server = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    # A service manager or a test stops the CLI with SIGTERM, which only this process gets:
    # pass it on, or the server outlives its parent.
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: server.terminate())
    try:
        if not headless and _can_open_browser():
            shown = "localhost" if host in ("0.0.0.0", "::", "") else host
            threading.Thread(target=_open_when_ready, args=(f"http://{shown}:{port}", server),
                             name="llmlens-open-browser", daemon=True).start()
        return server.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached the server too (same process group): let it shut down on its own.
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
