"""Money is integer VND: zero decimals, everywhere (also in Stripe)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictInt

# The highest price a single SKU may carry: 1 tỷ đồng. Above that is a typo, not a durian.
MAX_PRICE_VND = 1_000_000_000

PriceVND = Annotated[StrictInt, Field(gt=0, le=MAX_PRICE_VND, description="Price in whole Vietnamese đồng.")]


def format_vnd(amount: int) -> str:
    """``120000`` → ``"120.000 ₫"`` (vi-VN grouping)."""
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount):,}".replace(",", ".") + " ₫"


def round_to_thousand(amount: int) -> int:
    """Half up to the nearest 1.000 ₫, the way Vietnamese shops price."""
    return ((amount + 500) // 1000) * 1000
