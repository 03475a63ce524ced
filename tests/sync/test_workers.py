"""The sync engine run by real workers: enqueued by changes, retried with backoff, one worker per shop."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agrimarket.channels.errors import RateLimited, Retryable
from agrimarket.channels.reference import ReferenceMarket, ReferencePlugin
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.media.storage import storage_for
from agrimarket.models import Job, JobStatus
from agrimarket.sync.queue import SYNC_KIND, SYNC_MAX_ATTEMPTS
from agrimarket.sync.runtime import SyncRuntime, use_runtime
from agrimarket.sync.tasks import sync_connection
from agrimarket.worker import Registry, Worker
from agrimarket.worker.repository import JobRepository
from agrimarket.worker.service import JobService
from tests.sync.support import Farm, dirty, listings, registry_of

Db = async_sessionmaker[AsyncSession]


@pytest.fixture
def plugin() -> ReferencePlugin:
    # One call in flight per shop: any overlap seen by the market can only come from two workers at once.
    base = ReferencePlugin()
    return ReferencePlugin(capabilities=dataclasses.replace(base.capabilities, max_in_flight=1))


@pytest.fixture
def sync_runtime(plugin: ReferencePlugin, sync_settings: Settings) -> Iterator[SyncRuntime]:
    parts = SyncRuntime(
        channels=registry_of(plugin),
        http=httpx.AsyncClient(),
        storage=storage_for(sync_settings.media_storage_url, sync_settings.data_dir),
    )
    with use_runtime(parts):
        yield parts


@pytest.fixture
def sync_registry(registry: Registry) -> Registry:
    registry.register(SYNC_KIND, sync_connection)
    return registry


async def _settled(db: Db, connection_id: uuid.UUID) -> bool:
    async with transaction(db) as session:
        unfinished = await session.scalar(
            select(func.count()).select_from(Job).where(Job.status.in_([JobStatus.queued, JobStatus.running]))
        )
    return unfinished == 0 and not dirty(await listings(db, connection_id))


async def wait_settled(db: Db, connection_id: uuid.UUID, within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await _settled(db, connection_id):
        if loop.time() > deadline:
            raise AssertionError("the shop never caught up with its listings")
        await asyncio.sleep(0.05)


def channel_stock(shop_id: str) -> dict[str, int]:
    return {sku.sku: sku.stock for item in ReferenceMarket.shop(shop_id).items.values() for sku in item.skus.values()}


@pytest.mark.usefixtures("sync_runtime")
async def test_two_workers_never_push_to_the_same_shop_at_once_and_the_shop_ends_right(
    db: Db,
    sync_settings: Settings,
    sync_registry: Registry,
    engine_b: AsyncEngine,
    make_worker: Callable[..., Worker],
) -> None:
    farm = await Farm.make(db)
    products = [await farm.product(f"Sầu riêng Ri6 lô {i}", variants=3, stock=20) for i in range(4)]
    connection = await farm.connect(sync_settings)
    shop_id = connection.external_shop_id
    assert shop_id is not None
    ReferenceMarket.shop(shop_id).latency = 0.01
    async with (
        make_worker(worker_id="w1", settings=sync_settings),
        make_worker(worker_id="w2", settings=sync_settings, engine=engine_b),
    ):
        for product in products:
            await farm.list_product(connection, product)
        for round_ in range(6):  # changes keep arriving while both workers push
            for product in products:
                for variant in farm.products[product]:
                    await farm.set_stock(variant, 20 - round_)
            await asyncio.sleep(0.03)
        await wait_settled(db, connection.id)

    shop = ReferenceMarket.shop(shop_id)
    assert shop.max_in_flight_seen == 1
    assert set(channel_stock(shop_id).values()) == {15}
    assert len(channel_stock(shop_id)) == 12


@pytest.mark.usefixtures("sync_runtime")
async def test_throttling_and_faults_are_retried_with_backoff_until_the_push_lands(
    db: Db, sync_settings: Settings, sync_registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=2, stock=8)
    connection = await farm.connect(sync_settings)
    shop_id = connection.external_shop_id
    assert shop_id is not None
    shop = ReferenceMarket.shop(shop_id)
    shop.inject("publish", RateLimited("Too many requests", retry_after=0.3))
    shop.inject("publish", Retryable("HTTP 502 Bad Gateway", status=502))
    async with make_worker(worker_id="w1", settings=sync_settings):
        await farm.list_product(connection, product)
        await wait_settled(db, connection.id)

    assert set(channel_stock(shop_id).values()) == {8}
    publishes = [call for call in shop.calls if call.op == "publish"]
    assert len(publishes) == 3
    assert publishes[1].started - publishes[0].started >= 0.3, "Retry-After must be honoured"
    async with transaction(db) as session:
        [job] = (await session.execute(select(Job).where(Job.kind == SYNC_KIND))).scalars().all()
    assert (job.status, job.attempts) == (JobStatus.done, 3)


@pytest.mark.usefixtures("sync_runtime")
async def test_a_dead_sync_job_can_be_retried_by_hand_and_then_pushes(
    db: Db, sync_settings: Settings, sync_registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    settings = sync_settings.model_copy(update={"sync_circuit_threshold": 1000})
    farm = await Farm.make(db)
    product = await farm.product(variants=1, stock=6)
    connection = await farm.connect(settings)
    shop_id = connection.external_shop_id
    assert shop_id is not None
    ReferenceMarket.shop(shop_id).inject("publish", Retryable("HTTP 500"), times=SYNC_MAX_ATTEMPTS)
    async with make_worker(worker_id="w1", settings=settings):
        await farm.list_product(connection, product)
        dead: list[Job] = []

        async def find_dead() -> None:
            async with transaction(db) as session:
                dead[:] = await JobService(JobRepository(session)).page(None, status=JobStatus.dead, kind=SYNC_KIND)

        while not dead:
            await find_dead()
            await asyncio.sleep(0.05)
        assert dirty(await listings(db, connection.id)), "a dead job leaves its work visible, not done"
        assert dead[0].last_error
        assert "HTTP 500" in dead[0].last_error

        async with transaction(db) as session:
            await JobService(JobRepository(session)).retry(None, dead[0].id)
        await wait_settled(db, connection.id)

    assert set(channel_stock(shop_id).values()) == {6}
