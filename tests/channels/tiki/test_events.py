"""Tiki's event queue into the order pipeline: a buyer's order is pulled, kept in the inbox once, drained and
recorded; an event not acknowledged comes again and is stored once; the ack goes out only after the inbox commit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.tiki import TikiAdapter
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.models import InboundEvent, OrderStatus
from agrimarket.orders.inbox import DRAIN_KIND, InboxDrainer
from agrimarket.sandbox.core import Fault
from agrimarket.webhooks.pull import PULL_KIND, EventPuller, pulls_events, request_pulls
from agrimarket.webhooks.service import source_for
from agrimarket.worker import RetryLater
from tests.channels.tiki.pipeline import TikiShop, open_tiki_shop
from tests.orders.support import order_and_lines
from tests.worker.conftest import db, engine_b, worker_settings  # noqa: F401

ACK = "POST /integration/v1/queues/{code}/events/ack"


@pytest.fixture
async def tiki(db: async_sessionmaker[AsyncSession], worker_settings: Settings) -> AsyncIterator[TikiShop]:  # noqa: F811
    settings = worker_settings.model_copy(update={"sync_coalesce_seconds": 0.0})
    shop = await open_tiki_shop(db, settings, review_seconds=0)  # approved at once: the product is on sale
    await shop.sync()
    await puller(shop).pull(shop.connection.id)  # the seller's queue is made and subscribed
    yield shop
    await shop.aclose()


def puller(shop: TikiShop) -> EventPuller:
    return EventPuller(shop.db, shop.settings, channels=shop.channels, http=shop.http, owner="tiki-test")


async def test_a_buyers_order_is_pulled_into_the_inbox_drained_and_recorded(tiki: TikiShop) -> None:
    sku = (await tiki.skus())[0]
    code = await tiki.sandbox.place_order(tiki.seller_id, [(sku, 3)])

    report = await puller(tiki).pull(tiki.connection.id)

    assert (report.stored, report.duplicates, report.acked) == (1, 0, 1)
    [event] = await tiki.inbox()
    assert event.source == source_for("tiki", tiki.connection.id)
    assert event.order_ids == [code]
    assert event.event_type == "order"
    assert len(await tiki.queued(DRAIN_KIND)) == 1

    drained = await InboxDrainer(
        tiki.db, tiki.settings, channels=tiki.channels, http=tiki.http, owner="tiki-test"
    ).drain(tiki.connection.id)

    assert drained.orders_ingested == 1
    order, lines = await order_and_lines(tiki.db, tiki.connection.id, code)
    assert order.status is OrderStatus.paid
    assert [(line.quantity, line.unit_price_vnd) for line in lines] == [(3, 90_000)]
    [event] = await tiki.inbox()
    assert event.handled_at is not None


async def test_an_event_whose_ack_was_lost_comes_again_and_is_stored_once(tiki: TikiShop) -> None:
    sku = (await tiki.skus())[0]
    await tiki.sandbox.place_order(tiki.seller_id, [(sku, 1)])
    tiki.sandbox.market.inject(ACK, Fault.server_error)

    with pytest.raises(RetryLater):
        await puller(tiki).pull(tiki.connection.id)
    assert len(await tiki.inbox()) == 1  # stored before the ack was tried

    tiki.clock.advance(tiki.sandbox.ack_deadline_seconds + 1)
    again = await puller(tiki).pull(tiki.connection.id)

    assert (again.stored, again.duplicates, again.acked) == (0, 1, 1)
    assert len(await tiki.inbox()) == 1
    assert len(await tiki.queued(DRAIN_KIND)) == 1  # a duplicate queues no second drain


async def test_the_ack_goes_out_only_after_the_inbox_commit(tiki: TikiShop, monkeypatch: pytest.MonkeyPatch) -> None:
    sku = (await tiki.skus())[0]
    await tiki.sandbox.place_order(tiki.seller_id, [(sku, 1)])
    seen_at_ack: list[int] = []
    original = TikiAdapter.ack_events

    async def ack_after_looking(adapter: TikiAdapter, token: str) -> None:
        async with transaction(tiki.db) as session:  # another connection sees only what was committed
            seen_at_ack.append(len((await session.execute(InboundEvent.__table__.select())).all()))
        await original(adapter, token)

    monkeypatch.setattr(TikiAdapter, "ack_events", ack_after_looking)
    await puller(tiki).pull(tiki.connection.id)
    assert seen_at_ack == [1]

    # And a failure while storing acknowledges nothing: the event stays in Tiki's queue.
    await tiki.sandbox.place_order(tiki.seller_id, [(sku, 1)])

    async def refuse(*_args: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr("agrimarket.webhooks.service.InboxService.receive", refuse)
    acks = tiki.calls(ACK)
    with pytest.raises(RuntimeError):
        await puller(tiki).pull(tiki.connection.id)
    assert tiki.calls(ACK) == acks
    assert len(await tiki.inbox()) == 1


async def test_the_schedule_queues_a_pull_for_tiki_shops_only(tiki: TikiShop) -> None:
    assert pulls_events(tiki.channels, "tiki", tiki.http)
    assert not pulls_events(tiki.channels, "shopee", tiki.http)
    async with transaction(tiki.db) as session:
        assert await request_pulls(session, tiki.channels, tiki.http) == 1
    async with transaction(tiki.db) as session:
        assert await request_pulls(session, tiki.channels, tiki.http) == 0  # one queued absorbs the next
    assert len(await tiki.queued(PULL_KIND)) == 1
