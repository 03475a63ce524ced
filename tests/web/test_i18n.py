"""Vietnamese by default, English on request: strings from the catalogues, numbers, money and dates per locale."""

from __future__ import annotations

from datetime import date

import httpx

from agrimarket.web.i18n import LOCALES, Translator, extract, read_catalog
from tests.web.helpers import SAME_ORIGIN, add_product, csrf, parse, register


def test_every_string_of_the_pages_has_a_vietnamese_translation_and_nothing_else_is_kept() -> None:
    used = {message.id for message in extract() if message.id}
    for locale in LOCALES:
        catalog = read_catalog(locale)
        kept = {message.id for message in catalog if message.id}
        fix = "run `.venv/bin/python -m agrimarket.web.i18n` and translate the new messages"
        assert used - kept == set(), f"{locale}: missing from the catalogue ({fix})"
        assert kept - used == set(), f"{locale}: no longer used ({fix})"
    untranslated = [
        m.id
        for m in read_catalog("vi")
        if m.id and (m.fuzzy or not all(m.string if isinstance(m.string, tuple) else [m.string]))
    ]
    assert untranslated == []


def test_money_numbers_and_dates_follow_the_locale() -> None:
    vi, en = Translator("vi"), Translator("en")
    assert vi.vnd(120_000) == "120.000\xa0₫"
    assert en.vnd(120_000) == "₫120,000"
    assert vi.vnd(1_500_000_000) == "1.500.000.000\xa0₫"
    assert vi.number(12_345) == "12.345"
    assert en.number(12_345) == "12,345"
    assert vi.date(date(2025, 6, 1)) == "1 thg 6, 2025"
    assert en.date(date(2025, 6, 1)) == "Jun 1, 2025"
    assert vi.gettext("Products") == "Sản phẩm"
    assert en.gettext("Products") == "Products"
    assert vi.ngettext("%(num)s product on sale", "%(num)s products on sale", 3) == "3 sản phẩm đang bán"
    assert en.ngettext("%(num)s product on sale", "%(num)s products on sale", 1) == "1 product on sale"


async def test_the_language_switch_changes_strings_and_formats_without_javascript(client: httpx.AsyncClient) -> None:
    user = await register(client)
    await add_product(client, user, price="1.250.000", harvest_date="2025-06-01")
    vietnamese = await client.get("/products")
    assert parse(vietnamese.text).lang == "vi"
    assert "Sản phẩm" in vietnamese.text
    assert "1.250.000\xa0₫" in vietnamese.text
    assert "1 thg 6, 2025" in vietnamese.text

    switched = await client.post(
        "/lang", data={"csrf_token": csrf(vietnamese.text), "lang": "en", "next": "/products"}, headers=SAME_ORIGIN
    )
    assert switched.status_code == 303
    assert switched.headers["location"] == "/products"
    english = await client.get("/products")
    assert parse(english.text).lang == "en"
    assert "<h1>Products</h1>" in english.text
    assert "₫1,250,000" in english.text
    assert "Jun 1, 2025" in english.text
    assert "Sản phẩm</h1>" not in english.text

    await client.post("/lang", data={"csrf_token": csrf(english.text), "lang": "vi", "next": "/"}, headers=SAME_ORIGIN)
    assert parse((await client.get("/products")).text).lang == "vi"


async def test_the_switch_stays_on_this_site_and_ignores_unknown_languages(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    response = await client.post(
        "/lang",
        data={"csrf_token": csrf(page.text), "lang": "fr", "next": "https://evil.example/"},
        headers=SAME_ORIGIN,
    )
    assert response.headers["location"] == "/"
    assert "agrimarket_lang" not in response.headers.get("set-cookie", "")
