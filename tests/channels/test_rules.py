"""Price and stock rules: integer arithmetic, rounding up, and never a negative quantity."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agrimarket.channels.rules import ListingOverrides, PriceRule, StockRule
from agrimarket.kit.money import MAX_PRICE_VND


@pytest.mark.parametrize(
    ("price", "markup", "expected"),
    [
        (100_000, 0, 100_000),
        (100_000, 8, 108_000),
        (61_000, 10, 68_000),  # 67.100 rounds up to the next 1.000
        (99_001, 0, 100_000),
        (1, 0, 1_000),
        (125_000, -20, 100_000),
    ],
)
def test_the_price_is_marked_up_then_rounded_up_to_a_thousand_dong(price: int, markup: int, expected: int) -> None:
    assert PriceRule(markup_percent=markup).apply(price) == expected


def test_the_markup_is_integer_arithmetic_so_no_dong_is_lost_to_floating_point() -> None:
    # In floats 225 × 1.08 is 243.00000000000003, which a ceiling turns into 244.
    rule = PriceRule(markup_percent=8, round_to_vnd=1)
    assert rule.apply(225) == 243
    assert rule.apply(226) == 245  # 244.08 still rounds up
    assert isinstance(rule.apply(333), int)


def test_a_custom_rounding_step_rounds_up_to_it() -> None:
    assert PriceRule(round_to_vnd=500).apply(120_001) == 120_500
    assert PriceRule(round_to_vnd=1).apply(120_001) == 120_001


def test_a_price_never_passes_the_ceiling_nor_falls_below_one_dong() -> None:
    assert PriceRule(markup_percent=500).apply(MAX_PRICE_VND) == MAX_PRICE_VND
    assert PriceRule(markup_percent=-90, round_to_vnd=1).apply(1) == 1


def test_a_markup_out_of_range_is_refused() -> None:
    with pytest.raises(ValidationError):
        PriceRule(markup_percent=501)
    with pytest.raises(ValidationError):
        PriceRule(round_to_vnd=0)


@pytest.mark.parametrize(
    ("rule", "available", "expected"),
    [
        (StockRule(), 40, 40),
        (StockRule(share_percent=50), 41, 20),  # the share is floored: never offer half a fruit
        (StockRule(share_percent=50, buffer=2), 40, 18),
        (StockRule(extra=5), 10, 15),
        (StockRule(max=12), 40, 12),
        (StockRule(share_percent=0, extra=3), 100, 3),
    ],
)
def test_stock_is_the_share_plus_extra_less_the_buffer_up_to_the_max(
    rule: StockRule, available: int, expected: int
) -> None:
    assert rule.apply(available) == expected


def test_the_channels_own_maximum_caps_the_quantity_too() -> None:
    assert StockRule().apply(5_000, channel_max=999) == 999
    assert StockRule(max=10).apply(5_000, channel_max=999) == 10


@pytest.mark.parametrize("available", [-7, 0, 1, 3])
def test_stock_is_never_negative_however_the_numbers_are_set(available: int) -> None:
    assert StockRule(buffer=5).apply(available) == 0
    assert StockRule(max=0, extra=10).apply(available) == 0


def test_overrides_default_to_the_catalogue_and_refuse_unknown_keys() -> None:
    overrides = ListingOverrides.of(None)
    assert (overrides.title, overrides.price_rule.apply(50_000), overrides.stock_rule.apply(9)) == (None, 50_000, 9)
    with pytest.raises(ValidationError):
        ListingOverrides.of({"price_rule": {"markup": 8}})
