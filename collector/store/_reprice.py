"""Re-pricing stored rows: walk them in primary-key order, update the costs that changed."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import bindparam, select, update

from llmlens.collector.store import _rollup
from llmlens.collector.store._filters import Bind, transaction
from llmlens.collector.store._tables import llm_spans
from llmlens.collector.store._time import bind_time

__all__ = ["PRICE_COLUMNS", "RepriceResult", "reprice_rows"]

# What a price function needs from a row (and the row's current cost).
PRICE_COLUMNS: Final = ("id", "provider", "request_model", "response_model", "status", "start_time",
                        "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd")


@dataclass
class RepriceResult:
    """How many rows were read, how many changed cost, how many have no price."""

    scanned: int = 0
    changed: int = 0
    unpriced: int = 0


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def reprice_rows(bind: Bind, cost_of: Callable[[dict[str, Any]], float | None], *,
                 since: datetime | None = None, chunk: int = 5000) -> RepriceResult:
    """Set ``cost_usd`` to ``cost_of(row)`` for rows starting at or after ``since`` (or all).

    Rows are walked in primary-key order in chunks of ``chunk``, each chunk one
    transaction, so a long re-price never holds a lock for long. The rollups take the
    cost differences in the same transaction, so they stay equal to the rows.
    """
    result = RepriceResult()
    keys = _rollup.KeyCache()  # every key exists already: its rows were rolled up
    c = llm_spans.c
    last_id = 0
    statement = update(llm_spans).where(c.id == bindparam("row_id")).values(cost_usd=bindparam("new_cost"))
    while True:
        query = select(llm_spans).where(c.id > last_id)
        if since is not None:
            query = query.where(c.start_time >= bind_time(since))
        query = query.order_by(c.id).limit(chunk)
        with transaction(bind) as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
            if not rows:
                return result
            changes = []
            delta = _rollup.Delta()
            for row in rows:
                cost = cost_of(row)
                if cost is None:
                    result.unpriced += 1
                if not _same(cost, row["cost_usd"]):
                    changes.append({"row_id": row["id"], "new_cost": cost})
                    delta.add([row], -1).add([{**row, "cost_usd": cost}])
            if changes:
                conn.execute(statement, changes)
                _rollup.apply(conn, delta, keys)
            result.scanned += len(rows)
            result.changed += len(changes)
            last_id = rows[-1]["id"]
