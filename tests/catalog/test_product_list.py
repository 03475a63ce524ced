from __future__ import annotations

import asyncio
import unicodedata
from typing import Any

import httpx

from tests.factories import Account, create_product, product_body, register


def list_url(account: Account) -> str:
    return f"/api/v1/organizations/{account.organization_id}/products"


async def names(client: httpx.AsyncClient, account: Account, **params: Any) -> list[str]:
    response = await client.get(list_url(account), params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    return [p["name"] for p in response.json()["items"]]


async def test_pages_are_newest_first_complete_and_without_repeats(client: httpx.AsyncClient) -> None:
    account = await register(client)
    created = [(await create_product(client, account, name=f"Sản phẩm {i:02d}"))["id"] for i in range(23)]

    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        # A product created between pages must not shift or repeat what follows the cursor.
        if pages == 1:
            await create_product(client, account, name="Tạo giữa chừng")
        page = (await client.get(list_url(account), params=params, headers=account.headers)).json()
        seen += [p["id"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(created))


async def test_limit_above_100_and_a_forged_cursor_are_refused(client: httpx.AsyncClient) -> None:
    account = await register(client)
    too_many = await client.get(list_url(account), params={"limit": 101}, headers=account.headers)
    assert too_many.status_code == 422
    assert too_many.json()["field"] == "limit"
    forged = await client.get(list_url(account), params={"cursor": "not-a-cursor"}, headers=account.headers)
    assert forged.status_code == 422
    assert forged.json()["field"] == "cursor"


async def test_search_ignores_accents_case_and_finds_skus(client: httpx.AsyncClient) -> None:
    account = await register(client)
    body = product_body(name="Sầu riêng Ri6")
    body["variants"][0]["sku"] = "DURIAN-RI6-1KG"
    await client.post(list_url(account), json=body, headers=account.headers)
    await create_product(client, account, name="Hạt điều rang muối", category="nuts")
    await create_product(client, account, name="Mật ong hoa cà phê", category="honey")

    assert await names(client, account, q="sau rieng") == ["Sầu riêng Ri6"]
    assert await names(client, account, q="SẦU RIÊNG") == ["Sầu riêng Ri6"]
    assert await names(client, account, q=unicodedata.normalize("NFD", "riêng")) == ["Sầu riêng Ri6"]
    assert await names(client, account, q="hat dieu") == ["Hạt điều rang muối"]
    assert await names(client, account, q="durian-ri6") == ["Sầu riêng Ri6"]
    assert await names(client, account, q="100%") == []
    assert await names(client, account, q="_") == []


async def test_filters_by_category_and_harvest_date_range(client: httpx.AsyncClient) -> None:
    account = await register(client)
    await create_product(client, account, name="Chôm chôm", harvest_date="2025-05-10")
    await create_product(client, account, name="Sầu riêng", harvest_date="2025-06-15")
    await create_product(client, account, name="Tiêu đen", category="spices", harvest_date="2025-03-01")
    await create_product(client, account, name="Cà phê", category="coffee")

    assert await names(client, account, category="fruit") == ["Sầu riêng", "Chôm chôm"]
    assert await names(client, account, harvested_from="2025-05-01", harvested_to="2025-05-31") == ["Chôm chôm"]
    assert await names(client, account, harvested_from="2025-05-10") == ["Sầu riêng", "Chôm chôm"]
    assert await names(client, account, harvested_to="2025-05-09") == ["Tiêu đen"]
    assert await names(client, account, category="spices", harvested_from="2025-04-01") == []

    backwards = await client.get(
        list_url(account),
        params={"harvested_from": "2025-06-01", "harvested_to": "2025-05-01"},
        headers=account.headers,
    )
    assert backwards.status_code == 422
    assert backwards.json()["field"] == "harvested_to"


async def test_list_shows_only_the_callers_organization(client: httpx.AsyncClient) -> None:
    mine, theirs = await register(client), await register(client, name="Hộ khác")
    await create_product(client, mine, name="Của tôi")
    await create_product(client, theirs, name="Của họ")
    assert await names(client, mine) == ["Của tôi"]
    peek = await client.get(list_url(theirs), headers=mine.headers)
    assert peek.status_code == 404


async def test_two_creates_racing_for_one_sku_give_one_product_and_one_conflict(
    committing_client: httpx.AsyncClient,
) -> None:
    account = await register(committing_client)
    bodies = [product_body(name=f"Sầu riêng {i}") for i in range(2)]
    for body in bodies:
        body["variants"][0]["sku"] = "RACE-1KG"
    responses = await asyncio.gather(
        *(committing_client.post(list_url(account), json=b, headers=account.headers) for b in bodies)
    )
    assert sorted(r.status_code for r in responses) == [201, 409]
    (conflict,) = [r for r in responses if r.status_code == 409]
    assert conflict.json()["field"] == "variants.0.sku"
    assert "RACE-1KG" in conflict.json()["message"]
    listed = await committing_client.get(list_url(account), headers=account.headers)
    assert len(listed.json()["items"]) == 1
