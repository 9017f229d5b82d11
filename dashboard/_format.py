"""How numbers read on the dashboard: money, rates, durations, counts.

Pure functions, shared by the views and the charts, so "$0.0042" in a KPI and in a hover
label are written the same way. ``None`` (no data, an unpriced cost) reads as "—", never 0.
"""

from __future__ import annotations

import math
from datetime import datetime

NONE = "—"


def usd(value: float | None) -> str:
    """Dollars, short enough for a KPI in a row of six (about eight characters).

    Whole dollars from $1,000, cents from $1, four decimals under a dollar, and under a
    cent two significant digits: a small model's call costs a few millionths ("$0.00021"),
    and "$0.009123" would not fit where "$0.0091" does.
    """
    if value is None:
        return NONE
    size = abs(value)
    if size >= 999.995:  # what rounds to $1,000.00 or more
        return f"${value:,.0f}"
    if size >= 1 or value == 0:
        return f"${value:,.2f}"
    if size >= 0.01:
        return f"${value:.4f}"
    # Decimals up to the second significant digit: 0.009123 -> 4, 0.00015 -> 5.
    return f"${value:.{1 - math.floor(math.log10(size))}f}"


def pct(value: float | None) -> str:
    """A rate in [0, 1] as a percentage with one decimal."""
    return NONE if value is None else f"{value * 100:.1f}%"


def ms(value: float | None) -> str:
    """A duration given in milliseconds, in the unit that keeps it short."""
    if value is None:
        return NONE
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.0f} ms"


def count(value: int | None) -> str:
    """A count with thousands separators."""
    return NONE if value is None else f"{value:,}"


def tokens(value: int | None) -> str:
    """A token count, abbreviated past ten thousand (35k, 1.2M, 3.4B)."""
    if value is None:
        return NONE
    if value < 10_000:
        return f"{value:,}"
    # The unit follows the rounded figure: 999,600 reads 1.0M, never 1000k.
    if round(value / 1e3) < 1000:
        return f"{value / 1e3:.0f}k"
    if round(value / 1e6, 1) < 1000:
        return f"{value / 1e6:.1f}M"
    return f"{value / 1e9:,.1f}B"


def when(value: datetime | None) -> str:
    """A UTC timestamp to the second."""
    return NONE if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def label(value: str | None) -> str:
    """A group label; rows without one (other instrumentations' spans) read "(none)"."""
    return "(none)" if value is None else str(value)
