"""Time every page of the running dashboard in headless Chromium (used by bench_dashboard.py).

Starts ``llmlens dashboard``'s command on the store and Chromium with a fresh profile,
drives it with the test suite's DevTools driver (tests/support/chromium.py), and for each
page measures from navigation until it is fully drawn: its title is on the page,
Streamlit's "running" indicator is gone and nothing changes for half a second (the time of
the first such moment is reported). After one untimed visit (the server's first script run
imports pandas and plotly), each page is opened once, in order: the sidebar's queries are
then cached by Streamlit, as they are for a user moving between pages; each page's own
queries run uncached.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from chromium import DevTools, chromium, free_port, serving

from llmlens.dashboard import dashboard_command

PAGES = {"overview": "Overview", "cost": "Cost", "latency": "Latency", "failures": "Failures",
         "traces": "Traces", "alerts": "Alerts"}
_STATE = """(() => {
  const h1 = document.querySelector('h1');
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const body = document.body ? document.body.innerText : '';
  return JSON.stringify({title: h1 ? h1.innerText : '', running: !!running, size: body.length,
                         charts: document.querySelectorAll('.js-plotly-plot .main-svg').length});
})()"""


def time_pages(db_url: str) -> dict[str, float]:
    """Seconds until each page of the dashboard on ``db_url`` is fully drawn."""
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "LLMLENS_DB_URL": db_url, "HOME": tmp}
        with serving(dashboard_command(port=port), port, env, Path(tmp)) as url, \
                chromium(Path(tmp) / "profile") as page:
            # One untimed visit first: Streamlit's first script run imports pandas and
            # plotly and builds the navigation, a one-off cost of the server process.
            _drawn(page, f"{url}/alerts", "Alerts")
            for path, title in PAGES.items():
                timings[path] = _drawn(page, f"{url}/{'' if path == 'overview' else path}", title)
    return timings


def _state(page: DevTools) -> dict[str, Any]:
    return dict(json.loads(page.evaluate(_STATE) or "{}"))


def _drawn(page: DevTools, url: str, title: str, settle: float = 0.5, timeout: float = 120.0) -> float:
    page.goto(url)
    began = time.perf_counter()
    ready_at: float | None = None
    last: dict[str, Any] | None = None
    while time.perf_counter() - began < timeout:
        state = _state(page)
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
