"""The Shopee adapter, written against the real platform, runs the whole channel port against the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from agrimarket.channels.base import (
    EventKind,
    ListingDraft,
    PriceUpdate,
    Shipment,
    StockUpdate,
    VariantDraft,
)
from agrimarket.channels.errors import AuthExpired, ChannelNotFound, Rejected
from agrimarket.models.orders import OrderStatus
from agrimarket.sandbox.shopee import ShopeeSandbox
from tests.channels.shopee.conftest import CALLBACK_URL, connect
from tests.channels.support import FakeClock, PushReceiver, photo

DAY = 86400


def variant(sku: str, name: str, price: int = 150_000, stock: int = 10, grams: int = 1000) -> VariantDraft:
    return VariantDraft(sku=sku, name=name, price_vnd=price, stock=stock, weight_grams=grams, unit="hộp")


def draft(*variants: VariantDraft, item_id: str | None = None, uploaded: dict[str, str] | None = None) -> ListingDraft:
    import uuid

    return ListingDraft(
        product_id=uuid.UUID(int=1),
        title="Hạt điều rang muối Bình Phước",
        description="Điều loại A, rang củi.",
        variants=variants,
        images=[photo((200, 120, 40)), photo((90, 60, 30))],
        external_item_id=item_id,
        uploaded_images=uploaded or {},
    )


async def test_publish_with_variants_uploads_images_and_maps_each_sku_to_its_model(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    result = await adapter.publish(draft(variant("DIEU-500", "Hộp 500 g", 90_000), variant("DIEU-1K", "Hộp 1 kg")))
    shop_id = adapter.credentials["shop_id"]
    item = sandbox.item(shop_id, result.external_item_id)
    assert item.name == "Hạt điều rang muối Bình Phước"
    assert item.image_ids == list(result.uploaded_images.values())
    assert len(result.uploaded_images) == 2
    models = {sku.seller_sku: sku for sku in item.skus.values()}
    assert {sku: str(models[sku].sku_id) for sku in ("DIEU-500", "DIEU-1K")} == dict(result.external_sku_ids)
    assert (models["DIEU-500"].name, models["DIEU-500"].price_vnd) == ("Hộp 500 g", 90_000)
    assert sandbox.extras[item.item_id].tier_names == ["Quy cách"]
    assert len(sandbox.market.calls_of("media_space.upload_image")) == 2
    image = await http.get(sandbox.market.images[item.image_ids[0]].url)
    assert image.headers["content-type"] == "image/jpeg"


async def test_images_already_uploaded_are_not_uploaded_again(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    first = await adapter.publish(draft(variant("DIEU-1K", "Hộp 1 kg")))
    again = await adapter.publish(
        draft(variant("DIEU-1K", "Hộp 1 kg"), item_id=first.external_item_id, uploaded=dict(first.uploaded_images))
    )
    assert len(sandbox.market.calls_of("media_space.upload_image")) == 2
    assert again.uploaded_images == first.uploaded_images


async def test_single_variant_item_has_no_tiers_and_uses_model_id_zero(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    result = await adapter.publish(draft(variant("MAT-ONG", "Chai 500 ml", 120_000, 7)))
    assert result.external_sku_ids == {"MAT-ONG": "0"}
    item = sandbox.item(adapter.credentials["shop_id"], result.external_item_id)
    assert (item.skus[0].seller_sku, item.skus[0].stock, item.skus[0].price_vnd) == ("MAT-ONG", 7, 120_000)
    assert sandbox.market.calls_of("product.init_tier_variation") == []


async def test_republish_adds_a_new_sku_as_a_model_and_keeps_the_existing_model_ids(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    first = await adapter.publish(draft(variant("DIEU-500", "Hộp 500 g", 90_000), variant("DIEU-1K", "Hộp 1 kg")))
    second = await adapter.publish(
        draft(
            variant("DIEU-500", "Hộp 500 g", 90_000),
            variant("DIEU-1K", "Hộp 1 kg"),
            variant("DIEU-5K", "Thùng 5 kg", 700_000, 3),
            item_id=first.external_item_id,
            uploaded=dict(first.uploaded_images),
        )
    )
    assert second.external_item_id == first.external_item_id
    for sku in ("DIEU-500", "DIEU-1K"):
        assert second.external_sku_ids[sku] == first.external_sku_ids[sku]
    item = sandbox.item(adapter.credentials["shop_id"], first.external_item_id)
    added = item.skus[int(second.external_sku_ids["DIEU-5K"])]
    assert (added.name, added.price_vnd, added.stock) == ("Thùng 5 kg", 700_000, 3)
    assert sandbox.extras[item.item_id].options == [["Hộp 500 g", "Hộp 1 kg", "Thùng 5 kg"]]


async def test_stock_and_price_batches_apply_per_item_and_report_refused_models_as_failures(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    one = await adapter.publish(draft(variant("A-1", "Hộp 1 kg"), variant("A-2", "Hộp 2 kg")))
    two = await adapter.publish(draft(variant("B-1", "Chai")))
    item_a, item_b = one.external_item_id, two.external_item_id
    stock = await adapter.set_stock(
        [
            StockUpdate(item_a, one.external_sku_ids["A-1"], "A-1", 4),
            StockUpdate(item_a, "999", "GHOST", 1),  # no such model: refused, the rest applied
            StockUpdate(item_b, "0", "B-1", 9),
            StockUpdate("424242", "0", "GONE", 1),  # no such item: its entry fails alone
        ]
    )
    shop_id = adapter.credentials["shop_id"]
    assert sandbox.item(shop_id, item_a).skus[int(one.external_sku_ids["A-1"])].stock == 4
    assert sandbox.item(shop_id, item_b).skus[0].stock == 9
    assert {f.sku: type(f.error) for f in stock.failures} == {"GHOST": Rejected, "GONE": ChannelNotFound}
    assert len(sandbox.market.calls_of("product.update_stock", outcome=None)) == 3  # one call per item

    prices = await adapter.set_prices(
        [PriceUpdate(item_a, one.external_sku_ids["A-2"], "A-2", 210_000), PriceUpdate(item_a, "999", "GHOST", 1000)]
    )
    assert sandbox.item(shop_id, item_a).skus[int(one.external_sku_ids["A-2"])].price_vnd == 210_000
    assert [f.sku for f in prices.failures] == ["GHOST"]
    assert "does not exist" in prices.failures[0].error.message


async def test_more_than_fifty_models_of_one_item_go_in_calls_of_at_most_fifty(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    result = await adapter.publish(draft(variant("C-0", "Chai")))
    updates = [StockUpdate(result.external_item_id, "0", "C-0", n) for n in range(60)]
    outcome = await adapter.set_stock(updates)
    assert outcome.ok
    assert [c.size for c in sandbox.market.calls_of("product.update_stock")] == [50, 10]


async def test_delist_unlists_the_item_and_publishing_again_relists_it(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    result = await adapter.publish(draft(variant("D-1", "Hộp")))
    item = sandbox.item(adapter.credentials["shop_id"], result.external_item_id)
    await adapter.delist(result.external_item_id)
    assert item.status == "UNLIST"
    await adapter.publish(
        draft(variant("D-1", "Hộp"), item_id=result.external_item_id, uploaded=dict(result.uploaded_images))
    )
    assert item.status == "NORMAL"
    with pytest.raises(ChannelNotFound):
        await adapter.delist("424242")


async def test_orders_over_more_than_fifteen_days_are_listed_window_by_window_and_page_by_page(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    await adapter.publish(draft(variant("E-1", "Hộp", stock=10_000)))
    shop_id = adapter.credentials["shop_id"]
    since = datetime.fromtimestamp(clock(), UTC)
    placed: list[str] = []
    for day in (1, 20, 40):  # three windows of 15 days, 105 orders in the first (two pages)
        clock.now = since.timestamp() + day * DAY
        for _ in range(105 if day == 1 else 2):
            placed.append(await sandbox.place_order(shop_id, [("E-1", 1)]))
            clock.advance(1)
    clock.now = since.timestamp() + 45 * DAY
    sandbox.shop(shop_id).access_expires_at = clock() + 3600  # the test skips the refreshes of those weeks
    until = since + timedelta(days=45)

    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        page = await adapter.list_orders(since=since, until=until, cursor=cursor)
        pages += 1
        seen.extend(ref.external_id for ref in page.orders)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(placed)
    assert len(seen) == len(set(seen))
    assert pages == 4  # 100 + 5 in the first window, then one page each for days 20 and 40
    for call in sandbox.market.calls_of("order.get_order_list"):
        assert call.outcome == "ok"


async def test_get_orders_reads_details_in_batches_of_fifty_with_statuses_and_integer_vnd(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    result = await adapter.publish(
        draft(variant("F-1", "Hộp 1 kg", 150_000, 1000), variant("F-2", "Hộp 2 kg", 280_000))
    )
    shop_id = adapter.credentials["shop_id"]
    numbers = [await sandbox.place_order(shop_id, [("F-1", 1)]) for _ in range(55)]
    mixed = await sandbox.place_order(shop_id, [("F-1", 2), ("F-2", 1)], paid=False, shipping_fee_vnd=15_000)
    orders = await adapter.get_orders([*numbers, mixed, "NO-SUCH-ORDER"])
    assert len(orders) == 56
    assert [c.size for c in sandbox.market.calls_of("order.get_order_detail")] == [1, 1]  # GET: no body
    by_id = {o.external_id: o for o in orders}
    assert by_id[numbers[0]].status is OrderStatus.ready_to_ship
    order = by_id[mixed]
    assert order.status is OrderStatus.unpaid
    assert order.platform_status == "UNPAID"
    assert order.total_vnd == 2 * 150_000 + 280_000 + 15_000
    assert order.shipping_fee_vnd == 15_000
    assert {(line.sku, line.quantity, line.unit_price_vnd) for line in order.lines} == {
        ("F-1", 2, 150_000),
        ("F-2", 1, 280_000),
    }
    assert {line.external_sku_id for line in order.lines} == set(result.external_sku_ids.values())
    assert all(isinstance(line.unit_price_vnd, int) for line in order.lines)


async def test_ship_arranges_pickup_or_a_dropoff_with_the_given_tracking_number(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    await adapter.publish(draft(variant("G-1", "Hộp", stock=10)))
    shop_id = adapter.credentials["shop_id"]
    pickup = await sandbox.place_order(shop_id, [("G-1", 1)])
    dropoff = await sandbox.place_order(shop_id, [("G-1", 1)])
    await adapter.ship(pickup, Shipment())
    await adapter.ship(dropoff, Shipment(tracking_number="GHN123456"))
    orders = sandbox.shop(shop_id).orders
    assert orders[pickup].status == "PROCESSED"
    assert (orders[pickup].tracking_number or "").startswith("SPXVN")
    assert (orders[dropoff].status, orders[dropoff].tracking_number) == ("PROCESSED", "GHN123456")
    (shipped,) = await adapter.get_orders([pickup])
    assert shipped.status is OrderStatus.ready_to_ship
    with pytest.raises(Rejected, match="cannot be shipped"):
        await adapter.ship(pickup, Shipment())


async def test_cancel_for_lack_of_stock_names_the_models_and_puts_the_units_back(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    result = await adapter.publish(draft(variant("H-1", "Hộp", stock=5)))
    shop_id = adapter.credentials["shop_id"]
    order_sn = await sandbox.place_order(shop_id, [("H-1", 2)])
    item = sandbox.item(shop_id, result.external_item_id)
    assert item.skus[0].stock == 3
    await adapter.cancel(order_sn, "hết hàng")
    assert sandbox.shop(shop_id).orders[order_sn].cancel_reason == "OUT_OF_STOCK"
    assert item.skus[0].stock == 5
    (cancelled,) = await adapter.get_orders([order_sn])
    assert cancelled.status is OrderStatus.cancelled
    with pytest.raises(Rejected):
        await adapter.cancel(order_sn, "customer asked")


async def test_buyer_order_pushes_a_signed_code_3_that_the_adapter_verifies(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock, received: PushReceiver
) -> None:
    adapter = connect(sandbox, http, clock)
    shop_id = adapter.credentials["shop_id"]
    sandbox.set_callback(shop_id, CALLBACK_URL)
    await adapter.publish(draft(variant("I-1", "Hộp", stock=1)))
    order_sn = await sandbox.place_order(shop_id, [("I-1", 3)])  # more than Shopee holds: stock stops at 0
    assert sandbox.shop(shop_id).by_seller_sku("I-1")[1].stock == 0  # type: ignore[index]
    await sandbox.market.drain()
    ((url, headers, body),) = received.delivered
    event = adapter.parse_webhook(url=url, headers=headers, body=body)
    assert (event.kind, list(event.order_ids)) == (EventKind.order, [order_sn])
    assert event.external_id.startswith(f"3:{order_sn}:READY_TO_SHIP:")


async def test_shop_page_form_places_an_order_and_pushes_it(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock, received: PushReceiver
) -> None:
    adapter = connect(sandbox, http, clock)
    shop_id = adapter.credentials["shop_id"]
    await adapter.publish(draft(variant("J-1", "Hộp", stock=4)))
    sandbox.app_callback_url = CALLBACK_URL
    page = await http.get(f"http://shopee.test/sandbox/shops/{shop_id}")
    assert "Hạt điều rang muối Bình Phước" in page.text
    assert "/sandbox/images/" in page.text
    bought = await http.post(f"http://shopee.test/sandbox/shops/{shop_id}/orders", data={"seller_sku": "J-1"})
    assert bought.status_code == 303
    assert sandbox.shop(shop_id).by_seller_sku("J-1")[1].stock == 3  # type: ignore[index]
    await sandbox.market.drain()
    assert len(received.delivered) == 1


async def test_refresh_returns_a_new_single_use_refresh_token_and_the_old_one_is_refused(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    credentials = sandbox.add_shop("Hợp tác xã tiêu")
    adapter = connect(sandbox, http, clock, credentials)
    fresh = await adapter.refresh_credentials()
    assert fresh["refresh_token"] != credentials["refresh_token"]
    assert fresh["access_token"] != credentials["access_token"]
    assert fresh["access_expires_at"] == int(clock()) + 4 * 3600
    await adapter.set_stock([])  # the new access token works (no call needed for nothing)
    stale = connect(sandbox, http, clock, credentials)
    with pytest.raises(AuthExpired) as refused:
        await stale.refresh_credentials()
    assert refused.value.code == "error_shop_refresh_token"
    again = await adapter.refresh_credentials()  # the new refresh token works, once
    assert again["refresh_token"] != fresh["refresh_token"]


async def test_an_expired_access_token_is_auth_expired_and_works_again_after_refresh(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    result = await adapter.publish(draft(variant("K-1", "Hộp")))
    clock.advance(4 * 3600 + 1)
    with pytest.raises(AuthExpired) as expired:
        await adapter.delist(result.external_item_id)
    assert expired.value.code == "invalid_access_token"
    await adapter.refresh_credentials()
    await adapter.delist(result.external_item_id)
    assert sandbox.item(adapter.credentials["shop_id"], result.external_item_id).status == "UNLIST"


async def test_the_adapter_works_against_the_sandbox_mounted_under_a_prefix(
    sandbox: ShopeeSandbox, clock: FakeClock
) -> None:
    host = Starlette(routes=[Mount("/sandbox/shopee", app=sandbox.app)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=host)) as http:
        adapter = connect(sandbox, http, clock, base_url="http://127.0.0.1:8000/sandbox/shopee")
        result = await adapter.publish(draft(variant("L-1", "Hộp"), variant("L-2", "Thùng")))
        item = sandbox.item(adapter.credentials["shop_id"], result.external_item_id)
        image = await http.get(sandbox.market.images[item.image_ids[0]].url)
    assert sandbox.market.images[item.image_ids[0]].url.startswith(
        "http://127.0.0.1:8000/sandbox/shopee/sandbox/images/"
    )
    assert image.status_code == 200


async def test_a_restored_sandbox_keeps_shops_tiers_and_orders_so_republishing_still_works(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    credentials = sandbox.add_shop("Nông sản Bình Phước")
    adapter = connect(sandbox, http, clock, credentials)
    first = await adapter.publish(draft(variant("M-1", "Hộp 1 kg"), variant("M-2", "Hộp 2 kg")))
    order_sn = await sandbox.place_order(credentials["shop_id"], [("M-1", 1)])

    reborn = ShopeeSandbox(clock=clock)
    reborn.restore(sandbox.snapshot())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=reborn.app)) as reborn_http:
        again = connect(reborn, reborn_http, clock, credentials)
        second = await again.publish(
            draft(
                variant("M-1", "Hộp 1 kg"),
                variant("M-2", "Hộp 2 kg"),
                variant("M-3", "Thùng 5 kg"),
                item_id=first.external_item_id,
                uploaded=dict(first.uploaded_images),
            )
        )
        (order,) = await again.get_orders([order_sn])
    assert second.external_sku_ids["M-1"] == first.external_sku_ids["M-1"]
    assert order.lines[0].sku == "M-1"
