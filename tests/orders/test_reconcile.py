"""Reconciliation against the Shopee and Lazada sandboxes: order polls catch what webhooks missed and count every
order once, the cursor moves only after a whole window; Shopee's lost pushes reach the inbox once and are confirmed;
drift between the stock a channel shows and what we pushed is repaired by the engine."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from agrimarket.channels.base import LostPushSource
from agrimarket.channels.reference import ReferenceMarket, ReferencePlugin
from agrimarket.channels.registry import load
from agrimarket.channels.shop import adapter_for
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.kit.crypto import CredentialCipher
from agrimarket.media.storage import storage_for
from agrimarket.models import (
    ChannelConnection,
    ConnectionStatus,
    InboundEvent,
    Job,
    JobStatus,
    Order,
    StockMovement,
    utcnow,
)
from agrimarket.orders.inbox import DRAIN_KIND, InboxDrainer
from agrimarket.orders.reconcile import (
    LOST_PUSHES_KIND,
    POLL_KIND,
    RECONCILE_KIND,
    LostPushCollector,
    OrderPoller,
    request_polls,
)
from agrimarket.orders.repository import OrderRepository
from agrimarket.sandbox.core import Fault
from agrimarket.sandbox.shopee import LostPush, ShopeeSandbox
from agrimarket.sync.drift import DRIFT_ALL_KIND, DRIFT_KIND, DriftChecker, request_drift_checks
from agrimarket.sync.engine import SyncEngine
from agrimarket.worker import RetryLater, registry
from tests.orders.sandbox import Shop, http_for, open_shop, push
from tests.orders.support import Db, level
from tests.sync.support import Farm, connection_row, dirty, listings, make_engine, queued_syncs, registry_of
from tests.sync.test_sandboxes import _listed, _world

LIST_ORDERS = {"shopee": "order.get_order_list", "lazada": "/orders/get"}
GET_ORDERS = {"shopee": "order.get_order_detail", "lazada": "/orders/items/get"}


@pytest.fixture(params=["shopee", "lazada"])
async def shop(request: pytest.FixtureRequest, db: Db, worker_settings: Settings) -> AsyncIterator[Shop]:
    async for opened in open_shop(db, worker_settings, str(request.param)):
        yield opened


@pytest.fixture
async def shopee(db: Db, worker_settings: Settings) -> AsyncIterator[Shop]:
    async for opened in open_shop(db, worker_settings, "shopee"):
        yield opened


def poller(db: Db, settings: Settings, shop: Shop, *, now: datetime | None = None) -> OrderPoller:
    return OrderPoller(db, settings, channels=load(), http=shop.http, owner="poll-test", now=now)


def collector(db: Db, settings: Settings, shop: Shop) -> LostPushCollector:
    return LostPushCollector(db, settings, channels=load(), http=shop.http, owner="lost-test")


def checker(db: Db, settings: Settings, shop: Shop) -> DriftChecker:
    return DriftChecker(db, settings, channels=load(), http=shop.http, owner="drift-test")


def engine(db: Db, settings: Settings, shop: Shop) -> SyncEngine:
    return SyncEngine(
        db,
        settings,
        channels=load(),
        http=shop.http,
        storage=storage_for(settings.media_storage_url, settings.data_dir),
        owner="drift-engine",
    )


async def _orders(db: Db) -> dict[str, Order]:
    async with transaction(db) as session:
        return {o.external_id: o for o in (await session.execute(select(Order))).scalars()}


async def _events(db: Db) -> list[InboundEvent]:
    async with transaction(db) as session:
        return list((await session.execute(select(InboundEvent).order_by(InboundEvent.received_at))).scalars())


async def _jobs(db: Db, kind: str) -> list[Job]:
    async with transaction(db) as session:
        result = await session.execute(select(Job).where(Job.kind == kind, Job.status == JobStatus.queued))
        return list(result.scalars())


async def _reservations(db: Db, variant_id: uuid.UUID) -> int:
    async with transaction(db) as session:
        result = await session.execute(
            select(StockMovement).where(
                StockMovement.variant_id == variant_id, StockMovement.reference.like("order:%:reserve")
            )
        )
        return len(list(result.scalars()))


async def _set_cursor(db: Db, connection_id: uuid.UUID, value: object) -> None:
    async with transaction(db) as session:
        await session.execute(
            update(ChannelConnection).where(ChannelConnection.id == connection_id).values(orders_cursor=value)
        )


# -- order polls ----------------------------------------------------------------------------------------------


async def test_an_order_whose_push_never_came_is_caught_by_the_poll_and_ingested(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    order_id = await shop.place_order(2)  # no callback URL: the marketplace pushes nothing

    report = await poller(db, worker_settings, shop).poll(shop.connection.id)

    assert (report.outcome, report.orders_seen, report.orders_ingested, report.advanced) == ("done", 1, 1, True)
    assert set(await _orders(db)) == {order_id}
    stock = await level(db, shop.variant_id)
    assert (stock.on_hand, stock.reserved) == (10, 2)
    assert (await connection_row(db, shop.connection.id)).orders_cursor == report.until
    assert report.since is not None
    assert report.until is not None
    assert report.until - report.since == timedelta(hours=worker_settings.orders_poll_first_lookback_hours)


async def test_an_order_seen_by_webhook_and_again_by_poll_reserves_its_stock_once(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    order_id = await shop.place_order(1)
    await push(db, shop, order_id)
    await InboxDrainer(db, worker_settings, channels=load(), http=shop.http, owner="drain").drain(shop.connection.id)

    first = await poller(db, worker_settings, shop).poll(shop.connection.id)
    second = await poller(db, worker_settings, shop).poll(shop.connection.id)  # the overlap reads it once more

    assert (first.orders_seen, second.orders_seen) == (1, 1)
    assert set(await _orders(db)) == {order_id}
    assert await _reservations(db, shop.variant_id) == 1
    stock = await level(db, shop.variant_id)
    assert (stock.on_hand, stock.reserved) == (10, 1)


async def test_the_cursor_moves_only_after_a_whole_window_went_through(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    order_id = await shop.place_order(1)
    shop.world.market.inject(GET_ORDERS[shop.world.channel], Fault.server_error, times=3)

    with pytest.raises(RetryLater):
        await poller(db, worker_settings, shop).poll(shop.connection.id)

    assert (await connection_row(db, shop.connection.id)).orders_cursor is None
    assert await _orders(db) == {}

    shop.world.market._faults.clear()
    report = await poller(db, worker_settings, shop).poll(shop.connection.id)

    assert report.advanced
    assert set(await _orders(db)) == {order_id}
    assert (await connection_row(db, shop.connection.id)).orders_cursor == report.until


async def test_throttling_is_retried_after_the_platforms_hint_with_nothing_advanced(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    await shop.place_order(1)
    shop.world.market.inject(LIST_ORDERS[shop.world.channel], Fault.throttle, times=3)

    with pytest.raises(RetryLater) as raised:
        await poller(db, worker_settings, shop).poll(shop.connection.id)

    assert raised.value.retry_after is not None
    assert (await connection_row(db, shop.connection.id)).orders_cursor is None
    assert await _orders(db) == {}


async def test_the_next_window_starts_the_overlap_before_the_cursor(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    first = await poller(db, worker_settings, shop).poll(shop.connection.id)
    assert first.until is not None

    second = await poller(db, worker_settings, shop).poll(shop.connection.id)

    assert second.since == first.until - timedelta(seconds=worker_settings.orders_poll_overlap_seconds)
    assert (await connection_row(db, shop.connection.id)).orders_cursor == second.until


async def test_a_slower_poll_finishing_after_a_newer_one_never_moves_the_cursor_back(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    now = utcnow()
    late = poller(db, worker_settings, shop, now=now - timedelta(seconds=5))
    newer = poller(db, worker_settings, shop, now=now)
    await newer.poll(shop.connection.id)

    report = await late.poll(shop.connection.id)  # it read the cursor before the newer poll moved it

    assert not report.advanced
    assert (await connection_row(db, shop.connection.id)).orders_cursor == now


async def test_a_cursor_reset_by_hand_is_not_skipped_by_a_poll_that_started_before_it(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    now = utcnow()
    reset_to = now - timedelta(days=2)
    await _set_cursor(db, shop.connection.id, reset_to)

    # A poll that read the cursor at now − 1 h covered [now − 1 h − overlap, now): it must not jump over the reset.
    async with transaction(db) as session:
        moved = await OrderRepository(session).advance_orders_cursor(
            shop.connection.id, since=now - timedelta(hours=1, minutes=10), until=now, first=False
        )

    assert not moved
    assert (await connection_row(db, shop.connection.id)).orders_cursor == reset_to


async def test_a_poll_window_longer_than_fifteen_days_on_shopee_reads_every_window(
    db: Db, worker_settings: Settings, shopee: Shop
) -> None:
    assert isinstance(shopee.world.sandbox, ShopeeSandbox)
    old = await shopee.place_order(1)
    recent = await shopee.place_order(1)
    order = shopee.world.sandbox.shop(shopee.world.shop_id).orders[old]
    order.updated_at = order.created_at = order.updated_at - 18 * 24 * 3600
    await _set_cursor(db, shopee.connection.id, utcnow() - timedelta(days=20))
    calls_before = len(shopee.world.market.calls_of(LIST_ORDERS["shopee"]))

    report = await poller(db, worker_settings, shopee).poll(shopee.connection.id)

    assert set(await _orders(db)) == {old, recent}
    assert len(shopee.world.market.calls_of(LIST_ORDERS["shopee"])) - calls_before == 2  # 20 days: two windows
    assert report.advanced


async def test_a_shop_whose_authorisation_is_gone_is_marked_and_nothing_advances(
    db: Db, worker_settings: Settings, shopee: Shop
) -> None:
    await shopee.place_order(1)
    sandbox_shop = shopee.world.market.shops[shopee.world.shop_id]
    shopee.world.market.expire_access_token(shopee.world.shop_id)
    sandbox_shop.refresh_expires_at = shopee.world.market.now() - 1

    with pytest.raises(RetryLater):
        await poller(db, worker_settings, shopee).poll(shopee.connection.id)

    row = await connection_row(db, shopee.connection.id)
    assert row.status is ConnectionStatus.auth_expired
    assert row.last_error is not None
    assert "connect it again" in row.last_error
    assert row.orders_cursor is None
    assert await _orders(db) == {}
    assert (await poller(db, worker_settings, shopee).poll(shopee.connection.id)).outcome == "inactive"


async def test_reconcile_queues_one_poll_per_active_shop_however_often_it_runs(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    async with transaction(db) as session:
        first = await request_polls(session, load())
    async with transaction(db) as session:
        again = await request_polls(session, load())

    assert (first, again) == (1, 0)
    [job] = await _jobs(db, POLL_KIND)
    assert job.payload == {"connection_id": str(shop.connection.id)}

    async with transaction(db) as session:
        await session.execute(
            update(ChannelConnection)
            .where(ChannelConnection.id == shop.connection.id)
            .values(status=ConnectionStatus.paused)
        )
        await session.execute(update(Job).values(status=JobStatus.done))
        assert await request_polls(session, load()) == 0


def test_the_reconciliation_schedules_run_at_the_configured_periods(worker_settings: Settings) -> None:
    import agrimarket.orders.tasks
    import agrimarket.sync.tasks  # noqa: F401

    periods = {schedule.kind: schedule.seconds for schedule in registry.schedules}
    assert periods[RECONCILE_KIND] == Settings().orders_poll_seconds
    assert periods[DRIFT_ALL_KIND] == Settings().sync_drift_check_seconds
    assert {RECONCILE_KIND, POLL_KIND, LOST_PUSHES_KIND, DRIFT_ALL_KIND, DRIFT_KIND} <= set(registry.kinds)


# -- Shopee's lost pushes ---------------------------------------------------------------------------------------


def _lose_every_push(shop: Shop) -> ShopeeSandbox:
    sandbox = shop.world.sandbox
    assert isinstance(sandbox, ShopeeSandbox)
    sandbox.market.config.lost_push_every = 1
    sandbox.set_callback(shop.world.shop_id, f"http://agrimarket.test/webhooks/shopee/{shop.connection.id}")
    return sandbox


async def test_shopee_lost_pushes_are_stored_once_drained_and_confirmed(
    db: Db, worker_settings: Settings, shopee: Shop
) -> None:
    sandbox = _lose_every_push(shopee)
    order_id = await shopee.place_order(1)
    [lost] = sandbox.lost_pushes
    # A push for a shop not connected here is confirmed with the rest, stored nowhere.
    sandbox.lost_pushes.append(LostPush(lost.message_id + 1, 999, 3, lost.timestamp, {"ordersn": "X", "status": "X"}))
    sandbox._message_ids += 1

    report = await collector(db, worker_settings, shopee).collect(shopee.connection.id)

    assert (report.stored, report.duplicates, report.no_shop) == (1, 0, 1)
    assert report.confirmed == str(lost.message_id + 1)
    assert sandbox.lost_pushes == []
    [event] = await _events(db)
    assert event.connection_id == shopee.connection.id
    assert event.order_ids == [order_id]
    assert json.loads(event.body)["data"]["ordersn"] == order_id
    assert len(await _jobs(db, DRAIN_KIND)) == 1

    # Shopee lists it again (our confirmation was lost): the inbox already has it.
    sandbox.lost_pushes.append(lost)
    again = await collector(db, worker_settings, shopee).collect(shopee.connection.id)
    assert (again.stored, again.duplicates) == (0, 1)
    assert len(await _events(db)) == 1

    await InboxDrainer(db, worker_settings, channels=load(), http=shopee.http, owner="drain").drain(
        shopee.connection.id
    )
    [event] = await _events(db)
    assert event.handled_at is not None
    assert event.last_error is None
    assert set(await _orders(db)) == {order_id}
    assert (await level(db, shopee.variant_id)).reserved == 1


async def test_a_lost_push_and_its_late_delivery_are_one_inbox_event(
    db: Db, worker_settings: Settings, shopee: Shop
) -> None:
    sandbox = _lose_every_push(shopee)
    await shopee.place_order(1)
    await collector(db, worker_settings, shopee).collect(shopee.connection.id)
    [push_sent] = sandbox.market.pushes
    cipher = CredentialCipher(worker_settings.encryption_keys)
    adapter = adapter_for(shopee.connection, load().get("shopee"), cipher, shopee.http, worker_settings)

    delivered = adapter.parse_webhook(url=push_sent.url, headers=push_sent.headers, body=push_sent.body)

    [event] = await _events(db)
    assert event.external_id == delivered.external_id


async def test_every_shopee_poll_queues_one_lost_push_fetch_per_partner_app(
    db: Db, worker_settings: Settings, shopee: Shop
) -> None:
    sandbox = shopee.world.sandbox
    assert isinstance(sandbox, ShopeeSandbox)
    credentials = sandbox.add_shop("Vựa trái cây Cái Bè")
    second = await shopee.farm.connect(
        worker_settings,
        channel="shopee",
        shop_id=str(credentials["shop_id"]),
        credentials=credentials,
        channel_settings=shopee.world.settings,
    )
    adapter = adapter_for(
        shopee.connection,
        load().get("shopee"),
        CredentialCipher(worker_settings.encryption_keys),
        shopee.http,
        worker_settings,
    )
    assert isinstance(adapter, LostPushSource)

    await poller(db, worker_settings, shopee).poll(shopee.connection.id)
    await poller(db, worker_settings, shopee).poll(second.id)

    [job] = await _jobs(db, LOST_PUSHES_KIND)
    assert job.dedupe_key == f"orders.lost_pushes:{adapter.lost_push_key}"


# -- drift ------------------------------------------------------------------------------------------------------


async def test_less_stock_on_the_channel_is_first_explained_by_polling_orders_then_pushed_back_to_ours(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    shop.world.skus()[shop.sku].stock = 3  # the seller edits it in the platform's back office

    first = await checker(db, worker_settings, shop).check(shop.connection.id)

    # Less than we pushed is most often a sale not recorded yet: pushing ours back would offer it again.
    assert (first.checked, first.suspected, first.repaired) == (1, 1, 0)
    assert not dirty(await listings(db, shop.connection.id))
    [poll] = await _jobs(db, POLL_KIND)
    assert poll.payload == {"connection_id": str(shop.connection.id)}

    second = await checker(db, worker_settings, shop).check(shop.connection.id)  # the poll explained nothing

    assert (second.suspected, second.repaired) == (0, 1)
    [row] = dirty(await listings(db, shop.connection.id))
    assert row.pushed_state is not None
    assert row.pushed_state["stock"] == 3
    assert await queued_syncs(db, shop.connection.id)
    run = await engine(db, worker_settings, shop).run(shop.connection.id)
    assert run.outcome == "done"
    assert shop.world.skus()[shop.sku].stock == 10
    assert not dirty(await listings(db, shop.connection.id))
    assert (await checker(db, worker_settings, shop).check(shop.connection.id)).repaired == 0


async def test_a_sale_whose_push_was_lost_is_recorded_by_the_poll_the_drift_check_asks_for_never_pushed_over(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    order_id = await shop.place_order(2)  # no push came: the channel shows 8, we still think 10 is out there

    drift = await checker(db, worker_settings, shop).check(shop.connection.id)
    assert (drift.suspected, drift.repaired) == (1, 0)
    await poller(db, worker_settings, shop).poll(shop.connection.id)  # the poll the check queued

    assert set(await _orders(db)) == {order_id}
    assert (await level(db, shop.variant_id)).reserved == 2
    await engine(db, worker_settings, shop).run(shop.connection.id)
    assert shop.world.skus()[shop.sku].stock == 8  # ours is now 8 too: the buyer's units were never offered again
    assert (await checker(db, worker_settings, shop).check(shop.connection.id)).repaired == 0


async def test_no_drift_leaves_every_listing_clean(db: Db, worker_settings: Settings, shop: Shop) -> None:
    async with transaction(db) as session:
        await session.execute(update(Job).values(status=JobStatus.done))  # the publish's own sync job

    report = await checker(db, worker_settings, shop).check(shop.connection.id)

    assert (report.outcome, report.checked, report.repaired) == ("done", 1, 0)
    assert report.calls == 1
    assert not dirty(await listings(db, shop.connection.id))
    assert not await queued_syncs(db, shop.connection.id)
    assert (await connection_row(db, shop.connection.id)).sync_lease_owner is None


@pytest.mark.parametrize("channel", ["shopee", "lazada"])
async def test_drift_on_one_variant_of_an_item_with_variations_is_found_with_one_read(
    db: Db, worker_settings: Settings, channel: str
) -> None:
    world = _world(channel)
    async with http_for(world) as http:
        farm, connection, product = await _listed(db, worker_settings, world, variants=3, stock=8)
        shop = Shop(world, farm, connection, farm.products[product][0], "", http)
        assert (await engine(db, worker_settings, shop).run(connection.id)).outcome == "done"
        skus = world.skus()
        drifted = sorted(skus)[1]
        skus[drifted].stock = 0

        first = await checker(db, worker_settings, shop).check(connection.id)
        assert (first.checked, first.suspected, first.calls) == (3, 1, 1)
        report = await checker(db, worker_settings, shop).check(connection.id)

        assert (report.checked, report.repaired, report.calls) == (3, 1, 1)
        [row] = dirty(await listings(db, connection.id))
        assert row.pushed_state is not None
        assert row.pushed_state["stock"] == 0
        await engine(db, worker_settings, shop).run(connection.id)
        assert {sku.stock for sku in world.skus().values()} == {8}


async def test_a_shop_being_pushed_to_is_checked_after_the_push(db: Db, worker_settings: Settings, shop: Shop) -> None:
    async with transaction(db) as session:
        await session.execute(
            update(ChannelConnection)
            .where(ChannelConnection.id == shop.connection.id)
            .values(sync_lease_owner="a-push", sync_lease_expires_at=utcnow() + timedelta(seconds=30))
        )

    with pytest.raises(RetryLater) as raised:
        await checker(db, worker_settings, shop).check(shop.connection.id)

    assert raised.value.retry_after == worker_settings.sync_lease_seconds


async def test_a_marketplace_fault_during_the_check_repairs_nothing_and_lets_the_shop_go(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    shop.world.skus()[shop.sku].stock = 3
    op = "product.get_item_base_info" if shop.world.channel == "shopee" else "/product/item/get"
    shop.world.market.inject(op, Fault.server_error, times=3)

    with pytest.raises(RetryLater):
        await checker(db, worker_settings, shop).check(shop.connection.id)

    assert not dirty(await listings(db, shop.connection.id))
    assert (await connection_row(db, shop.connection.id)).sync_lease_owner is None


async def test_drift_checks_are_queued_once_per_shop_with_live_listings(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    async with transaction(db) as session:
        assert await request_drift_checks(session) == 1
    async with transaction(db) as session:
        assert await request_drift_checks(session) == 0
    [job] = await _jobs(db, DRIFT_KIND)
    assert job.payload == {"connection_id": str(shop.connection.id)}


async def test_drift_on_the_reference_channel_is_repaired(db: Db, worker_settings: Settings) -> None:
    ReferenceMarket.reset()
    farm = await Farm.make(db)
    product = await farm.product("Sầu riêng Ri6", variants=2, stock=6)
    connection = await farm.connect(worker_settings)
    await farm.list_product(connection, product)
    sync = make_engine(db, worker_settings, registry_of(ReferencePlugin()))
    try:
        assert (await sync.run(connection.id)).outcome == "done"
        assert connection.external_shop_id is not None
        market = ReferenceMarket.shop(connection.external_shop_id)
        with market.edit() as state:
            [item] = state.items.values()
            next(iter(item.skus.values())).stock = 40
        drift = DriftChecker(
            db, worker_settings, channels=registry_of(ReferencePlugin()), http=sync.http, owner="drift-test"
        )

        report = await drift.check(connection.id)

        assert (report.checked, report.repaired, report.calls) == (2, 1, 1)
        assert (await sync.run(connection.id)).outcome == "done"
        assert {sku.stock for item in market.items.values() for sku in item.skus.values()} == {6}
    finally:
        await sync.http.aclose()
        ReferenceMarket.reset()
