"""``llmlens prices recompute``: price stored rows again from their tokens.

Tokens are stored, so a price-table upgrade or an override change can be applied to the
past. The store walks the rows in chunks (one transaction each); this module decides
each row's price.
"""

from __future__ import annotations

from datetime import datetime

from llmlens.collector.pricing import Pricer, row_cost
from llmlens.collector.store import RepriceResult, Store, reprice_rows

__all__ = ["RepriceResult", "recompute_costs"]


def recompute_costs(store: Store, pricer: Pricer, since: datetime | None = None,
                    chunk: int = 5000) -> RepriceResult:
    """Re-price rows (those starting at or after ``since``, or all); return what changed."""
    return reprice_rows(store.engine, lambda row: row_cost(pricer, row), since=since, chunk=chunk)
