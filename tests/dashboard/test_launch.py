"""``run_dashboard`` and the package's public surface."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import llmlens.dashboard
from llmlens.dashboard import APP_PATH, dashboard_command, run_dashboard


def test_public_names_are_declared_sorted_and_exist() -> None:
    assert llmlens.dashboard.__all__ == sorted(llmlens.dashboard.__all__)
    for name in llmlens.dashboard.__all__:
        assert hasattr(llmlens.dashboard, name)


def test_importing_the_package_does_not_import_streamlit_or_plotly() -> None:
    code = ("import sys, llmlens.dashboard; "
            "print(sorted(m for m in ('streamlit', 'plotly', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_app_and_its_views_ship_inside_the_package() -> None:
    assert APP_PATH.name == "app.py" and APP_PATH.parent.name == "dashboard"
    views = {p.name for p in (APP_PATH.parent / "views").glob("*.py")}
    assert {"overview.py", "cost.py", "latency.py", "failures.py", "traces.py", "alerts.py"} <= views
    assert not (APP_PATH.parent / "pages").exists()  # Streamlit would auto-discover that folder


def test_dashboard_command_runs_streamlit_on_the_packaged_app() -> None:
    command = dashboard_command(host="0.0.0.0", port=9000, headless=False)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    assert flags["--server.address"] == "0.0.0.0"
    assert flags["--server.port"] == "9000"
    assert flags["--server.headless"] == "false"
    assert flags["--browser.gatherUsageStats"] == "false"


def test_run_dashboard_hands_the_store_over_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(command: list[str], env: dict[str, str], check: bool) -> subprocess.CompletedProcess[bytes]:
        seen.update(command=command, env=env)
        return subprocess.CompletedProcess(command, 3)

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert run_dashboard("sqlite:///elsewhere.db", port=8765) == 3
    assert seen["env"]["LLMLENS_DB_URL"] == "sqlite:///elsewhere.db"
    assert "8765" in seen["command"]


def test_run_dashboard_without_a_url_keeps_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMLENS_DB_URL", "sqlite:///from-env.db")
    seen: dict[str, Any] = {}
    monkeypatch.setattr(subprocess, "run",
                        lambda command, env, check: seen.update(env=env) or subprocess.CompletedProcess(command, 0))
    assert run_dashboard(None) == 0
    assert seen["env"]["LLMLENS_DB_URL"] == "sqlite:///from-env.db"


def test_a_port_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="port"):
        dashboard_command(port=70000)
