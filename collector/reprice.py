"""``llmlens prices recompute``: price stored rows again from their tokens.

Tokens are stored, so a price-table upgrade or an override change can be applied to the
past. Rows are walked in primary-key order in chunks, each chunk one transaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update

from llmlens.collector.pricing import Pricer, row_cost
from llmlens.collector.schema import llm_spans
from llmlens.collector.store import Store

_PRICE_COLUMNS = ("id", "provider", "request_model", "response_model", "status", "start_time",
                  "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd")


@dataclass
class RepriceResult:
    scanned: int = 0
    changed: int = 0
    unpriced: int = 0


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def recompute_costs(store: Store, pricer: Pricer, since: datetime | None = None,
                    chunk: int = 5000) -> RepriceResult:
    """Re-price rows (those starting at or after ``since``, or all); return what changed."""
    result = RepriceResult()
    c = llm_spans.c
    last_id = 0
    stmt = (update(llm_spans).where(c.id == bindparam("row_id"))
            .values(cost_usd=bindparam("new_cost")))
    while True:
        query = select(*(c[name] for name in _PRICE_COLUMNS)).where(c.id > last_id)
        if since is not None:
            query = query.where(c.start_time >= since)
        query = query.order_by(c.id).limit(chunk)
        with store.engine.begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
            if not rows:
                return result
            changes = []
            for row in rows:
                cost = row_cost(pricer, row)
                if cost is None:
                    result.unpriced += 1
                if not _same(cost, row["cost_usd"]):
                    changes.append({"row_id": row["id"], "new_cost": cost})
            if changes:
                conn.execute(stmt, changes)
            result.scanned += len(rows)
            result.changed += len(changes)
            last_id = rows[-1]["id"]
