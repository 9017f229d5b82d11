"""``dashboard_command`` and the package's public surface (starting it for real: test_first_run.py)."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

import llmlens.dashboard
from llmlens.dashboard import APP_PATH, dashboard_command


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


def test_dashboard_command_runs_streamlit_on_the_packaged_app_headless() -> None:
    command = dashboard_command(host="0.0.0.0", port=9000)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    assert flags["--server.address"] == "0.0.0.0"
    assert flags["--server.port"] == "9000"
    # Headless always: Streamlit's e-mail prompt and promotional popup are for developers.
    assert flags["--server.headless"] == "true"
    assert flags["--server.showEmailPrompt"] == "false"
    assert flags["--browser.gatherUsageStats"] == "false"


def test_the_packaged_streamlit_config_sits_next_to_the_app_and_says_the_same() -> None:
    config = tomllib.loads((APP_PATH.parent / ".streamlit" / "config.toml").read_text())
    command = dashboard_command()
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    for section, options in config.items():
        for name, value in options.items():
            flag = flags[f"--{section}.{name}"]
            assert flag == (str(value).lower() if isinstance(value, bool) else str(value))
    assert config["server"]["headless"] is True and config["server"]["showEmailPrompt"] is False


def test_a_port_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="port"):
        dashboard_command(port=70000)
