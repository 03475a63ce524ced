"""A worker killed (SIGKILL, no cleanup) while it re-fetches the orders of a shop's pushes loses nothing: the events
stay unhandled, nothing is half-applied, and a second worker drains them with every order counted once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.reference import ReferenceMarket, ReferencePlugin
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.models import ChannelConnection, InboundEvent, Job, JobStatus, Order, StockLevel, utcnow
from agrimarket.orders.inbox import DRAIN_KIND, request_drain
from agrimarket.orders.tasks import drain_inbox
from agrimarket.sync.queue import SYNC_KIND
from agrimarket.sync.tasks import sync_connection
from agrimarket.worker import Registry, Worker
from tests.orders.support import sku_of
from tests.sync.support import Farm, make_engine, registry_of

ROOT = Path(__file__).resolve().parents[2]
Db = async_sessionmaker[AsyncSession]
ORDERS = 5

pytestmark = pytest.mark.slow


async def _set_latency(db: Db, connection: ChannelConnection, store: Path, latency_ms: int) -> None:
    async with transaction(db) as session:
        await session.execute(
            update(ChannelConnection)
            .where(ChannelConnection.id == connection.id)
            .values(settings={"channel": {"store": str(store), "latency_ms": latency_ms}, "category_map": {}})
        )


async def _drain_job(db: Db) -> Job | None:
    async with transaction(db) as session:
        return (await session.scalars(select(Job).where(Job.kind == DRAIN_KIND, Job.finished_at.is_(None)))).first()


async def _unhandled(db: Db) -> int:
    async with transaction(db) as session:
        count = await session.scalar(
            select(func.count()).select_from(InboundEvent).where(InboundEvent.handled_at.is_(None))
        )
    return int(count or 0)


async def test_a_worker_killed_while_fetching_pushed_orders_loses_none_and_a_second_worker_counts_each_once(
    db: Db,
    worker_settings: Settings,
    registry: Registry,
    make_worker: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    store = tmp_path / "market.json"
    farm = await Farm.make(db)
    product = await farm.product("Sầu riêng Ri6", variants=1, stock=10)
    [variant_id] = farm.products[product]
    connection = await farm.connect(worker_settings, channel_settings={"store": str(store)})
    await farm.list_product(connection, product)
    await make_engine(db, worker_settings, registry_of(ReferencePlugin())).run(connection.id)
    shop = ReferenceMarket.shop(connection.external_shop_id or "", store=store)
    sku = await sku_of(db, variant_id)
    order_ids = [shop.place_order(sku).external_id for _ in range(ORDERS)]
    async with transaction(db) as session:
        # Close the publish's jobs: the drain below is the one job the victim takes.
        await session.execute(update(Job).values(status=JobStatus.done, dedupe_key=None, finished_at=utcnow()))
        for order_id in order_ids:  # what the webhook endpoint stores for each verified push
            session.add(
                InboundEvent(
                    source=f"reference:{connection.id}",
                    external_id=f"push:{order_id}",
                    connection_id=connection.id,
                    event_type="order",
                    order_ids=[order_id],
                    headers={},
                    body=b"{}",
                )
            )
        await request_drain(session, connection.id, connection.organization_id)
    await _set_latency(db, connection, store, 4000)  # get_orders now hangs long enough to be killed in

    env = {
        **os.environ,
        "AGRIMARKET_ENV": "test",
        "AGRIMARKET_DATABASE_URL": worker_settings.database_url,
        "AGRIMARKET_DATA_DIR": str(tmp_path),
        "AGRIMARKET_ENCRYPTION_KEYS": ",".join(k.get_secret_value() for k in worker_settings.encryption_keys),
        "AGRIMARKET_SECRET_KEY": "victim-secret",
        "AGRIMARKET_WORKER_LEASE_SECONDS": str(worker_settings.worker_lease_seconds),
        "AGRIMARKET_LOG_LEVEL": "WARNING",
        "AGRIMARKET_AUTO_MIGRATE": "false",
    }
    victim = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.sync.victim", cwd=ROOT, env=env)
    victim_job: uuid.UUID | None = None
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while victim_job is None:
            job = await _drain_job(db)
            if job is not None and job.locked_by == "victim" and shop.in_flight > 0:
                victim_job = job.id
            assert loop.time() < deadline, "the victim never started fetching the orders"
            await asyncio.sleep(0.05)
    finally:
        victim.send_signal(signal.SIGKILL)
        await victim.wait()

    assert await _unhandled(db) == ORDERS, "no push may be marked handled before its order is recorded"
    async with transaction(db) as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 0
        level = await session.get(StockLevel, variant_id)
        assert level is not None
        assert level.reserved == 0

    await _set_latency(db, connection, store, 0)
    registry.register(DRAIN_KIND, drain_inbox)
    registry.register(SYNC_KIND, sync_connection)
    async with make_worker(worker_id="survivor", settings=worker_settings):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while await _unhandled(db):
            assert loop.time() < deadline, "the survivor never drained the inbox"
            await asyncio.sleep(0.05)

    async with transaction(db) as session:
        orders = list(await session.scalars(select(Order)))
        level = await session.get(StockLevel, variant_id, populate_existing=True)
        job = await session.get(Job, victim_job)
    assert sorted(order.external_id for order in orders) == sorted(order_ids)
    assert level is not None
    assert (level.on_hand, level.reserved) == (10, ORDERS)  # each order held once
    assert job is not None
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.done, 2, None)  # the victim's try, then ours
