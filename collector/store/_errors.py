"""The store's exceptions, and the one path that turns database errors into them.

::

    LLMLensError
    └── StoreError              the store failed; its message is one line a user can act on
        ├── StoreUnavailable    the database cannot be reached or refused the work;
        │                       nothing was committed, the caller may retry it whole
        └── StoreOutdated       the database's schema is not the revision this code needs

Errors come in two shapes: SQLAlchemy's wrappers (``sqlalchemy.exc.OperationalError``)
on statements run through an engine, and the driver's own (``sqlite3.OperationalError``,
``psycopg.OperationalError``) on the raw cursor the bulk writer uses. Both follow the
DB-API hierarchy by class name, so :func:`translate` classifies them alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from llmlens import LLMLensError

__all__ = ["StoreError", "StoreOutdated", "StoreUnavailable", "translate", "translated"]


class StoreError(LLMLensError):
    """Base of the store's errors; its message is one line a user can act on."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused the write; nothing was committed."""


class StoreOutdated(StoreError):
    """The database's schema is not the revision this code needs."""


# DB-API classes meaning "the database, not the statement, is the problem": a connection
# lost or refused, a locked or full SQLite file, a server shutting down. ``DatabaseError``
# itself (not its subclasses) is what SQLite raises for a file it cannot read.
_UNAVAILABLE: Final = frozenset({"OperationalError", "InterfaceError"})
_DATABASE: Final = frozenset({"DatabaseError", "InterfaceError"})


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # SQLAlchemy's wrapper keeps the driver's error here
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate(exc: BaseException, doing: str, where: str) -> StoreError | None:
    """The :class:`StoreError` for a database error raised while ``doing`` on the store
    at ``where`` (a URL without password), or None when ``exc`` is not a database error.

    >>> translate(sqlite3.OperationalError("database is locked"), "cannot write to", url)  # doctest: +SKIP
    StoreUnavailable('cannot write to the store at sqlite:///llmlens.db: database is locked')
    """
    if isinstance(exc, StoreError):
        return exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    if not names & _DATABASE:
        return None
    message = f"{doing} the store at {where}: {_reason(exc)}"
    if names & _UNAVAILABLE or type(exc).__name__ == "DatabaseError":
        return StoreUnavailable(message)
    return StoreError(message)


@contextmanager
def translated(doing: str, where: str) -> Iterator[None]:
    """Run a block, raising database errors as :class:`StoreError` (chained to the original)."""
    try:
        yield
    except Exception as exc:
        error = translate(exc, doing, where)
        if error is None or error is exc:
            raise
        raise error from exc
