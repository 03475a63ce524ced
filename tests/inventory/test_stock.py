from __future__ import annotations

import itertools
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService
from agrimarket.models import StockMovement
from tests.catalog.helpers import add_listing, count_rows, desired_version
from tests.factories import Account, create_product, register


async def stocked_variant(client: httpx.AsyncClient, account: Account, on_hand: int) -> str:
    product = await create_product(client, account, initial_stock=on_hand)
    variant_id: str = product["variants"][0]["id"]
    return variant_id


async def adjust(
    client: httpx.AsyncClient, account: Account, variant_id: str, delta: Any, kind: str = "adjust", **extra: Any
) -> httpx.Response:
    return await client.post(
        f"/api/v1/variants/{variant_id}/stock/adjustments",
        json={"delta": delta, "kind": kind, "reason": "Kiểm kho", **extra},
        headers=account.headers,
    )


async def set_stock(
    client: httpx.AsyncClient, account: Account, variant_id: str, on_hand: int, kind: str = "adjust"
) -> httpx.Response:
    return await client.put(
        f"/api/v1/variants/{variant_id}/stock",
        json={"on_hand": on_hand, "reason": "Đếm lại", "kind": kind},
        headers=account.headers,
    )


async def movements(client: httpx.AsyncClient, account: Account, variant_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        page = await client.get(
            f"/api/v1/variants/{variant_id}/stock/movements", params=params, headers=account.headers
        )
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        if (cursor := page.json()["next_cursor"]) is None:
            return items


async def test_stock_shows_on_hand_reserved_and_available(client: httpx.AsyncClient) -> None:
    account = await register(client)
    variant_id = await stocked_variant(client, account, 12)
    response = await client.get(f"/api/v1/variants/{variant_id}/stock", headers=account.headers)
    assert response.status_code == 200
    stock = response.json()
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (12, 0, 12)
    assert stock["sku"].startswith("SKU-")
    assert stock["product_name"] == "Sầu riêng Ri6"


async def test_setting_stock_records_the_difference_and_setting_it_again_records_nothing(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    variant_id = await stocked_variant(client, account, 10)
    response = await set_stock(client, account, variant_id, 7)
    assert response.status_code == 200, response.text
    assert response.json()["on_hand"] == 7
    assert (await set_stock(client, account, variant_id, 7)).json()["on_hand"] == 7
    received = await set_stock(client, account, variant_id, 20, kind="receive")
    assert received.json()["available"] == 20
    history = await movements(client, account, variant_id)
    assert [(m["kind"], m["on_hand_delta"], m["on_hand_after"]) for m in history] == [
        ("receive", 13, 20),
        ("adjust", -3, 7),
        ("receive", 10, 10),
    ]
    assert history[0]["reason"] == "Đếm lại"


async def test_a_receive_cannot_lower_stock(client: httpx.AsyncClient) -> None:
    account = await register(client)
    variant_id = await stocked_variant(client, account, 10)
    response = await set_stock(client, account, variant_id, 4, kind="receive")
    assert response.status_code == 422
    assert response.json()["field"] == "kind"


async def test_adjustments_of_each_kind_change_stock_and_the_ledger_adds_up(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await register(client)
    variant_id = await stocked_variant(client, account, 5)
    assert (await adjust(client, account, variant_id, 30, "receive")).json()["on_hand"] == 35
    assert (await adjust(client, account, variant_id, -4, "adjust")).json()["on_hand"] == 31
    assert (await adjust(client, account, variant_id, 2, "return")).json()["on_hand"] == 33
    assert (await set_stock(client, account, variant_id, 40)).json()["on_hand"] == 40

    # The order pipeline holds, sells and gives back stock through the service.
    async with sessionmaker() as session:
        inventory = InventoryService(InventoryRepository(session))
        vid = uuid.UUID(variant_id)
        held = await inventory.reserve(vid, 6, reference="order-line:1:reserve")
        assert (held.applied, held.short, held.level.available) == (6, 0, 34)
        await inventory.commit_sale(vid, 4, reference="order-line:1:sale", from_reserved=4)
        await inventory.release(vid, 2, reference="order-line:1:release")
        await session.commit()

    stock = (await client.get(f"/api/v1/variants/{variant_id}/stock", headers=account.headers)).json()
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (36, 0, 36)
    history = await movements(client, account, variant_id)
    assert sum(m["on_hand_delta"] for m in history) == stock["on_hand"]
    assert sum(m["reserved_delta"] for m in history) == stock["reserved"]
    # Each movement's "after" is the one before it plus its own delta: an unbroken chain.
    chain = list(reversed(history))
    for before, after in itertools.pairwise(chain):
        assert after["on_hand_after"] == before["on_hand_after"] + after["on_hand_delta"]
        assert after["reserved_after"] == before["reserved_after"] + after["reserved_delta"]
    async with sessionmaker() as session:
        assert await InventoryService(InventoryRepository(session)).ledger_on_hand(vid) == 36


async def test_removing_more_than_available_is_a_conflict_that_writes_nothing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await register(client)
    variant_id = await stocked_variant(client, account, 3)
    async with sessionmaker() as session:
        await InventoryService(InventoryRepository(session)).reserve(
            uuid.UUID(variant_id), 1, reference="order-line:7:reserve"
        )
        await session.commit()
    before = await count_rows(sessionmaker, StockMovement)

    response = await adjust(client, account, variant_id, -5)
    assert response.status_code == 409
    error = response.json()
    assert error["field"] == "delta"
    assert error["message"].startswith("Only 2 left in stock for SKU-")
    assert "1 more are held for orders" in error["message"]
    assert await count_rows(sessionmaker, StockMovement) == before

    below_reserved = await set_stock(client, account, variant_id, 0)
    assert below_reserved.status_code == 409
    assert below_reserved.json()["field"] == "on_hand"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"delta": 0, "kind": "adjust"}, "delta"),
        ({"delta": 2.5, "kind": "adjust"}, "delta"),
        ({"delta": "3", "kind": "adjust"}, "delta"),
        ({"delta": -1, "kind": "receive"}, "delta"),
        ({"delta": -1, "kind": "return"}, "delta"),
        ({"delta": 1, "kind": "sale"}, "kind"),
        ({"delta": 100_000_001, "kind": "receive"}, "delta"),
        ({"delta": 1, "kind": "adjust", "reason": ""}, "reason"),
        ({"delta": 1, "kind": "adjust", "reason": "x" * 301}, "reason"),
        ({"delta": 1, "kind": "adjust", "note": "?"}, "note"),
    ],
)
async def test_invalid_adjustment_is_refused_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    account = await register(client)
    variant_id = await stocked_variant(client, account, 5)
    response = await client.post(
        f"/api/v1/variants/{variant_id}/stock/adjustments",
        json={"reason": "Kiểm kho"} | body,
        headers=account.headers,
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


async def test_a_retried_adjustment_with_its_idempotency_key_applies_once(client: httpx.AsyncClient) -> None:
    account = await register(client)
    variant_id = await stocked_variant(client, account, 5)
    first = await adjust(client, account, variant_id, 10, "receive", idempotency_key="phone-42")
    retry = await adjust(client, account, variant_id, 10, "receive", idempotency_key="phone-42")
    assert first.json()["on_hand"] == retry.json()["on_hand"] == 15
    assert len(await movements(client, account, variant_id)) == 2
    misuse = await adjust(client, account, variant_id, 3, "receive", idempotency_key="phone-42")
    assert misuse.status_code == 409
    assert misuse.json()["field"] == "idempotency_key"


async def test_movements_page_newest_first_without_gaps(client: httpx.AsyncClient) -> None:
    account = await register(client)
    variant_id = await stocked_variant(client, account, 1)
    for delta in range(1, 12):
        await adjust(client, account, variant_id, delta, "receive")
    url = f"/api/v1/variants/{variant_id}/stock/movements"
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(url, params=params, headers=account.headers)).json()
        seen += [m["on_hand_delta"] for m in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == [*range(11, 0, -1), 1]


async def test_organization_stock_finds_what_runs_low(client: httpx.AsyncClient) -> None:
    account = await register(client)
    plenty = await create_product(client, account, name="Tiêu đen", initial_stock=50)
    low = await create_product(client, account, name="Sầu riêng", variants=2, initial_stock=2)
    gone = await create_product(client, account, name="Chôm chôm", initial_stock=0)
    archived = await create_product(client, account, name="Măng cụt", initial_stock=0)
    await client.delete(f"/api/v1/products/{archived['id']}", headers=account.headers)
    url = f"/api/v1/organizations/{account.organization_id}/stock"

    everything = (await client.get(url, headers=account.headers)).json()["items"]
    assert [s["product_name"] for s in everything] == ["Tiêu đen", "Sầu riêng", "Sầu riêng", "Chôm chôm"]
    running_low = (await client.get(url, params={"available_lte": 2}, headers=account.headers)).json()["items"]
    assert {s["variant_id"] for s in running_low} == {
        *(v["id"] for v in low["variants"]),
        gone["variants"][0]["id"],
    }
    assert plenty["variants"][0]["id"] not in {s["variant_id"] for s in running_low}
    by_name = (await client.get(url, params={"q": "sau rieng"}, headers=account.headers)).json()["items"]
    assert len(by_name) == 2
    with_archived = (await client.get(url, params={"include_archived": True}, headers=account.headers)).json()
    assert len(with_archived["items"]) == 5
    first_page = (await client.get(url, params={"limit": 3}, headers=account.headers)).json()
    rest = (await client.get(url, params={"cursor": first_page["next_cursor"]}, headers=account.headers)).json()
    assert [s["variant_id"] for s in first_page["items"] + rest["items"]] == [s["variant_id"] for s in everything]


async def test_stock_changes_dirty_the_variants_listings(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await register(client)
    product = await create_product(client, account, variants=2, initial_stock=5)
    changed, untouched = product["variants"]
    listing = await add_listing(
        sessionmaker, organization_id=account.organization_id, product_id=product["id"], variant_id=changed["id"]
    )
    other = await add_listing(
        sessionmaker, organization_id=account.organization_id, product_id=product["id"], variant_id=untouched["id"]
    )
    await adjust(client, account, changed["id"], -1)
    await set_stock(client, account, changed["id"], 9)
    await set_stock(client, account, changed["id"], 9)  # no change, nothing to push
    assert await desired_version(sessionmaker, listing) == 3
    assert await desired_version(sessionmaker, other) == 1


async def test_another_tenants_stock_answers_like_a_missing_variant(client: httpx.AsyncClient) -> None:
    owner, stranger = await register(client), await register(client, name="Hộ khác")
    variant_id = await stocked_variant(client, owner, 5)
    missing = str(uuid.uuid4())
    for method, path, body in [
        ("GET", "/api/v1/variants/{}/stock", None),
        ("PUT", "/api/v1/variants/{}/stock", {"on_hand": 0, "reason": "x"}),
        ("POST", "/api/v1/variants/{}/stock/adjustments", {"delta": -5, "kind": "adjust", "reason": "x"}),
        ("GET", "/api/v1/variants/{}/stock/movements", None),
    ]:
        theirs = await client.request(method, path.format(variant_id), json=body, headers=stranger.headers)
        nothing = await client.request(method, path.format(missing), json=body, headers=stranger.headers)
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.json() == nothing.json()
    peek = await client.get(f"/api/v1/organizations/{owner.organization_id}/stock", headers=stranger.headers)
    assert peek.status_code == 404
    stock = await client.get(f"/api/v1/variants/{variant_id}/stock", headers=owner.headers)
    assert stock.json()["on_hand"] == 5
