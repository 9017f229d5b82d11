"""`llmlens prices recompute`: stored tokens re-priced after a price change."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from llmlens._cli import main
from llmlens.collector.store import open_store


def _rows() -> list[dict[str, object]]:
    base = {"trace_id": "cd" * 16, "name": "chat", "duration_ms": 10.0, "status": "ok", "attempt": 1,
            "final": True, "streaming": False, "attributes": {}, "provider": "openai",
            "input_tokens": 1_000_000, "output_tokens": 0}
    return [
        {**base, "span_id": "a" * 16, "request_model": "acme-llm", "cost_usd": None,
         "start_time": datetime(2026, 10, 1, tzinfo=UTC)},
        {**base, "span_id": "b" * 16, "request_model": "acme-llm", "cost_usd": None,
         "start_time": datetime(2026, 11, 20, tzinfo=UTC)},
        {**base, "span_id": "c" * 16, "request_model": "gpt-4o-mini", "cost_usd": 0.15,
         "start_time": datetime(2026, 11, 20, tzinfo=UTC)},
    ]


def test_recompute_prices_rows_after_an_override_and_says_how_many_changed(
        db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(db_url)
    store.insert_rows(_rows())
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."acme-llm"]\ninput = 2.0\noutput = 4.0\n')

    assert main(["prices", "recompute", "--db", db_url, "--prices", str(prices), "--since", "2026-11-01"]) == 0
    assert "re-priced 2 rows: 1 changed, 0 unpriced" in capsys.readouterr().out
    costs = {r["span_id"][0]: r["cost_usd"] for r in store.fetch_rows()}
    assert costs == {"a": None, "b": pytest.approx(2.0), "c": pytest.approx(0.15)}

    assert main(["prices", "recompute", "--db", db_url, "--prices", str(prices)]) == 0
    assert "re-priced 3 rows: 1 changed, 0 unpriced" in capsys.readouterr().out


def test_recompute_rejects_a_date_that_is_not_iso(sqlite_url: str) -> None:
    with pytest.raises(SystemExit):
        main(["prices", "recompute", "--db", sqlite_url, "--since", "last tuesday"])
