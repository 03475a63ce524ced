"""A worker killed in the middle of a push (SIGKILL: no cleanup at all) loses nothing: its leases lapse, a second
worker takes the job and the shop, and every change reaches the marketplace."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.reference import ReferenceMarket, ReferencePlugin
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.models import ChannelConnection, Job, JobStatus, utcnow
from agrimarket.sync.queue import SYNC_KIND
from agrimarket.sync.tasks import sync_connection
from agrimarket.worker import Registry, Worker
from tests.sync.support import Farm, dirty, listings, make_engine, registry_of
from tests.sync.test_workers import wait_settled

ROOT = Path(__file__).resolve().parents[2]
Db = async_sessionmaker[AsyncSession]


async def _set_latency(db: Db, connection: ChannelConnection, store: Path, latency_ms: int) -> None:
    async with transaction(db) as session:
        await session.execute(
            update(ChannelConnection)
            .where(ChannelConnection.id == connection.id)
            .values(settings={"channel": {"store": str(store), "latency_ms": latency_ms}, "category_map": {}})
        )


async def _sync_job(db: Db) -> Job | None:
    """The sync job made by the stock changes (the publish's own job was closed by hand before)."""
    async with transaction(db) as session:
        jobs = (await session.execute(select(Job).where(Job.kind == SYNC_KIND, Job.finished_at.is_(None)))).scalars()
        return jobs.first()


async def test_a_worker_killed_mid_batch_loses_nothing_and_a_second_worker_finishes(
    db: Db,
    sync_settings: Settings,
    registry: Registry,
    make_worker: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    store = tmp_path / "market.json"
    farm = await Farm.make(db)
    products = [await farm.product(f"Hồ tiêu lô {i}", variants=40, stock=5) for i in range(3)]
    connection = await farm.connect(sync_settings, channel_settings={"store": str(store)})
    for product in products:
        await farm.list_product(connection, product)
    await make_engine(db, sync_settings, registry_of(ReferencePlugin())).run(connection.id)
    async with transaction(db) as session:
        # The publish's own job: closed, so the stock changes below make the one job the victim takes.
        await session.execute(update(Job).values(status=JobStatus.done, dedupe_key=None, finished_at=utcnow()))
    await _set_latency(db, connection, store, 4000)  # every call now hangs long enough to be killed in
    for product in products:
        for variant in farm.products[product]:
            await farm.set_stock(variant, 9)

    env = {
        **os.environ,
        "AGRIMARKET_ENV": "test",
        "AGRIMARKET_DATABASE_URL": sync_settings.database_url,
        "AGRIMARKET_DATA_DIR": str(tmp_path),
        "AGRIMARKET_ENCRYPTION_KEYS": ",".join(k.get_secret_value() for k in sync_settings.encryption_keys),
        "AGRIMARKET_SECRET_KEY": "victim-secret",
        "AGRIMARKET_WORKER_LEASE_SECONDS": str(sync_settings.worker_lease_seconds),
        "AGRIMARKET_SYNC_LEASE_SECONDS": str(sync_settings.sync_lease_seconds),
        "AGRIMARKET_SYNC_COALESCE_SECONDS": "0",
        "AGRIMARKET_LOG_LEVEL": "WARNING",
        "AGRIMARKET_AUTO_MIGRATE": "false",
    }
    victim = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.sync.victim", cwd=ROOT, env=env)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            job = await _sync_job(db)
            shop = ReferenceMarket.shop(connection.external_shop_id or "", store=store)
            if job is not None and job.locked_by == "victim" and shop.in_flight > 0:
                victim_job = job.id
                break
            assert loop.time() < deadline, "the victim never started pushing"
            await asyncio.sleep(0.05)
    finally:
        victim.send_signal(signal.SIGKILL)
        await victim.wait()

    rows = await listings(db, connection.id)
    assert len(dirty(rows)) == 120, "nothing may be recorded as pushed before the marketplace answered"
    await _set_latency(db, connection, store, 0)
    registry.register(SYNC_KIND, sync_connection)
    async with make_worker(worker_id="survivor", settings=sync_settings):
        await wait_settled(db, connection.id, within=30)

    shop = ReferenceMarket.shop(connection.external_shop_id or "", store=store)
    stock = {sku.sku: sku.stock for item in shop.items.values() for sku in item.skus.values()}
    assert len(stock) == 120
    assert set(stock.values()) == {9}
    async with transaction(db) as session:
        job = await session.get(Job, victim_job)
    assert job is not None
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.done, 2, None)  # the victim's try, then ours
