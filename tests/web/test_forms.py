"""What farmers type on a phone, read leniently."""

from __future__ import annotations

from datetime import date

import pytest

from agrimarket.web.forms import local_path, parse_date, parse_vnd, parse_whole_number


@pytest.mark.parametrize(
    ("typed", "amount"),
    [
        ("120000", 120_000),
        ("120.000", 120_000),
        ("120,000", 120_000),
        ("120 000", 120_000),
        ("120.000 ₫", 120_000),
        ("120.000₫", 120_000),
        ("120.000\xa0₫", 120_000),
        ("120000đ", 120_000),
        ("120.000 VND", 120_000),
        ("120k", 120_000),
        ("1.250.000", 1_250_000),
        ("₫120,000", None),  # the currency sign first is English formatting of a number; typed by nobody
        ("12,5", None),
        ("120.00", None),
        ("1.200,50", None),
        ("", None),
        ("mười nghìn", None),
        ("-5000", None),
        ("١٢٠", None),  # digits of another script
    ],
)
def test_prices_are_read_as_whole_dong(typed: str, amount: int | None) -> None:
    assert parse_vnd(typed) == amount


def test_whole_numbers_take_grouping_but_not_decimals() -> None:
    assert parse_whole_number("1.000") == 1000
    assert parse_whole_number("25") == 25
    assert parse_whole_number("2.5") is None
    assert parse_whole_number("-3") is None


def test_dates_come_from_the_date_picker_or_as_typed_in_vietnam() -> None:
    assert parse_date("2025-06-01") == date(2025, 6, 1)
    assert parse_date("1/6/2025") == date(2025, 6, 1)
    assert parse_date("31/02/2025") is None
    assert parse_date("tomorrow") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("/products?org=1", "/products?org=1"), ("//evil.example", "/"), ("https://evil.example", "/"), ("/\\evil", "/")],
)
def test_only_paths_on_this_site_are_gone_back_to(raw: str, expected: str) -> None:
    assert local_path(raw) == expected
