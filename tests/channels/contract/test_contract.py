"""The channel port's contract, the same for every marketplace adapter, run against each one's sandbox.

Platform-specific behaviour (Shopee's tiers, Lazada's order items, …) has its own tests beside each adapter; this
suite holds what the sync engine and the order pipeline rely on from any channel.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from agrimarket.channels.base import (
    ChannelAdapter,
    EventKind,
    EventQueue,
    Feature,
    ListingDraft,
    PriceUpdate,
    Shipment,
    StockUpdate,
    VariantDraft,
)
from agrimarket.channels.errors import AuthExpired, InvalidSignature
from agrimarket.channels.registry import load
from agrimarket.media.rules import DEFAULT_RULES
from agrimarket.models.orders import OrderStatus
from tests.channels.contract.harness import HARNESSES, Platform
from tests.channels.support import photo

RANK = list(OrderStatus)


RED, GREEN = photo((200, 40, 30), 800), photo((40, 180, 60), 800)


def _variant(sku: str, name: str, price: int, stock: int) -> VariantDraft:
    return VariantDraft(sku=sku, name=name, price_vnd=price, stock=stock, weight_grams=1_000, unit="hop")


def _draft(*variants: VariantDraft, item_id: str | None = None, uploaded: dict[str, str] | None = None) -> ListingDraft:
    return ListingDraft(
        product_id=uuid.uuid4(),
        title="Hạt điều rang muối Bình Phước",
        description="Điều loại A, rang củi, đóng hộp tại hợp tác xã.",
        variants=variants,
        images=(RED, GREEN),
        category=None,
        external_item_id=item_id,
        uploaded_images=uploaded or {},
    )


TWO = (_variant("DIEU-500", "Hộp 500 g", 165_000, 12), _variant("DIEU-1KG", "Hộp 1 kg", 310_000, 5))


@pytest.fixture(params=sorted(HARNESSES))
async def platform(request: pytest.FixtureRequest) -> AsyncIterator[Platform]:
    made = HARNESSES[str(request.param)]()
    try:
        yield made
    finally:
        await made.aclose()


def test_the_plugin_is_installed_and_declares_what_the_engine_needs(platform: Platform) -> None:
    capabilities = platform.plugin.capabilities
    assert load().get(platform.channel) is not None
    assert capabilities.name == platform.channel == platform.plugin.name
    assert capabilities.stock_batch.max_size >= 1
    assert capabilities.price_batch.max_size >= 1
    assert capabilities.image_rule is None or capabilities.image_rule in DEFAULT_RULES
    assert capabilities.rate_limit.source, "a rate limit says where it comes from, or that it is our default"
    assert Feature.order_polling in capabilities.features
    # New orders are told to us by signed pushes, or (Tiki) by an event queue we pull.
    assert Feature.webhooks in capabilities.features or isinstance(platform.adapter, EventQueue)
    assert isinstance(platform.adapter, ChannelAdapter)


async def test_publish_lists_every_variant_at_its_price_and_stock_and_maps_each_sku(platform: Platform) -> None:
    result = await platform.adapter.publish(_draft(*TWO))

    assert result.external_item_id
    assert set(result.external_sku_ids) == {"DIEU-500", "DIEU-1KG"}
    assert set(result.uploaded_images) == {RED.content_hash, GREEN.content_hash}
    assert (platform.stock("DIEU-500"), platform.price("DIEU-500")) == (12, 165_000)
    assert (platform.stock("DIEU-1KG"), platform.price("DIEU-1KG")) == (5, 310_000)


async def test_republishing_keeps_the_sku_ids_adds_a_new_variant_and_uploads_no_image_twice(
    platform: Platform,
) -> None:
    first = await platform.adapter.publish(_draft(*TWO))
    images_before = len(platform.market.images)

    again = await platform.adapter.publish(
        _draft(
            *TWO,
            _variant("DIEU-2KG", "Túi 2 kg", 590_000, 3),
            item_id=first.external_item_id,
            uploaded=dict(first.uploaded_images),
        )
    )

    if platform.plugin.capabilities.supports(Feature.variants):
        # One item holds every variant. Without Feature.variants (Tiki) each variant is a product of its own and a
        # new one goes out in a request of its own, which the item's reference then names too.
        assert again.external_item_id == first.external_item_id
    assert {sku: again.external_sku_ids[sku] for sku in first.external_sku_ids} == dict(first.external_sku_ids)
    assert "DIEU-2KG" in again.external_sku_ids
    assert platform.stock("DIEU-2KG") == 3
    assert len(platform.market.images) == images_before


async def test_stock_and_prices_are_set_to_absolute_values_so_a_repeated_push_is_harmless(
    platform: Platform,
) -> None:
    published = await platform.adapter.publish(_draft(*TWO))
    item = published.external_item_id
    stock = [StockUpdate(item, published.external_sku_ids[s], s, q) for s, q in (("DIEU-500", 7), ("DIEU-1KG", 0))]
    prices = [PriceUpdate(item, published.external_sku_ids["DIEU-500"], "DIEU-500", 170_000)]

    for _ in range(2):
        assert (await platform.adapter.set_stock(stock)).ok
        assert (await platform.adapter.set_prices(prices)).ok

    assert (platform.stock("DIEU-500"), platform.stock("DIEU-1KG")) == (7, 0)
    assert platform.price("DIEU-500") == 170_000


async def test_a_full_batch_at_the_declared_maximum_is_accepted_in_one_call(platform: Platform) -> None:
    limit = platform.plugin.capabilities
    size = min(limit.stock_batch.max_size, limit.limits.variants_max, 50)
    variants = [_variant(f"TIEU-{i:02d}", f"Gói {i}", 60_000 + i * 1_000, 10) for i in range(size)]
    published = await platform.adapter.publish(_draft(*variants))
    calls_before = len(platform.market.calls)

    updates = [StockUpdate(published.external_item_id, published.external_sku_ids[v.sku], v.sku, 4) for v in variants]
    assert (await platform.adapter.set_stock(updates)).ok

    assert len(platform.market.calls) - calls_before == 1
    assert {platform.stock(v.sku) for v in variants} == {4}


async def test_delisting_takes_the_item_off_sale_and_publishing_again_brings_it_back(platform: Platform) -> None:
    published = await platform.adapter.publish(_draft(*TWO))
    shop = platform.market.shops[platform.shop_id]
    if platform.plugin.capabilities.supports(Feature.variants):
        items = [shop.items[int(published.external_item_id)]]
    else:  # every variant is an item of its own (Tiki): each goes off sale and comes back
        items = [found[0] for v in TWO if (found := shop.by_seller_sku(v.sku)) is not None]
        assert len(items) == len(TWO)
    on_sale = [item.status for item in items]

    await platform.adapter.delist(published.external_item_id)
    assert all(item.status != status for item, status in zip(items, on_sale, strict=True))

    await platform.adapter.publish(
        _draft(*TWO, item_id=published.external_item_id, uploaded=dict(published.uploaded_images))
    )
    assert [item.status for item in items] == on_sale


async def test_an_order_is_listed_by_update_time_and_fetched_with_its_lines_in_whole_dong(
    platform: Platform,
) -> None:
    await platform.adapter.publish(_draft(*TWO))
    since = datetime.now(UTC) - timedelta(minutes=5)
    order_id = await platform.buy("DIEU-500", 2)
    until = datetime.now(UTC) + timedelta(minutes=5)

    listed: list[str] = []
    cursor: str | None = None
    for _ in range(20):
        page = await platform.adapter.list_orders(since=since, until=until, cursor=cursor)
        listed += [ref.external_id for ref in page.orders]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert order_id in listed

    [order] = await platform.adapter.get_orders([order_id, "NO-SUCH-ORDER-404"])
    assert order.external_id == order_id
    assert order.status in (OrderStatus.paid, OrderStatus.ready_to_ship)
    [line] = order.lines
    assert (line.sku, line.quantity, line.unit_price_vnd) == ("DIEU-500", 2, 165_000)
    assert isinstance(order.total_vnd, int)
    assert order.total_vnd >= 330_000
    assert platform.stock("DIEU-500") == 10  # the platform took its own stock


async def test_shipping_moves_the_order_forward_and_cancelling_another_cancels_it(platform: Platform) -> None:
    await platform.adapter.publish(_draft(*TWO))
    shipped_id = await platform.buy("DIEU-500", 1)
    cancelled_id = await platform.buy("DIEU-1KG", 1)

    await platform.adapter.ship(shipped_id, Shipment(tracking_number="VN0123456789", carrier="GHN"))
    await platform.adapter.cancel(cancelled_id, "Hết hàng")

    orders = {order.external_id: order for order in await platform.adapter.get_orders([shipped_id, cancelled_id])}
    assert RANK.index(orders[shipped_id].status) >= RANK.index(OrderStatus.ready_to_ship)
    assert orders[shipped_id].status is not OrderStatus.cancelled
    assert orders[cancelled_id].status is OrderStatus.cancelled


async def test_a_signed_push_is_verified_and_names_the_order_and_a_tampered_one_is_refused(
    platform: Platform,
) -> None:
    if not platform.plugin.capabilities.supports(Feature.webhooks):
        pytest.skip(f"{platform.channel} sends no signed pushes (its events are pulled: EventQueue)")
    await platform.adapter.publish(_draft(*TWO))
    order_id = await platform.buy("DIEU-500", 1)
    await platform.market.drain()
    url, headers, body = platform.pushes.delivered[-1]
    assert url == platform.callback_url

    event = platform.adapter.parse_webhook(url=url, headers=headers, body=body)
    again = platform.adapter.parse_webhook(url=url, headers=headers, body=body)

    assert event.kind is EventKind.order
    assert order_id in event.order_ids
    assert event.external_id == again.external_id  # a redelivery keeps its id: the inbox stores it once
    with pytest.raises(InvalidSignature):
        platform.adapter.parse_webhook(url=url, headers=headers, body=body.replace(b"1", b"2", 1))
    with pytest.raises(InvalidSignature):
        platform.adapter.parse_webhook(url=url, headers={}, body=body)


async def test_an_expired_token_is_auth_expired_and_the_refreshed_credentials_work(platform: Platform) -> None:
    await platform.adapter.publish(_draft(*TWO))
    platform.expire_token()

    with pytest.raises(AuthExpired):
        await platform.adapter.get_orders(["anything"])
    refreshed = dict(await platform.adapter.refresh_credentials())

    assert await platform.rebuild(refreshed).get_orders(["NO-SUCH-ORDER-404"]) == []
