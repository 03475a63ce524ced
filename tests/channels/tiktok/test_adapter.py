"""The TikTok Shop adapter against the sandbox, for what is TikTok's own (the shared port is in
``tests/channels/contract``): prices as strings in a warehouse's inventory, idempotent creation, edit and
activation, shop cipher and warehouse read from the platform, per-unit line items, page tokens, TikTok's codes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from agrimarket.channels.base import AuthorizationRequest, EventKind, Feature, PriceUpdate, Shipment, StockUpdate
from agrimarket.channels.errors import AuthExpired, ChannelNotFound, RateLimited, Rejected, Retryable
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.channels.tiktok import CAPABILITIES, TikTokAdapter, TikTokApp, TikTokPlugin, plugin
from agrimarket.channels.tiktok.adapter import cancel_reason
from agrimarket.models.orders import OrderStatus
from agrimarket.sandbox.core import Fault, SandboxConfig
from agrimarket.sandbox.tiktok import TikTokSandbox
from tests.channels.support import FakeClock, variant
from tests.channels.tiktok.conftest import BASE, GREEN, RED, SETTINGS, connect, draft

TWO = (variant("BUOI-1", "1 quả", 120_000, 10), variant("BUOI-2", "Hộp 2 quả", 230_000, 4))


def test_the_plugin_declares_tiktoks_documented_limits() -> None:
    registry = ChannelRegistry()
    registry.add(plugin)
    assert registry.get("tiktok") is plugin
    assert (CAPABILITIES.stock_batch.max_size, CAPABILITIES.stock_batch.per_item) == (100, True)
    assert CAPABILITIES.rate_limit.documented
    assert CAPABILITIES.rate_limit.calls == 50
    assert CAPABILITIES.image_rule == "tiktok.main"
    assert (CAPABILITIES.limits.title_min, CAPABILITIES.limits.title_max, CAPABILITIES.limits.images_max) == (
        25,
        255,
        9,
    )
    assert {Feature.variants, Feature.webhooks, Feature.fulfilment, Feature.image_upload} <= CAPABILITIES.features


async def test_publish_sends_string_prices_in_vnd_and_stock_in_the_shops_warehouse(
    adapter: TikTokAdapter, sandbox: TikTokSandbox, shop: dict[str, Any]
) -> None:
    result = await adapter.publish(draft(*TWO, images=(RED, GREEN)))

    item = sandbox.item(shop["shop_id"], result.external_item_id)
    assert item.status == "ACTIVATE"
    assert item.name == "Bưởi Diễn Tân Triều loại 1, hộp quà"
    assert item.description == "<p>Bưởi ngọt, mọng nước.</p><p>Thu hoạch trong ngày.</p>"
    assert {s.seller_sku: (s.price_vnd, s.stock, s.name) for s in item.skus.values()} == {
        "BUOI-1": (120_000, 10, "1 quả"),
        "BUOI-2": (230_000, 4, "Hộp 2 quả"),
    }
    assert result.external_sku_ids == {s.seller_sku: str(s.sku_id) for s in item.skus.values()}
    assert len(sandbox.market.calls_of("/product/202309/images/upload")) == 2
    assert all(uri.startswith("tos-") for uri in result.uploaded_images.values())


async def test_a_create_retried_after_a_lost_answer_gives_back_the_same_product(
    adapter: TikTokAdapter, sandbox: TikTokSandbox, shop: dict[str, Any]
) -> None:
    listing = draft(*TWO)
    first = await adapter.publish(listing)
    again = await adapter.publish(dataclasses.replace(listing, uploaded_images=first.uploaded_images))

    assert again.external_item_id == first.external_item_id
    assert again.external_sku_ids == first.external_sku_ids
    assert len(sandbox.shop(shop["shop_id"]).items) == 1


async def test_republish_edits_in_place_keeps_a_sku_no_longer_listed_and_activates_a_delisted_product(
    adapter: TikTokAdapter, sandbox: TikTokSandbox, shop: dict[str, Any]
) -> None:
    first = await adapter.publish(draft(*TWO))
    await adapter.delist(first.external_item_id)
    item = sandbox.item(shop["shop_id"], first.external_item_id)
    assert item.status == "SELLER_DEACTIVATED"

    again = await adapter.publish(
        draft(
            variant("BUOI-1", "1 quả", 125_000, 9),
            variant("BUOI-3", "Hộp 3 quả", 330_000, 2),
            title="Bưởi Diễn Tân Triều loại đặc biệt",
            external_item_id=first.external_item_id,
            uploaded_images=first.uploaded_images,
        )
    )

    assert item.status == "ACTIVATE"
    assert item.name == "Bưởi Diễn Tân Triều loại đặc biệt"
    assert again.external_sku_ids["BUOI-1"] == first.external_sku_ids["BUOI-1"]
    skus = {s.seller_sku: (s.price_vnd, s.stock) for s in item.skus.values()}
    assert skus == {"BUOI-1": (125_000, 9), "BUOI-2": (230_000, 4), "BUOI-3": (330_000, 2)}
    assert len(sandbox.market.calls_of("/product/202309/images/upload")) == 1


async def test_the_cipher_and_warehouse_are_read_from_tiktok_once_when_the_credentials_lack_them(
    shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock, sandbox: TikTokSandbox
) -> None:
    bare = {key: value for key, value in shop.items() if key not in {"shop_cipher", "warehouse_id"}}
    adapter = connect(bare, http, clock)

    published = await adapter.publish(draft(*TWO))
    await adapter.set_stock(
        [StockUpdate(published.external_item_id, published.external_sku_ids["BUOI-1"], "BUOI-1", 3)]
    )

    assert len(sandbox.market.calls_of("/authorization/202309/shops")) == 1
    assert len(sandbox.market.calls_of("/logistics/202309/warehouses")) == 1
    assert sandbox.shop(shop["shop_id"]).by_seller_sku("BUOI-1")[1].stock == 3  # type: ignore[index]


async def test_stock_and_prices_go_one_call_per_product_and_a_refused_product_fails_its_skus(
    adapter: TikTokAdapter, sandbox: TikTokSandbox, shop: dict[str, Any]
) -> None:
    one = await adapter.publish(draft(*TWO))
    other = await adapter.publish(draft(variant("CAM-1", "1 kg", 60_000, 5)))
    await adapter.delist(other.external_item_id)  # TikTok updates only an ACTIVATE product
    updates = [
        StockUpdate(one.external_item_id, one.external_sku_ids["BUOI-1"], "BUOI-1", 0),
        StockUpdate(one.external_item_id, one.external_sku_ids["BUOI-2"], "BUOI-2", 8),
        StockUpdate(other.external_item_id, other.external_sku_ids["CAM-1"], "CAM-1", 1),
    ]
    before = len(sandbox.market.calls)

    result = await adapter.set_stock(updates)
    prices = await adapter.set_prices(
        [PriceUpdate(one.external_item_id, one.external_sku_ids["BUOI-2"], "BUOI-2", 240_000)]
    )

    assert len(sandbox.market.calls) - before == 3
    assert [f.sku for f in result.failures] == ["CAM-1"]
    assert isinstance(result.failures[0].error, Rejected)
    assert prices.ok
    items = sandbox.shop(shop["shop_id"])
    assert items.by_seller_sku("BUOI-1")[1].stock == 0  # type: ignore[index]
    assert items.by_seller_sku("BUOI-2")[1].price_vnd == 240_000  # type: ignore[index]
    assert await adapter.read_stock([(one.external_item_id, one.external_sku_ids["BUOI-2"]), ("999", "1")]) == {
        (one.external_item_id, one.external_sku_ids["BUOI-2"]): 8
    }


async def test_orders_come_in_pages_by_token_and_in_details_of_fifty(
    adapter: TikTokAdapter, sandbox: TikTokSandbox, shop: dict[str, Any], clock: FakeClock
) -> None:
    await adapter.publish(draft(variant("BUOI-1", "1 quả", 120_000, 500)))
    since = datetime.fromtimestamp(clock.now, UTC)
    ids = []
    for _ in range(120):
        ids.append(await sandbox.place_order(shop["shop_id"], [("BUOI-1", 1)]))
        clock.advance(1)
    until = datetime.fromtimestamp(clock.now, UTC) + timedelta(seconds=1)

    first = await adapter.list_orders(since=since, until=until)
    second = await adapter.list_orders(since=since, until=until, cursor=first.next_cursor)
    before = len(sandbox.market.calls_of("/order/202309/orders"))
    orders = await adapter.get_orders(ids)

    assert len(first.orders) == 100
    assert first.next_cursor
    assert second.next_cursor is None
    assert [ref.external_id for ref in [*first.orders, *second.orders]] == ids  # oldest first
    assert len(sandbox.market.calls_of("/order/202309/orders")) - before == 3
    assert {o.external_id for o in orders} == set(ids)


async def test_an_order_is_read_in_whole_dong_one_line_per_sku(
    adapter: TikTokAdapter, sandbox: TikTokSandbox, shop: dict[str, Any]
) -> None:
    await adapter.publish(draft(*TWO))
    order_id = await sandbox.place_order(
        shop["shop_id"], [("BUOI-1", 3), ("BUOI-2", 1)], buyer_name="Nguyễn Thị Hoa", shipping_fee_vnd=15_000
    )

    [order] = await adapter.get_orders([order_id])

    assert (order.status, order.platform_status) == (OrderStatus.paid, "AWAITING_SHIPMENT")
    assert {(li.sku, li.quantity, li.unit_price_vnd) for li in order.lines} == {
        ("BUOI-1", 3, 120_000),
        ("BUOI-2", 1, 230_000),
    }
    assert (order.total_vnd, order.shipping_fee_vnd, order.buyer_name) == (605_000, 15_000, "Nguyễn Thị Hoa")


async def test_ship_arranges_the_package_once_and_cancel_picks_the_reason_for_the_status(
    adapter: TikTokAdapter, sandbox: TikTokSandbox, shop: dict[str, Any]
) -> None:
    await adapter.publish(draft(*TWO))
    paid = await sandbox.place_order(shop["shop_id"], [("BUOI-1", 2)])
    unpaid = await sandbox.place_order(shop["shop_id"], [("BUOI-2", 1)], paid=False)

    await adapter.ship(paid, Shipment(tracking_number="GHN123"))
    await adapter.ship(paid, Shipment())  # already arranged: nothing to do
    await adapter.cancel(unpaid, "Khách yêu cầu hủy")

    assert len(sandbox.market.calls_of("/fulfillment/202309/packages/{package_id}/ship")) == 1
    orders = {o.external_id: o for o in await adapter.get_orders([paid, unpaid])}
    assert orders[paid].platform_status == "AWAITING_COLLECTION"
    assert orders[unpaid].status is OrderStatus.cancelled
    assert sandbox.shop(shop["shop_id"]).orders[unpaid].cancel_reason == (
        "seller_cancel_unpaid_reason_buyer_requested_cancellation"
    )
    assert sandbox.shop(shop["shop_id"]).by_seller_sku("BUOI-2")[1].stock == 4  # type: ignore[index]
    with pytest.raises(Rejected):
        await adapter.cancel(paid, "hết hàng")  # TikTok lets the seller cancel only until shipment is arranged
    with pytest.raises(ChannelNotFound):
        await adapter.ship("576000000000000000", Shipment())


def test_cancel_reasons_follow_the_orders_status() -> None:
    assert cancel_reason("Hết hàng", unpaid=False) == "seller_cancel_reason_out_of_stock"
    assert cancel_reason("Không giao được địa chỉ này", unpaid=False) == "seller_cancel_paid_reason_address_not_deliver"
    assert cancel_reason("sai giá", unpaid=True) == "seller_cancel_unpaid_reason_wrong_price"
    assert cancel_reason("address", unpaid=True) == "seller_cancel_unpaid_reason_out_of_stock"


async def test_pushes_are_verified_deduped_by_notification_id_and_a_sold_out_sku_is_a_stock_event(
    shop: dict[str, Any], clock: FakeClock, sandbox: TikTokSandbox
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    def hook(request: httpx.Request) -> httpx.Response:
        received.append((dict(request.headers), request.content))
        return httpx.Response(200)

    sandbox.market.use_http(httpx.AsyncClient(transport=httpx.MockTransport(hook)))
    sandbox.set_callback(shop["shop_id"], "https://agrimarket.test/webhooks/tiktok/1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(sandbox.app), base_url=BASE) as http:
        adapter = connect(shop, http, clock)
        await adapter.publish(draft(variant("BUOI-1", "1 quả", 120_000, 2)))
        order_id = await sandbox.place_order(shop["shop_id"], [("BUOI-1", 2)])
        await sandbox.market.drain()

        events = [adapter.parse_webhook(url="https://ignored", headers=h, body=b) for h, b in received]

    by_kind = {e.kind: e for e in events}
    assert sorted(by_kind) == sorted([EventKind.order, EventKind.stock])
    assert by_kind[EventKind.order].order_ids == [order_id]
    assert by_kind[EventKind.order].external_id.startswith("tts:")
    assert by_kind[EventKind.stock].data["data"]["current_inventory_status"] == "OUT_OF_STOCK"


async def test_tiktoks_codes_become_channel_errors(
    adapter: TikTokAdapter, sandbox: TikTokSandbox, shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock
) -> None:
    sandbox.market.inject("/order/202309/orders", Fault.throttle)
    with pytest.raises(RateLimited) as throttled:
        await adapter.get_orders(["1"])
    assert (throttled.value.code, throttled.value.status, throttled.value.retry_after) == ("36009002", 429, 1.0)

    sandbox.market.inject("/order/202309/orders", Fault.server_error)
    with pytest.raises(Retryable) as unavailable:
        await adapter.get_orders(["1"])
    assert unavailable.value.status == 503

    wrong_secret = connect({**shop, "app_secret": "not-the-secret"}, http, clock)
    with pytest.raises(Rejected) as refused:
        await wrong_secret.get_orders(["1"])
    assert (refused.value.code, refused.value.message) == ("106001", "Invalid sign.")

    with pytest.raises(Rejected, match="title"):
        await adapter.publish(draft(title="Bưởi ngắn"))

    sandbox.market.expire_access_token(shop["shop_id"])
    with pytest.raises(AuthExpired) as expired:
        await adapter.get_orders(["1"])
    assert expired.value.code == "105002"


async def test_refresh_rotates_the_tokens_and_a_spent_refresh_token_asks_for_a_new_authorisation(
    adapter: TikTokAdapter, sandbox: TikTokSandbox, shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock
) -> None:
    fresh = dict(await adapter.refresh_credentials())

    assert fresh["refresh_token"] != shop["refresh_token"]
    assert (fresh["shop_cipher"], fresh["warehouse_id"]) == (shop["shop_cipher"], shop["warehouse_id"])
    assert fresh["access_expires_at"] == int(clock.now) + 7 * 86_400
    assert await connect(fresh, http, clock).get_orders(["1"]) == []
    with pytest.raises(AuthExpired):
        await connect(shop, http, clock).refresh_credentials()


async def test_the_adapter_works_against_the_sandbox_mounted_under_a_prefix(
    sandbox: TikTokSandbox, shop: dict[str, Any], clock: FakeClock
) -> None:
    host = Starlette(routes=[Mount("/sandbox/tiktok", app=sandbox.app)])
    base = "http://demo.test/sandbox/tiktok"
    settings = {"api_url": base, "auth_url": f"{base}/auth"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(host)) as http:
        adapter = connect(shop, http, clock, settings)
        result = await adapter.publish(draft(*TWO))
        assert (
            await adapter.set_stock(
                [StockUpdate(result.external_item_id, result.external_sku_ids["BUOI-2"], "BUOI-2", 1)]
            )
        ).ok
        assert dict(await adapter.refresh_credentials())["access_token"]
        page = await http.get(f"{base}/sandbox/shops/{shop['shop_id']}")
    assert page.status_code == 200
    assert f"{base}/sandbox/images/" in page.text


async def test_connect_by_authorisation_round_trip(
    sandbox: TikTokSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    sandbox.set_redirect_url("https://agrimarket.test/channels/callback/tiktok")
    sandbox.add_shop("Vườn cam Vinh")
    app = TikTokApp(app_key=sandbox.app_key, app_secret=sandbox.app_secret, service_id=sandbox.service_id)
    tiktok = TikTokPlugin(app, clock=clock)
    request = AuthorizationRequest(redirect_uri="https://agrimarket.test/ignored", state="st-1", settings=SETTINGS)

    url = tiktok.authorization_url(request)
    assert url.startswith(f"{BASE}/services/open/authorize?")
    page = await http.get(url)
    assert "Vườn cam Vinh" in page.text
    back = await http.get(url + "&shop_name=Vườn+bưởi+Phúc+Trạch")
    assert back.status_code == 302
    location = back.headers["location"]
    assert location.startswith("https://agrimarket.test/channels/callback/tiktok?")
    callback = dict(parse_qsl(urlsplit(location).query))
    assert callback["state"] == "st-1"

    credentials = dict(await tiktok.exchange_code(callback, request, http))
    shop_id = credentials["shop_id"]
    assert sandbox.shop(shop_id).name == "Vườn bưởi Phúc Trạch"
    assert credentials["shop_cipher"] == sandbox.cipher(shop_id)
    assert credentials["seller_name"] == "Vườn bưởi Phúc Trạch"
    assert await connect(credentials, http, clock).get_orders(["1"]) == []

    with pytest.raises(Rejected):  # the code is one-time
        await tiktok.exchange_code(callback, request, http)
    with pytest.raises(Rejected):
        await tiktok.exchange_code({"error": "auth_denied", "state": "st-1"}, request, http)
    with pytest.raises(Rejected):
        await tiktok.exchange_code({**callback, "state": "another"}, request, http)
    with pytest.raises(Rejected):
        TikTokPlugin(TikTokApp(app_key="", app_secret="", service_id=""), clock=clock).authorization_url(request)


async def test_calls_beyond_the_rate_limit_are_throttled_and_the_default_is_tiktoks_50_per_second(
    clock: FakeClock,
) -> None:
    assert (TikTokSandbox().market.config.rate_calls, TikTokSandbox().market.config.rate_documented) == (50, True)
    strict = TikTokSandbox(SandboxConfig(rate_calls=1, rate_per_seconds=10, burst=3), clock=clock)
    credentials = strict.add_shop("Vườn nhãn Hưng Yên")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(strict.app), base_url=BASE) as http:
        adapter = connect(credentials, http, clock)
        for _ in range(3):
            await adapter.get_orders(["1"])
        with pytest.raises(RateLimited):
            await adapter.get_orders(["1"])
    assert [c.outcome for c in strict.market.calls][-1] == "36009002"
