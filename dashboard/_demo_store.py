"""Which store ``llmlens demo`` writes into: never doubling one without being asked.

The demo's calls are realistic, so once they are mixed into a store that already holds
calls (real ones, or a previous demo's) nothing tells them apart any more. So:

- an empty or missing store takes the demo as it is;
- a store that holds calls is added to only with ``--append`` (or a "y" at the prompt,
  when stdin is a terminal);
- otherwise (``--fresh``, a "no", or no terminal to ask: ``make``, CI, a closed stdin)
  the demo goes into a fresh SQLite store next to it, ``<name>-demo.db``, which is the
  demo's own: a later fresh run replaces it. A PostgreSQL store has no "next to it", so
  there the demo stops and says how to choose.

:func:`choose_demo_store` says what it decided in :attr:`DemoTarget.note`, for the CLI
to print.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from llmlens.collector.store import dispose_engines, open_store, resolve_url, summary

Mode = Literal["ask", "append", "fresh"]
_DEMO_SUFFIX: Final = "-demo"


@dataclass(frozen=True)
class DemoTarget:
    """The store the demo writes into, and what to tell the user about the choice."""

    url: str
    note: str | None = None


def _sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases and in-memory SQLite."""
    # sqlite:///relative.db, sqlite:////absolute.db (the store's own reading of the URL).
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    database = url.split(":///", 1)[1].split("?", 1)[0]
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _calls_in(url: str) -> int:
    path = _sqlite_path(url)
    if path is not None and (not path.exists() or path.stat().st_size == 0):
        return 0  # opening it would create it: nothing to protect
    return int(summary(open_store(url).engine)["calls"])


def _fresh_sibling(url: str, path: Path) -> tuple[str, Path]:
    # llmlens.db -> llmlens-demo.db; a demo store is its own fresh sibling (replaced).
    stem = path.stem if path.stem.endswith(_DEMO_SUFFIX) else path.stem + _DEMO_SUFFIX
    fresh = path.with_name(stem + (path.suffix or ".db"))
    return url.split(":///", 1)[0] + ":///" + str(fresh), fresh


def _remove_sqlite_store(path: Path) -> None:
    dispose_engines()  # a pooled connection of this process must not outlive its file
    for name in (path.name, path.name + "-wal", path.name + "-shm", path.name + "-journal"):
        (path.parent / name).unlink(missing_ok=True)


def choose_demo_store(db_url: str | None, mode: Mode = "ask", *, interactive: bool = False,
                      ask: Callable[[str], str] = input) -> DemoTarget:
    """Decide where the demo writes (see the module docstring); ``ask`` prompts when interactive.

    Raises ``ValueError`` when a PostgreSQL store holds calls and neither ``--append`` nor
    a "y" chose to add to it.

    >>> choose_demo_store("sqlite:///llmlens.db", interactive=False)  # doctest: +SKIP
    DemoTarget(url='sqlite:///llmlens-demo.db', note='sqlite:///llmlens.db already holds 1,500 calls; ...')
    """
    url = resolve_url(db_url)
    calls = _calls_in(url)
    shown = open_store(url).url if calls else url
    if calls == 0:
        return DemoTarget(url)
    held = f"{shown} already holds {calls:,} calls"
    if mode == "ask" and interactive:
        try:
            answer = ask(f"{held}. Add the demo's calls to them? [y/N] ")
        except EOFError:
            answer = ""
        mode = "append" if answer.strip().lower() in ("y", "yes") else "fresh"
    if mode == "append":
        return DemoTarget(url, f"{held}; adding the demo's calls to them (--append).")
    path = _sqlite_path(url)
    if path is None:
        raise ValueError(f"{held}: pass --append to add the demo's calls to them, "
                         "or --db sqlite:///llmlens-demo.db for a separate store")
    fresh_url, fresh = _fresh_sibling(url, path)
    replaced = fresh.exists()
    _remove_sqlite_store(fresh)
    how = "replacing the previous demo store there" if replaced else "a new file"
    return DemoTarget(fresh_url, f"{held}, so the demo writes a fresh store instead: {fresh_url} ({how}). "
                                 "Use --append to add to the existing store.")
