"""Time every page of the running dashboard in headless Chromium (used by bench_dashboard.py).

Starts ``llmlens dashboard``'s command on the store and Chromium with a fresh profile,
drives it with the test suite's DevTools driver (tests/support/chromium.py), and for each
page measures until it is fully drawn: its title is on the page, Streamlit's "running"
indicator is gone and nothing changes for half a second (the time of the first such moment
is reported). Two ways in, both timed:

* ``opened``: the page's address loaded in the browser (a bookmark, a reload): Streamlit's
  frontend boots, opens its session and runs the page;
* ``navigated``: a click on the page's link in the sidebar, as a user moves between pages:
  the frontend stays, the server runs the page. The first page drawn with a chart also
  loads the charting library in the browser.

Each way has a server of its own. After one untimed visit (the server's first script run
imports pandas and plotly), every page is drawn once, in order: the sidebar's queries are
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


def time_pages(db_url: str) -> dict[str, dict[str, float]]:
    """Seconds until each page of the dashboard on ``db_url`` is fully drawn, per way in
    (``opened``, ``navigated``)."""
    timings: dict[str, dict[str, float]] = {"opened": {}, "navigated": {}}
    for way, record in timings.items():
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            env = {**os.environ, "LLMLENS_DB_URL": db_url, "HOME": tmp}
            with serving(dashboard_command(port=port), port, env, Path(tmp)) as url, \
                    chromium(Path(tmp) / "profile") as page:
                # One untimed visit first: Streamlit's first script run imports pandas and
                # plotly and builds the navigation, a one-off cost of the server process.
                page.goto(f"{url}/alerts")
                _wait_drawn(page, "Alerts")
                for path, title in PAGES.items():
                    address = f"{url}/{'' if path == 'overview' else path}"
                    if way == "opened":
                        page.goto(address)
                    elif not page.evaluate(_CLICK_LINK % json.dumps(address)):
                        raise RuntimeError(f"no sidebar link to {path}")
                    record[path] = _wait_drawn(page, title)
    return timings


def _state(page: DevTools) -> dict[str, Any]:
    return dict(json.loads(page.evaluate(_STATE) or "{}"))


_CLICK_LINK = """(() => {
  const link = [...document.querySelectorAll('[data-testid="stSidebarNavLink"]')].find(a => a.href === %s);
  if (!link) return false;
  link.click();
  return true;
})()"""


def _wait_drawn(page: DevTools, title: str, settle: float = 0.5, timeout: float = 120.0) -> float:
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
