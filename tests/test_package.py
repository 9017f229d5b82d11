"""Packaging guards: the public API, a light `import llmlens`, and the wheel's contents."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import llmlens

ROOT = Path(__file__).resolve().parents[1]


def test_the_public_api_is_sorted_and_importable() -> None:
    assert llmlens.__all__ == sorted(llmlens.__all__)
    for name in llmlens.__all__:
        assert getattr(llmlens, name) is not None


def test_import_llmlens_stays_light() -> None:
    heavy = ["sqlmodel", "sqlalchemy", "starlette", "uvicorn", "streamlit", "plotly", "pandas", "alembic",
             "openai", "anthropic", "psycopg"]
    code = f"import sys, llmlens; heavy = {heavy!r}; print(','.join(m for m in heavy if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_subpackage_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            name = ".".join([package, *rel.parts]) if rel.parts else package
            assert name in listed, f"{name} is missing from [tool.setuptools] packages"


def test_the_cli_help_lists_the_commands_without_importing_the_heavy_parts() -> None:
    out = subprocess.run([sys.executable, "-m", "llmlens", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "collector", "dashboard", "alerts", "db", "prices"):
        assert command in out.stdout
    code = ("import sys; from llmlens._cli import _build_parser; _build_parser().format_help(); "
            "print(','.join(m for m in ('sqlalchemy', 'streamlit', 'uvicorn', 'alembic') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""
