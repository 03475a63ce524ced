"""The Lazada adapter, written against the real platform, honours the whole channel port against the sandbox."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agrimarket.channels.base import (
    ChannelAdapter,
    ConnectionInfo,
    EventKind,
    Feature,
    PriceUpdate,
    PublishResult,
    Shipment,
    StockUpdate,
)
from agrimarket.channels.errors import AuthExpired, ChannelNotFound, InvalidSignature, Rejected
from agrimarket.channels.lazada import CAPABILITIES, LazadaAdapter, LazadaPlugin, plugin
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.models.orders import OrderStatus
from agrimarket.sandbox.lazada import LazadaSandbox
from tests.channels.lazada.conftest import SETTINGS, connect, draft
from tests.channels.support import FakeClock, jpeg, variant

RED, GREEN = jpeg((200, 30, 30), 400), jpeg((30, 200, 30), 400)


async def publish_two(adapter: LazadaAdapter) -> PublishResult:
    return await adapter.publish(
        draft(
            variant("CAM-1KG", "Hộp 1 kg", 120_000, 10), variant("CAM-3KG", "Hộp 3 kg", 330_000, 4), images=(RED, GREEN)
        )
    )


def item_of(sandbox: LazadaSandbox, seller_id: str, item_id: str) -> Any:
    return sandbox.market.shops[seller_id].items[int(item_id)]


def test_plugin_declares_lazada_capabilities() -> None:
    registry = ChannelRegistry()
    registry.add(plugin)
    assert registry.get("lazada") is plugin
    assert CAPABILITIES.stock_batch.max_size <= 50
    assert CAPABILITIES.price_batch.max_size <= 50
    assert not CAPABILITIES.rate_limit.documented
    assert CAPABILITIES.image_rule == "lazada.main"
    assert CAPABILITIES.limits.title_max == 255
    assert CAPABILITIES.limits.images_max == 8
    assert {Feature.variants, Feature.webhooks, Feature.fulfilment, Feature.image_upload} <= CAPABILITIES.features


def test_adapter_implements_the_port(adapter: LazadaAdapter) -> None:
    assert isinstance(adapter, ChannelAdapter)


async def test_publish_uploads_images_and_creates_one_item_with_its_variants(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any]
) -> None:
    result = await publish_two(adapter)
    item = item_of(sandbox, shop["seller_id"], result.external_item_id)
    assert item.name == "Cam Cao Phong loại 1"
    assert item.description == "<p>Cam ngọt, mọng nước.</p><p>Thu hoạch trong ngày.</p>"
    assert {s.seller_sku: (s.price_vnd, s.stock, s.name) for s in item.skus.values()} == {
        "CAM-1KG": (120_000, 10, "Hộp 1 kg"),
        "CAM-3KG": (330_000, 4, "Hộp 3 kg"),
    }
    assert result.external_sku_ids == {s.seller_sku: str(s.sku_id) for s in item.skus.values()}
    assert set(result.uploaded_images) == {RED.content_hash, GREEN.content_hash}
    assert len(sandbox.market.calls_of("/image/upload")) == 2
    served = await adapter._http.get(result.uploaded_images[RED.content_hash])
    assert served.status_code == 200
    assert served.content == RED.data


async def test_republish_reuses_uploaded_images_adds_a_sku_and_keeps_sku_ids(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any]
) -> None:
    first = await publish_two(adapter)
    variants = [
        variant("CAM-1KG", "Hộp 1 kg", 125_000, 8, external_sku_id=first.external_sku_ids["CAM-1KG"]),
        variant("CAM-3KG", "Hộp 3 kg", 330_000, 4, external_sku_id=first.external_sku_ids["CAM-3KG"]),
        variant("CAM-5KG", "Thùng 5 kg", 520_000, 2),
    ]
    again = await adapter.publish(
        draft(
            *variants,
            images=(dataclasses.replace(RED, data=b""), dataclasses.replace(GREEN, data=b"")),
            external_item_id=first.external_item_id,
            uploaded_images=first.uploaded_images,
        )
    )
    assert again.external_item_id == first.external_item_id
    assert len(sandbox.market.calls_of("/image/upload")) == 2  # none uploaded a second time
    assert again.uploaded_images == {}
    assert again.external_sku_ids["CAM-1KG"] == first.external_sku_ids["CAM-1KG"]
    assert again.external_sku_ids["CAM-3KG"] == first.external_sku_ids["CAM-3KG"]
    item = item_of(sandbox, shop["seller_id"], first.external_item_id)
    assert len(item.skus) == 3
    assert item.skus[int(again.external_sku_ids["CAM-1KG"])].price_vnd == 125_000
    assert item.skus[int(again.external_sku_ids["CAM-5KG"])].stock == 2


async def test_publish_without_a_category_is_rejected_before_any_call(
    shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock, sandbox: LazadaSandbox
) -> None:
    adapter = connect(shop, http, clock, {"api_url": "http://lazada.test/rest"})
    with pytest.raises(Rejected) as caught:
        await adapter.publish(draft(images=(RED,)))
    assert caught.value.field == "category"
    assert sandbox.market.calls == []


async def test_stock_and_prices_apply_and_report_a_refused_sku(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any]
) -> None:
    result = await publish_two(adapter)
    item_id, ids = result.external_item_id, result.external_sku_ids
    stock = await adapter.set_stock(
        [
            StockUpdate(item_id, ids["CAM-1KG"], "CAM-1KG", 0),
            StockUpdate(item_id, ids["CAM-3KG"], "CAM-3KG", 7),
            StockUpdate(item_id, "999", "GONE", 5),
        ]
    )
    assert [failure.sku for failure in stock.failures] == ["GONE"]
    assert isinstance(stock.failures[0].error, Rejected)
    assert stock.failures[0].error.code == "SKU_NOT_FOUND"
    prices = await adapter.set_prices([PriceUpdate(item_id, ids["CAM-1KG"], "CAM-1KG", 99_000)])
    assert prices.ok
    item = item_of(sandbox, shop["seller_id"], item_id)
    assert {s.seller_sku: (s.stock, s.price_vnd) for s in item.skus.values()} == {
        "CAM-1KG": (0, 99_000),
        "CAM-3KG": (7, 330_000),
    }


async def test_more_than_fifty_skus_is_refused_with_e204(adapter: LazadaAdapter) -> None:
    updates = [StockUpdate("1", str(i), f"SKU-{i}", 1) for i in range(51)]
    with pytest.raises(Rejected) as caught:
        await adapter.set_stock(updates)
    assert caught.value.code == "E204"
    assert caught.value.message == "Too many SKU in one request"


async def test_delist_deactivates_and_publishing_again_reactivates(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any]
) -> None:
    result = await publish_two(adapter)
    await adapter.delist(result.external_item_id)
    item = item_of(sandbox, shop["seller_id"], result.external_item_id)
    assert item.status == "inactive"
    await adapter.publish(
        draft(
            variant("CAM-1KG", "Hộp 1 kg", external_sku_id=result.external_sku_ids["CAM-1KG"]),
            variant("CAM-3KG", "Hộp 3 kg", external_sku_id=result.external_sku_ids["CAM-3KG"]),
            images=(RED,),
            external_item_id=result.external_item_id,
            uploaded_images=result.uploaded_images,
        )
    )
    assert item.status == "active"
    with pytest.raises(ChannelNotFound):
        await adapter.delist("424242")


async def test_orders_are_listed_by_update_time_in_pages_of_a_hundred(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any], clock: FakeClock
) -> None:
    await publish_two(adapter)
    since = datetime.fromtimestamp(clock.now, UTC)
    placed = []
    for _ in range(105):
        clock.advance(1)
        placed.append((await sandbox.place_order(shop["seller_id"], [("CAM-1KG", 1)])).order_id)
    until = datetime.fromtimestamp(clock.now + 1, UTC)
    first = await adapter.list_orders(since=since, until=until)
    assert len(first.orders) == 100
    assert first.next_cursor == "100"
    second = await adapter.list_orders(since=since, until=until, cursor=first.next_cursor)
    assert second.next_cursor is None
    assert [o.external_id for o in (*first.orders, *second.orders)] == placed
    assert first.orders[0].updated_at == datetime.fromtimestamp(clock.now - 104, UTC)
    later = await adapter.list_orders(since=until, until=until + timedelta(hours=1))
    assert later.orders == []
    assert later.next_cursor is None


async def test_get_orders_counts_units_into_lines_in_whole_dong(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any]
) -> None:
    result = await publish_two(adapter)
    order = await sandbox.place_order(
        shop["seller_id"], [("CAM-1KG", 3), ("CAM-3KG", 1)], buyer_name="Trần Văn Bình", shipping_fee_vnd=15_000
    )
    unpaid = await sandbox.place_order(shop["seller_id"], [("CAM-1KG", 1)], paid=False)
    orders = await adapter.get_orders([order.order_id, "31337", unpaid.order_id])
    assert [o.external_id for o in orders] == [order.order_id, unpaid.order_id]
    got = orders[0]
    assert got.status is OrderStatus.paid
    assert got.platform_status == "pending"
    assert got.total_vnd == 3 * 120_000 + 330_000 + 15_000
    assert got.shipping_fee_vnd == 15_000
    assert got.buyer_name == "Trần Văn Bình"
    assert {(line.sku, line.quantity, line.unit_price_vnd, line.external_sku_id) for line in got.lines} == {
        ("CAM-1KG", 3, 120_000, result.external_sku_ids["CAM-1KG"]),
        ("CAM-3KG", 1, 330_000, result.external_sku_ids["CAM-3KG"]),
    }
    assert orders[1].status is OrderStatus.unpaid
    stock = {s.seller_sku: s.stock for s in item_of(sandbox, shop["seller_id"], result.external_item_id).skus.values()}
    assert stock == {"CAM-1KG": 6, "CAM-3KG": 3}


async def test_get_orders_reads_a_burst_of_headers_from_order_pages_not_one_call_each(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any], clock: FakeClock
) -> None:
    await publish_two(adapter)
    placed = []
    for n in range(30):
        clock.advance(1)
        placed.append(await sandbox.place_order(shop["seller_id"], [("CAM-1KG", 1 + n % 3)], shipping_fee_vnd=n))
    wanted = [o.order_id for o in placed[5:]]  # an older order or five updated before them are not asked for
    one_by_one = [await adapter.get_orders([order_id]) for order_id in wanted[:3]]
    sandbox.market.calls.clear()

    orders = await adapter.get_orders([*reversed(wanted), "31337"])

    assert [o.external_id for o in orders] == list(reversed(wanted))
    assert [o.shipping_fee_vnd for o in orders] == [o.shipping_fee_vnd for o in reversed(placed[5:])]
    assert [o.total_vnd for o in orders] == [o.total_vnd for o in reversed(placed[5:])]
    assert {o.external_id: o for o in orders}[wanted[0]] == one_by_one[0][0]
    assert len(sandbox.market.calls_of("/orders/items/get")) == 1
    assert len(sandbox.market.calls_of("/orders/get")) == 1
    assert sandbox.market.calls_of("/order/get") == []


async def orders_a_hundredth_apart(sandbox: LazadaSandbox, seller_id: str, clock: FakeClock, count: int) -> list[str]:
    """``count`` orders of one unit, placed a hundredth of a second apart (as in a flash sale): their ids."""
    placed = []
    for _ in range(count):
        clock.advance(0.01)
        placed.append((await sandbox.place_order(seller_id, [("CAM-1KG", 1)])).order_id)
    return placed


async def test_get_orders_of_more_than_one_items_call_reads_one_window_of_pages_for_the_whole_burst(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any], clock: FakeClock
) -> None:
    await publish_two(adapter)
    placed = await orders_a_hundredth_apart(sandbox, shop["seller_id"], clock, 120)
    sandbox.market.calls.clear()

    orders = await adapter.get_orders(placed)

    assert [o.external_id for o in orders] == placed
    assert len(sandbox.market.calls_of("/orders/items/get")) == 3  # 50 + 50 + 20
    # One window over all 120 (two pages of 100), not one per items call (three windows, the pages read again).
    assert len(sandbox.market.calls_of("/orders/get")) == 2
    assert sandbox.market.calls_of("/order/get") == []


async def test_a_later_burst_in_a_window_already_paged_reads_no_page_again(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any], clock: FakeClock
) -> None:
    await publish_two(adapter)
    placed = await orders_a_hundredth_apart(
        sandbox, shop["seller_id"], clock, 30
    )  # a flash sale: thirty orders within one second
    first = await adapter.get_orders(placed[:15])
    sandbox.market.calls.clear()

    later = await adapter.get_orders(placed[15:])

    assert [o.external_id for o in later] == placed[15:]
    assert sandbox.market.calls_of("/orders/get") == []  # the first burst's pages listed these orders too
    assert sandbox.market.calls_of("/order/get") == []
    assert len(sandbox.market.calls_of("/orders/items/get")) == 1
    assert [o.status for o in later] == [o.status for o in first]


async def test_the_shops_next_adapter_reads_no_page_the_last_one_read(
    sandbox: LazadaSandbox, shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Each drain of a shop builds its own adapter (a drain hands its worker slot on under load): the headers one
    drain's pages listed still spare the next drain the same pages."""
    lazada = LazadaPlugin(clock=clock)
    connection = ConnectionInfo(uuid.uuid4(), uuid.uuid4(), shop["seller_id"], shop, SETTINGS)
    first_drain = lazada.adapter(connection, http)
    assert isinstance(first_drain, LazadaAdapter)
    await publish_two(first_drain)
    placed = await orders_a_hundredth_apart(sandbox, shop["seller_id"], clock, 30)
    await first_drain.get_orders(placed[:15])
    sandbox.market.calls.clear()

    later = await lazada.adapter(connection, http).get_orders(placed[15:])
    elsewhere = await lazada.adapter(dataclasses.replace(connection, connection_id=uuid.uuid4()), http).get_orders(
        placed[15:]
    )

    assert [o.external_id for o in later] == [o.external_id for o in elsewhere] == placed[15:]
    assert len(sandbox.market.calls_of("/orders/get")) == 1  # only the other connection read a page
    assert sandbox.market.calls_of("/order/get") == []


