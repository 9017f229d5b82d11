"""Read back what llmlens stored, and price tokens with genai-prices itself as the oracle.

The framework tests assert on rows in a real SQLite store, and check every cost against
``genai_prices.calc_price`` called directly, so a pricing shortcut in llmlens that drifts
from the price data fails a test instead of undercounting spend.
"""

from __future__ import annotations

from typing import Any

from genai_prices import Usage, calc_price

import llmlens

__all__ = ["assert_priced_row", "assert_timing", "genai_prices_cost", "stored_rows"]


def stored_rows(url: str) -> list[dict[str, Any]]:
    """Every ``llm_spans`` row of the store at ``url``, oldest first, after a flush."""
    from llmlens.collector.store import open_store

    assert llmlens.flush(), "llmlens could not flush its spans"
    return open_store(url).fetch_rows()


def genai_prices_cost(provider: str, model: str, *, input_tokens: int, output_tokens: int,
                      cache_read_tokens: int = 0, cache_write_tokens: int = 0) -> float:
    """What genai-prices charges for these tokens (input includes cache reads and writes)."""
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read_tokens,
                  cache_write_tokens=cache_write_tokens)
    return float(calc_price(usage, model, provider_id=provider).total_price)


def assert_priced_row(row: dict[str, Any], provider: str, model: str, *, input_tokens: int, output_tokens: int,
                      cache_read_tokens: int = 0, cache_write_tokens: int = 0) -> None:
    """The row names this provider and model, carries these tokens, and costs what genai-prices says.

    Token counts follow the conventions: ``input_tokens`` includes cache reads and writes.
    """
    assert (row["provider"], row["request_model"], row["response_model"]) == (provider, model, model), row
    tokens = (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"] or 0, row["cache_write_tokens"] or 0)
    assert tokens == (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens), row
    expected = genai_prices_cost(provider, model, input_tokens=input_tokens, output_tokens=output_tokens,
                                 cache_read_tokens=cache_read_tokens, cache_write_tokens=cache_write_tokens)
    assert row["cost_usd"] is not None and expected > 0, row
    assert abs(row["cost_usd"] - expected) <= 1e-12 + 1e-9 * expected, (row["cost_usd"], expected)


def assert_timing(row: dict[str, Any], *, streaming: bool) -> None:
    """A streamed row has a time to first token within its duration; a plain one has none."""
    assert row["streaming"] is streaming, row
    assert row["duration_ms"] is not None and row["duration_ms"] >= 0, row
    if streaming:
        ttft = row["time_to_first_token_ms"]
        assert ttft is not None and 0 <= ttft <= row["duration_ms"], row
    else:
        assert row["time_to_first_token_ms"] is None, row
