"""How the page writes numbers (kept apart from the page, so the tests can say what it shows)."""

from __future__ import annotations

import math
from typing import Optional

_SCALES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def money(value: Optional[float]) -> str:
    """US dollars at a readable scale: ``$3.30 T``."""
    if value is None:
        return "–"
    for size, suffix in _SCALES:
        if abs(value) >= size:
            return f"${value / size:,.2f} {suffix}"
    return f"${value:,.2f}"


def price(value: Optional[float]) -> str:
    """A coin's price with the digits that matter (a stablecoin's cents, a meme coin's decimals)."""
    if value is None:
        return "–"
    if value == 0 or abs(value) >= 1:
        return f"${value:,.2f}"
    decimals = 3 - math.floor(math.log10(abs(value)))  # four significant digits, never an exponent
    return f"${value:.{decimals}f}"


def count(value: Optional[int]) -> str:
    """A count or a rank as text (a column with gaps would otherwise show 20.0000)."""
    return "–" if value is None else str(value)


def percent(value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f} %" if signed else f"{value:.2f} %"


def share(value: Optional[float]) -> str:
    """A 0..1 share as a percentage."""
    return "–" if value is None else f"{value * 100:.1f} %"