async def test_a_kept_header_gives_way_to_the_orders_items_when_they_changed_after_it(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any], clock: FakeClock
) -> None:
    await publish_two(adapter)
    placed = await orders_a_hundredth_apart(sandbox, shop["seller_id"], clock, 10)
    await adapter.get_orders(placed)
    sandbox.set_order_status(shop["seller_id"], placed[0], "canceled")  # the same second: the times do not show it
    clock.advance(2)
    sandbox.set_order_status(shop["seller_id"], placed[1], "canceled")  # later: the items' time is newer
    sandbox.market.calls.clear()

    again = {o.external_id: o for o in await adapter.get_orders(placed)}

    assert again[placed[0]].status is OrderStatus.cancelled  # statuses from the items just read
    assert again[placed[1]].status is OrderStatus.cancelled
    assert {again[order_id].status for order_id in placed[2:]} == {OrderStatus.paid}
    assert sandbox.market.calls_of("/orders/get") == []
    assert len(sandbox.market.calls_of("/order/get")) == 1  # only the header older than its items, asked again


async def test_get_orders_asks_for_each_header_when_the_items_give_no_readable_update_time(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    await publish_two(adapter)
    placed = [(await sandbox.place_order(shop["seller_id"], [("CAM-1KG", 1)])).order_id for _ in range(9)]
    item_of_order = sandbox._order_item
    monkeypatch.setattr(sandbox, "_order_item", lambda o, line: {**item_of_order(o, line), "updated_at": "soon"})
    sandbox.market.calls.clear()

    orders = await adapter.get_orders(placed)

    assert [o.external_id for o in orders] == placed
    assert sandbox.market.calls_of("/orders/get") == []
    assert len(sandbox.market.calls_of("/order/get")) == 9


async def busy_shop(sandbox: LazadaSandbox, seller_id: str, clock: FakeClock, others: int) -> list[str]:
    """An order, ``others`` orders placed after it by other buyers, then nine more: the first and the nine."""
    asked = [(await sandbox.place_order(seller_id, [("CAM-1KG", 1)])).order_id]
    for _ in range(others):
        clock.advance(0.01)
        await sandbox.place_order(seller_id, [("CAM-1KG", 1)])
    for _ in range(9):
        clock.advance(0.01)
        asked.append((await sandbox.place_order(seller_id, [("CAM-1KG", 1)])).order_id)
    return asked


@pytest.mark.parametrize(
    ("others", "pages", "one_by_one"),
    [
        (150, 2, 0),  # 160 orders in the window: the second page is one call for nine headers missing
        (1500, 1, 9),  # 1,510: fifteen more pages would cost more calls than the nine headers one by one
    ],
)
async def test_get_orders_reads_further_order_pages_only_when_they_are_fewer_calls_than_the_headers_missing(
    adapter: LazadaAdapter,
    sandbox: LazadaSandbox,
    shop: dict[str, Any],
    clock: FakeClock,
    others: int,
    pages: int,
    one_by_one: int,
) -> None:
    await publish_two(adapter)
    asked = await busy_shop(sandbox, shop["seller_id"], clock, others=others)
    sandbox.market.calls.clear()

    orders = await adapter.get_orders(asked)

    assert [o.external_id for o in orders] == asked
    assert len(sandbox.market.calls_of("/orders/get")) == pages
    assert len(sandbox.market.calls_of("/order/get")) == one_by_one


async def test_ship_packs_pending_items_then_marks_the_package_ready(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any]
) -> None:
    await publish_two(adapter)
    order = await sandbox.place_order(shop["seller_id"], [("CAM-1KG", 2)])
    await adapter.ship(order.order_id, Shipment())
    assert {line.status for line in order.lines} == {"ready_to_ship"}
    assert len({line.package_id for line in order.lines}) == 1
    assert len(sandbox.market.calls_of("/order/fulfill/pack")) == 1
    assert len(sandbox.market.calls_of("/order/package/rts")) == 1
    await adapter.ship(order.order_id, Shipment())  # again: nothing left to pack or mark
    assert len(sandbox.market.calls_of("/order/fulfill/pack")) == 1
    [got] = await adapter.get_orders([order.order_id])
    assert got.status is OrderStatus.ready_to_ship


