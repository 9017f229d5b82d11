"""How money and tokens read on the dashboard: short enough for a KPI in a row of six, never a false zero."""

from __future__ import annotations

import pytest

from llmlens.dashboard._format import NONE, tokens, usd


@pytest.mark.parametrize(("value", "shown"), [
    (0.009123, "$0.0091"),  # a sub-cent wasted spend: two significant digits
    (0.00021, "$0.00021"),  # one small model's call
    (0.0000021, "$0.0000021"),
    (0.0052, "$0.0052"),
])
def test_money_under_a_cent_keeps_two_significant_digits(value: float, shown: str) -> None:
    assert usd(value) == shown


@pytest.mark.parametrize(("value", "shown"), [
    (0.0, "$0.00"), (0.092, "$0.0920"), (0.5, "$0.5000"), (1.0, "$1.00"), (12.345, "$12.35"),
    (999.99, "$999.99"), (999.999, "$1,000"), (1234.51, "$1,235"), (123456.7, "$123,457"),
])
def test_money_from_a_cent_up_reads_in_decimals_then_cents_then_whole_dollars(value: float, shown: str) -> None:
    assert usd(value) == shown


@pytest.mark.parametrize("value", [0.009123, 0.00015, 0.0099, 0.5, 999.99, 1234.51, 123456.7])
def test_money_fits_in_eight_characters_where_a_kpi_shows_it(value: float) -> None:
    assert len(usd(value)) <= 8


def test_an_unknown_cost_reads_as_a_dash_not_as_free() -> None:
    assert usd(None) == NONE


@pytest.mark.parametrize(("value", "shown"), [
    (0, "0"), (9_999, "9,999"), (10_000, "10k"), (35_400, "35k"), (999_499, "999k"), (999_600, "1.0M"),
    (1_240_000, "1.2M"), (999_940_000, "999.9M"), (999_960_000, "1.0B"), (3_400_000_000, "3.4B"),
    (12_345_000_000_000, "12,345.0B"),
])
def test_token_counts_abbreviate_in_the_unit_their_rounded_figure_needs(value: int, shown: str) -> None:
    assert tokens(value) == shown
