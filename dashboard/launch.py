"""Start the dashboard: ``streamlit run`` on the packaged entry script, as a child process.

A subprocess rather than Streamlit's in-process bootstrap: Streamlit owns signal handlers,
the event loop and its config singletons, which a CLI should not share. The store is
handed over in ``LLMLENS_DB_URL``, the one variable the dashboard reads it from.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

APP_PATH: Final = Path(__file__).with_name("app.py")


def dashboard_command(host: str = "127.0.0.1", port: int = 8501, headless: bool = True) -> list[str]:
    """The ``python -m streamlit run …`` command line :func:`run_dashboard` executes."""
    if not 0 < port < 65536:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false",
        # An installed app, not a script being edited: no file watching, no "Deploy" button.
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
    ]


def run_dashboard(db_url: str | None, host: str = "127.0.0.1", port: int = 8501, headless: bool = True) -> int:
    """Serve the dashboard on ``host:port`` until interrupted; return Streamlit's exit code.

    ``db_url`` names the store (``None``: keep ``LLMLENS_DB_URL`` or the default
    ``sqlite:///llmlens.db``). With ``headless=False`` Streamlit opens a browser tab.

    >>> run_dashboard("sqlite:///llmlens.db", port=8502)  # doctest: +SKIP
    """
    command = dashboard_command(host, port, headless)
    env = dict(os.environ)
    if db_url is not None:
        env["LLMLENS_DB_URL"] = db_url
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except KeyboardInterrupt:
        # Ctrl-C reaches the child too (same process group); it shuts down on its own.
        return 130