async def test_cancel_validates_then_cancels_every_item_and_restocks(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any]
) -> None:
    result = await publish_two(adapter)
    order = await sandbox.place_order(shop["seller_id"], [("CAM-3KG", 2)])
    await adapter.cancel(order.order_id, "Hết hàng - out of stock")
    assert {line.status for line in order.lines} == {"canceled"}
    assert order.cancel_reason == "Out of stock"
    assert len(sandbox.market.calls_of("/order/reverse/cancel/validate")) == 1
    [got] = await adapter.get_orders([order.order_id])
    assert got.status is OrderStatus.cancelled
    assert (
        item_of(sandbox, shop["seller_id"], result.external_item_id).skus[int(result.external_sku_ids["CAM-3KG"])].stock
        == 4
    )
    await adapter.cancel(order.order_id, "again")  # already cancelled: done
    shipped = await sandbox.place_order(shop["seller_id"], [("CAM-1KG", 1)])
    sandbox.set_order_status(shop["seller_id"], shipped.order_id, "shipped")
    with pytest.raises(Rejected):
        await adapter.cancel(shipped.order_id, "too late")


async def test_order_push_is_verified_and_read_and_a_forged_one_refused(
    sandbox: LazadaSandbox, shop: dict[str, Any], adapter: LazadaAdapter
) -> None:
    received: list[httpx.Request] = []

    def hook(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200)

    sandbox.market.use_http(httpx.AsyncClient(transport=httpx.MockTransport(hook)))
    sandbox.set_callback(shop["seller_id"], "https://agrimarket.test/webhooks/lazada")
    await publish_two(adapter)
    order = await sandbox.place_order(shop["seller_id"], [("CAM-1KG", 1)])
    await sandbox.market.drain()
    [push] = received
    headers, body = dict(push.headers), push.content
    event = adapter.parse_webhook(url=str(push.url), headers=headers, body=body)
    assert event.kind is EventKind.order
    assert event.order_ids == [order.order_id]
    assert event.external_id == adapter.parse_webhook(url=str(push.url), headers=headers, body=body).external_id
    assert event.occurred_at == datetime.fromtimestamp(int(order.updated_at), UTC)
    with pytest.raises(InvalidSignature):
        adapter.parse_webhook(url=str(push.url), headers=headers, body=body.replace(b"pending", b"canceled"))
    with pytest.raises(InvalidSignature):
        adapter.parse_webhook(url=str(push.url), headers={}, body=body)
    sandbox.set_order_status(shop["seller_id"], order.order_id, "delivered")
    await sandbox.market.drain()
    later = adapter.parse_webhook(url=str(push.url), headers=dict(received[1].headers), body=received[1].content)
    assert later.external_id != event.external_id


