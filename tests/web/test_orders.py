"""The orders pages and a product's shops page against the Shopee and Lazada sandboxes: an order received shows on
the home page and the list (channel, "₫" total, status in Vietnamese), its detail has its lines, and shipping or
cancelling from the page goes through the API's code to the marketplace; the shop chips follow a listing."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from agrimarket.channels.registry import load
from agrimarket.config import Settings
from agrimarket.media.storage import storage_for
from agrimarket.orders.inbox import InboxDrainer
from agrimarket.sandbox.core import Fault
from agrimarket.sync.runtime import SyncRuntime, use_runtime
from tests.factories import SESSION_COOKIE, Account, register
from tests.orders.sandbox import Shop, open_shop, push
from tests.orders.support import Db, level
from tests.web.helpers import parse, post_form
from tests.worker.conftest import db, worker_settings  # noqa: F401

PAGE_BUDGET = 50 * 1024


@pytest.fixture
async def account(committing_client: httpx.AsyncClient) -> Account:
    account = await register(committing_client, kind="cooperative", name="HTX Sầu riêng")
    committing_client.cookies.set(SESSION_COOKIE, account.session_token)
    return account


@pytest.fixture(params=["shopee", "lazada"])
async def shop(
    request: pytest.FixtureRequest,
    db: Db,  # noqa: F811
    worker_settings: Settings,  # noqa: F811
    account: Account,
) -> AsyncIterator[Shop]:
    organization_id = uuid.UUID(account.organization_id)
    async for opened in open_shop(db, worker_settings, str(request.param), organization_id=organization_id):
        parts = SyncRuntime(
            channels=load(),
            http=opened.http,
            storage=storage_for(worker_settings.media_storage_url, worker_settings.data_dir),
        )
        with use_runtime(parts):
            yield opened


async def _order(db: Db, settings: Settings, shop: Shop, quantity: int = 2) -> str:  # noqa: F811
    external_id = await shop.place_order(quantity)
    await push(db, shop, external_id)
    await InboxDrainer(db, settings, channels=load(), http=shop.http, owner="web-test").drain(shop.connection.id)
    return external_id


async def _order_id(client: httpx.AsyncClient, account: Account) -> str:
    listed = await client.get(f"/api/v1/organizations/{account.organization_id}/orders")
    [row] = listed.json()["items"]
    return str(row["id"])


async def test_an_order_shows_on_home_and_the_list_and_ships_from_its_page(
    db: Db,  # noqa: F811
    worker_settings: Settings,  # noqa: F811
    shop: Shop,
    account: Account,
    committing_client: httpx.AsyncClient,
) -> None:
    external_id = await _order(db, worker_settings, shop)
    order_id = await _order_id(committing_client, account)
    shop_name = {"shopee": "Shopee", "lazada": "Lazada"}[shop.world.channel]

    home = (await committing_client.get("/")).text
    assert "Đơn hàng hôm nay" in home
    assert f"/orders/{order_id}" in home
    listed = (await committing_client.get("/orders")).text
    assert shop_name in listed
    assert re.search(r"<b class=.qty.>240\.000\s₫</b> · (Sẵn sàng gửi|Đã thanh toán: cần đóng gói và gửi)\s", listed)
    assert "BÁN QUÁ SỐ LƯỢNG" not in listed
    status = (await committing_client.get(f"/api/v1/orders/{order_id}")).json()["status"]
    assert f"/orders/{order_id}" in (await committing_client.get(f"/orders?status={status}")).text
    assert f"/orders/{order_id}" not in (await committing_client.get("/orders?status=cancelled")).text
    assert f"/orders/{order_id}" not in (await committing_client.get("/orders?oversold=1")).text

    detail = await committing_client.get(f"/orders/{order_id}")
    assert detail.status_code == 200
    assert external_id in detail.text
    assert shop.sku in detail.text
    assert "Giữ từ kho" in detail.text
    assert not parse(detail.text).unlabelled()
    css = len((await committing_client.get("/static/app.css")).content)
    for path in ("/", "/orders", f"/orders/{order_id}", f"/products/{next(iter(shop.farm.products))}/shops"):
        page = await committing_client.get(path)
        assert len(page.content) + css <= PAGE_BUDGET, path
        assert parse(page.text).lang == "vi", path
        assert not parse(page.text).unlabelled(), path

    shipped = await post_form(
        committing_client, f"/orders/{order_id}/ship", {"tracking_number": "VN123"}, page=f"/orders/{order_id}"
    )
    assert shipped.status_code == 303, shipped.text
    after = (await committing_client.get(shipped.headers["location"])).text
    assert "Đã gửi hàng" in after
    assert "VN123" in after
    assert 'action="/orders/' not in after.split("<footer")[0]
    stock = await level(db, shop.variant_id)
    assert (stock.on_hand, stock.reserved) == (8, 0)


async def test_cancel_needs_a_reason_and_a_silent_marketplace_is_said_in_vietnamese(
    db: Db,  # noqa: F811
    worker_settings: Settings,  # noqa: F811
    shop: Shop,
    account: Account,
    committing_client: httpx.AsyncClient,
) -> None:
    await _order(db, worker_settings, shop)
    order_id = await _order_id(committing_client, account)

    empty = await post_form(committing_client, f"/orders/{order_id}/cancel", {"reason": ""}, page=f"/orders/{order_id}")
    assert empty.status_code == 422
    assert 'id="e-cancel"' in empty.text

    shop.world.market.inject("*", Fault.server_error, times=20)
    refused = await post_form(
        committing_client, f"/orders/{order_id}/cancel", {"reason": "Hết hàng"}, page=f"/orders/{order_id}"
    )
    assert refused.status_code == 503
    assert "không trả lời" in refused.text
    assert 'id="e-cancel"' in refused.text
    assert (await level(db, shop.variant_id)).reserved == 2


async def test_another_farms_order_is_a_404_page(
    db: Db,  # noqa: F811
    worker_settings: Settings,  # noqa: F811
    shop: Shop,
    account: Account,
    committing_client: httpx.AsyncClient,
) -> None:
    await _order(db, worker_settings, shop)
    order_id = await _order_id(committing_client, account)
    other = await register(committing_client, name="Hộ khác")
    committing_client.cookies.set(SESSION_COOKIE, other.session_token)

    assert (await committing_client.get(f"/orders/{order_id}")).status_code == 404
    shipped = await post_form(committing_client, f"/orders/{order_id}/ship", {}, page="/orders")
    assert shipped.status_code == 404
    listing = await committing_client.get(f"/products/{uuid.uuid4()}/shops")
    assert listing.status_code == 404
    assert (await level(db, shop.variant_id)).reserved == 2


async def test_the_shops_page_shows_a_chip_per_shop_and_pauses_and_resumes(
    shop: Shop, account: Account, committing_client: httpx.AsyncClient
) -> None:
    [product_id] = list(shop.farm.products)
    page = await committing_client.get(f"/products/{product_id}/shops")
    assert page.status_code == 200
    assert 'data-state="live"' in page.text
    assert "Đang bán" in page.text

    paused = await post_form(
        committing_client,
        f"/products/{product_id}/shops/{shop.connection.id}/pause",
        {},
        page=f"/products/{product_id}/shops",
    )
    assert paused.status_code == 303
    assert 'data-state="paused"' in (await committing_client.get(f"/products/{product_id}/shops")).text

    resumed = await post_form(
        committing_client,
        f"/products/{product_id}/shops/{shop.connection.id}/resume",
        {},
        page=f"/products/{product_id}/shops",
    )
    assert resumed.status_code == 303
    assert 'data-state="syncing"' in (await committing_client.get(f"/products/{product_id}/shops")).text

    again = await post_form(
        committing_client,
        f"/products/{product_id}/shops/{shop.connection.id}/publish",
        {},
        page=f"/products/{product_id}/shops",
    )
    assert again.status_code == 409
    assert "đã có trên" in again.text
