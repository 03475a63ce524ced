"""The inbox drain against the Shopee and Lazada sandboxes: pushes are hints, orders are re-fetched in one
``get_orders`` per batch, ingested, and the events marked handled; a marketplace fault leaves them for later."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from unittest.mock import patch

import pytest
from sqlalchemy import delete, select, update

from agrimarket.channels.registry import load
from agrimarket.channels.shop import callback_url
from agrimarket.channels.shopee.webhooks import push_signature
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.media.storage import storage_for
from agrimarket.models import InboundEvent, Job, JobStatus, Order, OrderStatus, utcnow
from agrimarket.orders.inbox import DRAIN_KIND, InboxDrainer, drain_running_key
from agrimarket.orders.tasks import drain_inbox
from agrimarket.sandbox.core import Fault
from agrimarket.sandbox.shopee import ShopeeSandbox
from agrimarket.sync.queue import SYNC_KIND
from agrimarket.sync.runtime import SyncRuntime, use_runtime
from agrimarket.worker import JobContext, RetryLater, enqueue
from agrimarket.worker.repository import JobRepository
from tests.orders.sandbox import Shop, open_shop, push
from tests.orders.support import Db, level
from tests.sync.support import dirty, listings

GET_ORDERS = {"shopee": "order.get_order_detail", "lazada": "/orders/items/get"}


@pytest.fixture(params=["shopee", "lazada"])
async def shop(request: pytest.FixtureRequest, db: Db, worker_settings: Settings) -> AsyncIterator[Shop]:
    async for opened in open_shop(db, worker_settings, str(request.param)):
        yield opened


def drainer(db: Db, settings: Settings, shop: Shop, batch_size: int = 200, slice_seconds: float = 60) -> InboxDrainer:
    """A drain as the worker makes one; by default its turn never ends within a test (turn-taking is tested apart)."""
    return InboxDrainer(
        db,
        settings,
        channels=load(),
        http=shop.http,
        owner="drain-test",
        batch_size=batch_size,
        slice_seconds=slice_seconds,
    )


async def pushed_orders(db: Db, shop: Shop, count: int) -> list[str]:
    """``count`` orders placed on the shop, each pushed to our inbox."""
    placed = [await shop.place_order(1) for _ in range(count)]
    for order_id in placed:
        await push(db, shop, order_id)
    return placed


async def _events(db: Db) -> list[InboundEvent]:
    async with transaction(db) as session:
        return list((await session.execute(select(InboundEvent).order_by(InboundEvent.received_at))).scalars())


async def _orders(db: Db) -> dict[str, Order]:
    async with transaction(db) as session:
        return {o.external_id: o for o in (await session.execute(select(Order))).scalars()}


async def test_a_batch_of_pushes_is_refetched_in_one_call_ingested_and_handled(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    placed = await pushed_orders(db, shop, 3)
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
    await pushed_orders(db, shop, 5)

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


async def _running_drain_job(db: Db, settings: Settings, shop: Shop, worker_id: str) -> JobContext:
    """A drain job as a worker has just claimed it, and the context its handler gets."""
    job = Job(
        id=uuid.uuid4(),
        kind=DRAIN_KIND,
        payload={"connection_id": str(shop.connection.id)},
        status=JobStatus.running,
        organization_id=shop.connection.organization_id,
        dedupe_while_running=False,
        attempts=1,
        locked_by=worker_id,
        lease_expires_at=utcnow() + timedelta(minutes=1),
        run_at=utcnow(),
    )
    async with transaction(db) as session:
        session.add(job)
    return JobContext(
        job_id=job.id,
        kind=DRAIN_KIND,
        attempt=1,
        max_attempts=10,
        organization_id=shop.connection.organization_id,
        worker_id=worker_id,
        settings=settings,
        sessionmaker=db,
    )


async def _drain_holder(db: Db, shop: Shop) -> uuid.UUID | None:
    async with transaction(db) as session:
        return await session.scalar(select(Job.id).where(Job.dedupe_key == drain_running_key(shop.connection.id)))


async def _finish(db: Db, ctx: JobContext) -> None:
    """What the runner writes when the handler returns."""
    async with transaction(db) as session:
        job = await session.get(Job, ctx.job_id)
        assert job is not None
        job.status, job.dedupe_key, job.finished_at = JobStatus.done, None, utcnow()


async def test_two_drains_of_one_shop_at_once_fetch_every_order_once_and_lose_none(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    placed = [await shop.place_order(1) for _ in range(6)]
    for order_id in placed[:4]:
        await push(db, shop, order_id)
    shop.world.sandbox.market.config.latency_seconds = 0.3  # the first drain is mid-fetch when the second starts
    first = await _running_drain_job(db, worker_settings, shop, "w1")
    second = await _running_drain_job(db, worker_settings, shop, "w2")
    payload = {"connection_id": str(shop.connection.id)}
    op = GET_ORDERS[shop.world.channel]
    runtime = SyncRuntime(
        channels=load(),
        http=shop.http,
        storage=storage_for(worker_settings.media_storage_url, worker_settings.data_dir),
    )
    # Each drain runs to the end of the inbox here (the syncs its ingest queues would otherwise end its turn: the
    # sandbox answers slowly), so the key's holder is known at every step.
    with use_runtime(runtime), patch("agrimarket.orders.inbox.SLICE_SECONDS", 60):
        running = asyncio.create_task(drain_inbox(first, payload))
        while (holder := await _drain_holder(db, shop)) is None and not running.done():  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        assert holder == first.job_id
        # Two more orders come in while the first drain runs; the second drain starts meanwhile.
        for order_id in placed[4:]:
            await push(db, shop, order_id)
        await drain_inbox(second, payload)  # finds the shop busy: queues a follow-up, fetches nothing
        assert not running.done()
        await running
        await _finish(db, first)
        async with transaction(db) as session:
            follow_ups = list(
                await session.scalars(select(Job).where(Job.kind == DRAIN_KIND, Job.status == JobStatus.queued))
            )
        assert len(follow_ups) == 1
        # The follow-up, as a worker would run it: nothing left, or what the first drain did not see.
        follow_up = await _running_drain_job(db, worker_settings, shop, "w3")
        await drain_inbox(follow_up, payload)
        assert await _drain_holder(db, shop) == follow_up.job_id
        await _finish(db, follow_up)

    # One fetch by the first drain (what it saw: 4 orders, or all 6), one by the follow-up if anything was left:
    # never an order fetched by two drains.
    fetches = sorted(shop.world.market.calls_of(op, outcome=None), key=lambda call: call.started)
    assert len(fetches) in (1, 2)
    assert all(a.ended <= b.started for a, b in itertools.pairwise(fetches))  # one after the other
    assert set(await _orders(db)) == set(placed)
    assert all(e.handled_at is not None and e.last_error is None for e in await _events(db))
    stock = await level(db, shop.variant_id)
    assert (stock.on_hand, stock.reserved) == (10, 6)
    assert await _drain_holder(db, shop) is None


async def test_an_event_kept_without_its_order_numbers_is_read_again_from_its_signed_body_or_handled_as_unreadable(
    db: Db, worker_settings: Settings
) -> None:
    async for shop in open_shop(db, worker_settings, "shopee"):
        order_id = await shop.place_order(1)
        sandbox = shop.world.sandbox
        assert isinstance(sandbox, ShopeeSandbox)
        body = sandbox.push_body(sandbox.shop(shop.world.shop_id), 3, {"ordersn": order_id, "status": "READY_TO_SHIP"})
        url = callback_url(worker_settings, shop.connection) or ""
        signed = {"authorization": push_signature(sandbox.partner_key, url, body), "content-type": "application/json"}
        readable = await push(db, shop, order_id)
        unreadable = await push(db, shop, order_id)
        async with transaction(db) as session:  # as rows kept before the order numbers were read at receipt
            await session.execute(
                update(InboundEvent)
                .where(InboundEvent.id == readable)
                .values(order_ids=None, headers=signed, body=body)
            )
            await session.execute(update(InboundEvent).where(InboundEvent.id == unreadable).values(order_ids=None))

        report = await drainer(db, worker_settings, shop).drain(shop.connection.id)

        assert (report.orders_ingested, report.unreadable) == (1, 1)
        events = {e.id: e for e in await _events(db)}
        assert events[readable].handled_at is not None
        assert events[readable].last_error is None
        assert events[unreadable].handled_at is not None
        assert "cannot be read again" in (events[unreadable].last_error or "")
        assert set(await _orders(db)) == {order_id}


def sliced(db: Db, settings: Settings, shop: Shop) -> InboxDrainer:
    """A drain that looks whether other jobs wait after every batch (of two events)."""
    return drainer(db, settings, shop, batch_size=2, slice_seconds=0)


async def test_a_drain_hands_its_slot_on_to_a_job_waiting_with_the_rest_of_the_inbox_left_for_its_next_turn(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    await pushed_orders(db, shop, 5)
    async with transaction(db) as session:
        await enqueue(session, SYNC_KIND, {"connection_id": str(uuid.uuid4())})  # due, no slot free for it

    report = await sliced(db, worker_settings, shop).drain(shop.connection.id)

    assert (report.batches, report.orders_ingested, report.handed_on) == (1, 2, True)
    assert sum(e.handled_at is None for e in await _events(db)) == 3
    assert len(await _orders(db)) == 2


async def test_a_drain_goes_on_past_its_slice_to_the_end_of_the_inbox_while_no_job_waits(
    db: Db, worker_settings: Settings, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def slots_free(*_args: object) -> bool:  # every job due is taken by a worker at once
        return False

    monkeypatch.setattr(InboxDrainer, "_others_waiting", slots_free)
    await pushed_orders(db, shop, 5)

    report = await sliced(db, worker_settings, shop).drain(shop.connection.id)

    assert (report.batches, report.orders_ingested, report.handed_on) == (3, 5, False)
    assert all(e.handled_at is not None for e in await _events(db))


async def test_jobs_waiting_for_a_slot_are_the_due_queued_ones_but_the_shops_own_next_drain(db: Db) -> None:
    shop_key = "orders.inbox:shop"
    now = utcnow()

    async with transaction(db) as session:
        await session.execute(delete(Job))
        await enqueue(session, DRAIN_KIND, {}, dedupe_key=shop_key, run_at=now - timedelta(seconds=1))
        await enqueue(session, SYNC_KIND, {}, dedupe_key="later", run_at=now + timedelta(seconds=1))
        # The shop's own next drain, and a job not due yet: nothing waits for a slot.
        assert not await JobRepository(session).others_due(now, besides=shop_key)

    async with transaction(db) as session:
        await enqueue(session, SYNC_KIND, {}, run_at=now - timedelta(seconds=1))
        assert await JobRepository(session).others_due(now, besides=shop_key)


async def test_a_drains_next_turn_comes_after_the_jobs_already_waiting_for_a_worker(
    db: Db, worker_settings: Settings, shop: Shop
) -> None:
    """Under a flash sale on as many shops as a worker runs jobs at once, drains that ran until their inboxes were
    empty kept every slot, and the sync runs telling the other marketplaces the new stock waited for the end."""
    placed = [await shop.place_order(1) for _ in range(3)]
    for order_id in placed[:2]:
        await push(db, shop, order_id)
    running = await _running_drain_job(db, worker_settings, shop, "w1")
    payload = {"connection_id": str(shop.connection.id)}
    runtime = SyncRuntime(
        channels=load(),
        http=shop.http,
        storage=storage_for(worker_settings.media_storage_url, worker_settings.data_dir),
    )
    with use_runtime(runtime), patch("agrimarket.orders.inbox.SLICE_SECONDS", 0):
        # A push while the drain runs queues the shop's next drain; a sync of another shop is queued after it.
        await push(db, shop, placed[2])
        async with transaction(db) as session:
            sync_job = await enqueue(session, SYNC_KIND, {"connection_id": str(uuid.uuid4())})
        await drain_inbox(running, payload)  # one batch, then its slice is over
        assert await _drain_holder(db, shop) is None  # the shop's key let go at once
        await _finish(db, running)

    async with transaction(db) as session:
        claimed = await JobRepository(session).claim(
            kinds=[DRAIN_KIND, SYNC_KIND], limit=10, worker_id="w2", now=utcnow(), lease=timedelta(minutes=1)
        )
    # The waiting sync (and the ingest's own syncs) first, then the shop's next drain, once.
    assert sync_job in [job.id for job in claimed[:-1]]
    assert [job.kind for job in claimed].count(DRAIN_KIND) == 1
    assert claimed[-1].kind == DRAIN_KIND
