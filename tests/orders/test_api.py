"""The orders API: the list with its filters, one order with its lines, and shipping or cancelling it on the
Shopee and Lazada sandboxes, which moves the status and the stock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from agrimarket.channels.registry import load
from agrimarket.config import Settings
from agrimarket.media.storage import storage_for
from agrimarket.models import OrderStatus
from agrimarket.orders.inbox import InboxDrainer
from agrimarket.sandbox.core import Fault
from agrimarket.sync.runtime import SyncRuntime, use_runtime
from tests.factories import Account, register
from tests.orders.sandbox import Shop, open_shop, push
from tests.orders.support import Db, level

SHIP_OPS = {"shopee": ["logistics.ship_order"], "lazada": ["/order/fulfill/pack", "/order/package/rts"]}


@pytest.fixture
async def account(committing_client: httpx.AsyncClient) -> Account:
    return await register(committing_client, kind="cooperative", name="HTX Sầu riêng")


@pytest.fixture(params=["shopee", "lazada"])
async def shop(
    request: pytest.FixtureRequest, db: Db, worker_settings: Settings, account: Account
) -> AsyncIterator[Shop]:
    organization_id = uuid.UUID(account.organization_id)
    async for opened in open_shop(db, worker_settings, str(request.param), organization_id=organization_id):
        yield opened


@pytest.fixture(autouse=True)
def sandbox_runtime(shop: Shop, worker_settings: Settings) -> Iterator[None]:
    parts = SyncRuntime(
        channels=load(),
        http=shop.http,
        storage=storage_for(worker_settings.media_storage_url, worker_settings.data_dir),
    )
    with use_runtime(parts):
        yield


async def _ingested(db: Db, settings: Settings, shop: Shop, quantity: int = 2) -> str:
    order_id = await shop.place_order(quantity)
    await push(db, shop, order_id)
    await InboxDrainer(db, settings, channels=load(), http=shop.http, owner="api-test").drain(shop.connection.id)
    return order_id


async def _find(client: httpx.AsyncClient, account: Account, **query: Any) -> list[dict[str, Any]]:
    response = await client.get(
        f"/api/v1/organizations/{account.organization_id}/orders", params=query, headers=account.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_orders_are_listed_newest_first_with_filters_and_shown_with_their_lines(
    db: Db, worker_settings: Settings, shop: Shop, account: Account, committing_client: httpx.AsyncClient
) -> None:
    external_id = await _ingested(db, worker_settings, shop)

    [row] = await _find(committing_client, account)
    assert (row["external_id"], row["channel"], row["oversold"], row["unknown_sku"]) == (
        external_id,
        shop.world.channel,
        False,
        False,
    )
    assert await _find(committing_client, account, channel=shop.world.channel, oversold="false") != []
    assert await _find(committing_client, account, oversold="true") == []
    assert await _find(committing_client, account, unknown_sku="true") == []
    assert await _find(committing_client, account, status="shipped") == []
    assert await _find(committing_client, account, placed_from="2000-01-01", placed_to="2999-12-31") != []
    assert await _find(committing_client, account, placed_to="2000-01-01") == []
    assert await _find(committing_client, account, connection_id=str(uuid.uuid4())) == []

    response = await committing_client.get(f"/api/v1/orders/{row['id']}", headers=account.headers)
    assert response.status_code == 200, response.text
    [line] = response.json()["lines"]
    assert (line["variant_id"], line["sku"], line["quantity"], line["reserved_quantity"]) == (
        str(shop.variant_id),
        shop.sku,
        2,
        2,
    )


async def test_shipping_through_the_api_ships_on_the_marketplace_and_sells_the_held_stock(
    db: Db, worker_settings: Settings, shop: Shop, account: Account, committing_client: httpx.AsyncClient
) -> None:
    await _ingested(db, worker_settings, shop)
    [row] = await _find(committing_client, account)

    response = await committing_client.post(f"/api/v1/orders/{row['id']}/ship", json={}, headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "shipped"
    for op in SHIP_OPS[shop.world.channel]:
        assert shop.world.market.calls_of(op), op
    stock = await level(db, shop.variant_id)
    assert (stock.on_hand, stock.reserved) == (8, 0)

    again = await committing_client.post(f"/api/v1/orders/{row['id']}/ship", json={}, headers=account.headers)
    assert again.status_code == 200
    assert (await level(db, shop.variant_id)).on_hand == 8


async def test_cancelling_through_the_api_cancels_on_the_marketplace_and_frees_the_hold(
    db: Db, worker_settings: Settings, shop: Shop, account: Account, committing_client: httpx.AsyncClient
) -> None:
    await _ingested(db, worker_settings, shop)
    [row] = await _find(committing_client, account)

    response = await committing_client.post(
        f"/api/v1/orders/{row['id']}/cancel", json={"reason": "Hết hàng"}, headers=account.headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["status"] == OrderStatus.cancelled.value
    stock = await level(db, shop.variant_id)
    assert (stock.on_hand, stock.reserved) == (10, 0)
    shipped = await committing_client.post(f"/api/v1/orders/{row['id']}/ship", json={}, headers=account.headers)
    assert shipped.status_code == 409


async def test_a_marketplace_that_does_not_answer_gives_503_and_changes_nothing(
    db: Db, worker_settings: Settings, shop: Shop, account: Account, committing_client: httpx.AsyncClient
) -> None:
    await _ingested(db, worker_settings, shop)
    [row] = await _find(committing_client, account)
    shop.world.market.inject("*", Fault.server_error, times=20)

    response = await committing_client.post(f"/api/v1/orders/{row['id']}/ship", json={}, headers=account.headers)

    assert response.status_code == 503, response.text
    assert "Try again" in response.json()["message"]
    assert (await level(db, shop.variant_id)).reserved == 2