def test_other_pushes_map_to_stock_listing_auth_and_other(adapter: LazadaAdapter, shop: dict[str, Any]) -> None:
    from agrimarket.channels.lazada import push_signature

    def parse(message_type: int, data: dict[str, Any]) -> Any:
        body = json.dumps({"seller_id": shop["seller_id"], "message_type": message_type, "data": data}).encode()
        headers = {"Authorization": push_signature(shop["app_key"], shop["app_secret"], body)}
        return adapter.parse_webhook(url="", headers=headers, body=body)

    assert parse(6, {"seller_sku": "CAM-1KG", "real_quantity": 3}).kind is EventKind.stock
    assert parse(3, {"item_id": 1}).kind is EventKind.listing
    assert parse(8, {"expire_time": 1}).kind is EventKind.auth
    assert parse(21, {"review_id": 1}).kind is EventKind.other


async def test_expired_token_is_auth_expired_and_a_refresh_makes_it_work(
    adapter: LazadaAdapter, sandbox: LazadaSandbox, shop: dict[str, Any]
) -> None:
    sandbox.market.expire_access_token(shop["seller_id"])
    with pytest.raises(AuthExpired) as caught:
        await publish_two(adapter)
    assert caught.value.code == "IllegalAccessToken"
    fresh = await adapter.refresh_credentials()
    assert fresh["access_token"] != shop["access_token"]
    assert fresh["seller_id"] == shop["seller_id"]
    assert fresh["access_token"] == sandbox.credentials(shop["seller_id"])["access_token"]
    await publish_two(adapter)
    stale = connect(shop, adapter._http, adapter._clock)  # type: ignore[arg-type]
    with pytest.raises(AuthExpired):  # the old refresh token was used up
        await stale.refresh_credentials()
