"""``llmlens db upgrade`` and friends: kept importable here; they live in :mod:`llmlens.collector.store`."""

from __future__ import annotations

from llmlens.collector.store._migrate import SCHEMA_REVISION, alembic_config, downgrade, head_revision, upgrade

__all__ = ["SCHEMA_REVISION", "alembic_config", "downgrade", "head_revision", "upgrade"]
