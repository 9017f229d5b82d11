"""Schema migrations: ``llmlens db upgrade`` and friends, on SQLite and PostgreSQL.

The Alembic scripts ship inside the package (``llmlens.collector:migrations``), so a
pip-installed llmlens upgrades its store without a source tree or an ``alembic.ini``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmlens.collector.store._engine import SCHEMA_REVISION, current_revision, get_engine, resolve_url, safe_url
from llmlens.collector.store._errors import StoreError, translated

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations."""
    try:
        from alembic.config import Config
    except ImportError as exc:  # base install without the server extra
        raise StoreError("migrations need Alembic: pip install 'llmlens[server]'") from exc
    cfg = Config()
    cfg.set_main_option("script_location", "llmlens.collector:migrations")
    if connection is not None:
        # Passed as an object, not a URL string: configparser would mangle '%' in passwords.
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision among the packaged migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError("no migration scripts found in llmlens.collector.migrations")
    return head


def upgrade(url: str | None = None, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the store at ``url`` to ``revision``; return (before, after) revisions."""
    from alembic import command

    engine = get_engine(resolve_url(url))
    before = current_revision(engine)
    with translated("cannot migrate", safe_url(engine)), engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
    return before, current_revision(engine)


def downgrade(url: str | None, revision: str) -> tuple[str | None, str | None]:
    """Migrate the store at ``url`` back to ``revision`` (``base`` empties it)."""
    from alembic import command

    engine = get_engine(resolve_url(url))
    before = current_revision(engine)
    with translated("cannot migrate", safe_url(engine)), engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)
    return before, current_revision(engine)


__all__ = ["SCHEMA_REVISION", "alembic_config", "downgrade", "head_revision", "upgrade"]
