"""A real browser on the running dashboard: ``llmlens dashboard``'s command, headless Chromium.

Streamlit draws the page in the browser over a WebSocket, so the test drives Chromium
through the DevTools protocol (``tests/support/chromium.py``) and waits until the numbers
it knows are on the page. It skips when Chromium is not installed (CI installs it).
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chromium import EXCEPTIONS, DevTools, free_port, stop, wait_until

from llmlens.collector.store import Store
from llmlens.dashboard import dashboard_command

pytestmark = pytest.mark.browser

# The KPI values wider than the room their column gives them (Streamlit ends those with "…").
_CUT_METRICS = """[...document.querySelectorAll('[data-testid="stMetricValue"]')]
  .map(e => e.querySelector('div') || e).filter(e => e.scrollWidth > e.clientWidth).map(e => e.innerText)"""


@pytest.fixture
def dashboard(sqlite_url: str, make_store: Callable[..., Store], span_row: Callable[..., dict[str, Any]],
              tmp_path: Path) -> Iterator[str]:
    """The dashboard served on a free loopback port, over a store with two calls."""
    now = datetime.now(UTC)
    make_store(sqlite_url, [
        span_row(start_time=now - timedelta(hours=2), cost_usd=0.25, prompt_version="ticket_prompt@3"),
        span_row(start_time=now - timedelta(hours=1), cost_usd=0.005123, status="invalid_output",
                 failure_reason="priority: input should be 'low' or 'high'", prompt_version="ticket_prompt@4"),
    ])
    port = free_port()
    env = {**os.environ, "LLMLENS_DB_URL": sqlite_url, "HOME": str(tmp_path)}
    server = subprocess.Popen(dashboard_command(port=port), env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200, 60,
                   "the Streamlit server")
        yield url
    finally:
        stop(server)


def test_the_running_dashboard_renders_real_numbers_in_a_browser(dashboard: str, browser: DevTools,
                                                                  tmp_path: Path) -> None:
    browser.goto(dashboard)
    text = wait_until(lambda: (t := browser.text()) and "$0.2551" in t and "Wasted spend" in t and t,
                      60, "the Overview's numbers")
    assert "Spend" in text and "Calls" in text and "$0.0051" in text  # a sub-cent wasted spend
    assert browser.evaluate(EXCEPTIONS) == 0
    # Each KPI (six to a row) shows its whole value, not one cut short with an ellipsis.
    assert browser.evaluate(_CUT_METRICS) == []
    browser.screenshot(tmp_path / "overview.png")
    assert (tmp_path / "overview.png").stat().st_size > 10_000

    browser.goto(f"{dashboard}/failures")
    # One of the two calls returned invalid output. Streamlit streams elements in, so wait
    # for the numbers rather than for the first heading.
    text = wait_until(lambda: (t := browser.text()) and "Failure reasons" in t and "50.0%" in t
                      and t, 60, "the Failures view")
    assert "Invalid output" in text
    assert browser.evaluate(EXCEPTIONS) == 0
