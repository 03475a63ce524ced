"""Per-listing overrides: what a channel shows differently from the catalogue, and how price and stock derive.

Stored as JSON on each listing (``Listing.overrides``) and validated by :class:`ListingOverrides` on the way in.

- Price: ``round_up(price × (100 + markup_percent) / 100, round_to_vnd)``: integer arithmetic only, so a
  markup that covers a marketplace's commission never loses a đồng to floating point.
- Stock: ``clamp(floor(available × share_percent / 100) + extra − buffer, 0, max)``: never negative, so no channel
  is ever told a negative quantity, however the numbers are set.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agrimarket.kit.money import MAX_PRICE_VND
from agrimarket.kit.text import Line, Text


class PriceRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    markup_percent: int = Field(default=0, ge=-90, le=500, description="e.g. 8 to cover an 8 % commission.")
    round_to_vnd: int = Field(default=1000, ge=1, le=100_000, description="Round up to a multiple of this.")

    def apply(self, price_vnd: int) -> int:
        marked = -(-price_vnd * (100 + self.markup_percent) // 100)  # ceiling division: integers only
        rounded = -(-marked // self.round_to_vnd) * self.round_to_vnd
        return max(min(rounded, MAX_PRICE_VND), 1)


class StockRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    share_percent: int = Field(default=100, ge=0, le=100, description="The share of available stock offered here.")
    extra: int = Field(default=0, ge=0, le=1_000_000, description="Added after the share (e.g. stock held aside).")
    buffer: int = Field(default=0, ge=0, le=1_000_000, description="Held back, so a late sync cannot oversell.")
    max: int | None = Field(default=None, ge=0, le=10_000_000, description="Never offer more than this here.")

    def apply(self, available: int, *, channel_max: int | None = None) -> int:
        quantity = max(available, 0) * self.share_percent // 100 + self.extra - self.buffer
        for ceiling in (self.max, channel_max):
            if ceiling is not None:
                quantity = min(quantity, ceiling)
        return max(quantity, 0)


AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
AttributeValue = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class ListingOverrides(BaseModel):
    """What differs on this channel. Everything is optional: empty means "as in the catalogue"."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[Line, Field(min_length=1, max_length=300)] | None = None
    description: Annotated[Text, Field(max_length=20_000)] | None = None
    category: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)] | None = Field(
        default=None, description="The channel's own category id."
    )
    attributes: dict[AttributeName, AttributeValue] = Field(
        default_factory=dict, description="The channel's attributes, by name or id.", max_length=100
    )
    price_rule: PriceRule = Field(default_factory=PriceRule)
    stock_rule: StockRule = Field(default_factory=StockRule)

    @classmethod
    def of(cls, stored: dict[str, Any] | None) -> ListingOverrides:
        return cls.model_validate(stored or {})
