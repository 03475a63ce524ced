"""The inbox drain against the Shopee and Lazada sandboxes: pushes are hints, orders are re-fetched in one
``get_orders`` per batch, ingested, and the events marked handled; a marketplace fault leaves them for later."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from agrimarket.channels.registry import load
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.models import InboundEvent, Order, OrderStatus
from agrimarket.orders.inbox import InboxDrainer
from agrimarket.sandbox.core import Fault
from agrimarket.worker import RetryLater
from tests.orders.sandbox import Shop, open_shop, push
from tests.orders.support import Db, level
from tests.sync.support import dirty, listings

GET_ORDERS = {"shopee": "order.get_order_detail", "lazada": "/orders/items/get"}


@pytest.fixture(params=["shopee", "lazada"])
async def shop(request: pytest.FixtureRequest, db: Db, worker_settings: Settings) -> AsyncIterator[Shop]:
    async for opened in open_shop(db, worker_settings, str(request.param)):
        yield opened


def drainer(db: Db, settings: Settings, shop: Shop, batch_size: int = 200) -> InboxDrainer:
    return InboxDrainer(db, settings, channels=load(), http=shop.http, owner="drain-test", batch_size=batch_size)


async def _events(db: Db) -> list[InboundEvent]:
    async with transaction(db) as session:
        return list((await session.execute(select(InboundEvent).order_by(InboundEvent.received_at))).scalars())


async def _orders(db: Db) -> dict[str, Order]:
    async with transaction(db) as session:
        return {o.external_id: o for o in (await session.execute(select(Order))).scalars()}


async def test_a_batch_of_pushes_is_refetched_in_one_call_ingested_and_handled(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    placed = [await shop.place_order(1) for _ in range(3)]
    for order_id in placed:
        await push(db, shop, order_id)
    await push(db, shop, placed[0])  # a redelivered hint for the same order
    calls_before = len(shop.world.market.calls_of(GET_ORDERS[shop.world.channel]))

    report = await drainer(db, worker_settings, shop).drain(shop.connection.id)

    assert report.remote_calls == 1
    assert report.orders_ingested == 3
    assert len(shop.world.market.calls_of(GET_ORDERS[shop.world.channel])) - calls_before == 1
    orders = await _orders(db)
    assert set(orders) == set(placed)
    assert {o.status for o in orders.values()} == {
        OrderStatus.paid if shop.world.channel == "lazada" else OrderStatus.ready_to_ship
    }
    stock = await level(db, shop.variant_id)
    assert (stock.on_hand, stock.reserved) == (10, 3)
    events = await _events(db)
    assert all(e.handled_at is not None and e.last_error is None for e in events)


async def test_pushes_are_drained_in_batches_until_the_inbox_is_empty(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    placed = [await shop.place_order(1) for _ in range(5)]
    for order_id in placed:
        await push(db, shop, order_id)

    report = await drainer(db, worker_settings, shop, batch_size=2).drain(shop.connection.id)

    assert (report.batches, report.remote_calls, report.orders_ingested) == (3, 3, 5)
    assert all(e.handled_at is not None for e in await _events(db))


async def test_a_push_for_an_order_the_marketplace_does_not_know_is_handled_with_a_plain_message(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    await push(db, shop, "999999999")

    await drainer(db, worker_settings, shop).drain(shop.connection.id)

    [event] = await _events(db)
    assert event.handled_at is not None
    assert event.last_error is not None
    assert "order 999999999 does not exist" in event.last_error
    assert await _orders(db) == {}
    stock = await level(db, shop.variant_id)
    assert (stock.on_hand, stock.reserved) == (10, 0)


async def test_a_marketplace_fault_leaves_the_events_unhandled_for_a_retry(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    order_id = await shop.place_order(1)
    await push(db, shop, order_id)
    shop.world.market.inject(GET_ORDERS[shop.world.channel], Fault.server_error, times=3)

    with pytest.raises(RetryLater):
        await drainer(db, worker_settings, shop).drain(shop.connection.id)

    [event] = await _events(db)
    assert event.handled_at is None
    assert event.attempts == 1
    assert event.last_error is not None
    assert "try" in event.last_error
    assert await _orders(db) == {}

    shop.world.market._faults.clear()
    await drainer(db, worker_settings, shop).drain(shop.connection.id)

    [event] = await _events(db)
    assert event.handled_at is not None
    assert event.last_error is None
    assert set(await _orders(db)) == {order_id}


async def test_throttling_is_retried_after_the_platforms_hint(db: Db, worker_settings: Settings, shop: Shop) -> None:
    await push(db, shop, await shop.place_order(1))
    shop.world.market.inject(GET_ORDERS[shop.world.channel], Fault.throttle, times=3)

    with pytest.raises(RetryLater) as raised:
        await drainer(db, worker_settings, shop).drain(shop.connection.id)

    assert raised.value.retry_after is not None
    assert (await _events(db))[0].handled_at is None


async def test_a_stock_push_marks_the_shops_listings_dirty_so_our_quantity_is_pushed_again(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    assert not dirty(await listings(db, shop.connection.id))
    await push(db, shop, event_type="stock")
    await push(db, shop, event_type="auth")

    report = await drainer(db, worker_settings, shop).drain(shop.connection.id)

    assert report.remote_calls == 0
    assert len(dirty(await listings(db, shop.connection.id))) == 1
    assert all(e.handled_at is not None for e in await _events(db))
