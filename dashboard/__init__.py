"""llmlens.dashboard: a Streamlit app over the store, and the demo workload that fills it.

``run_dashboard`` serves the app (``llmlens dashboard``); ``run_demo`` writes a realistic
workload through the real decorator (``llmlens demo``). The app's numbers come only from
:mod:`llmlens.collector.queries`; its figures from :mod:`llmlens.dashboard.charts`.
Streamlit and Plotly are imported by the app and the charts, not by this package.
"""

from __future__ import annotations

from llmlens.dashboard.demo import DemoSummary, run_demo
from llmlens.dashboard.launch import APP_PATH, dashboard_command, run_dashboard

__all__ = [
    "APP_PATH",
    "DemoSummary",
    "dashboard_command",
    "run_dashboard",
    "run_demo",
]
