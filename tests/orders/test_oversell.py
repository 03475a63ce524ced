"""Never sell the same durian twice: 300 buyers on three shops (two Shopee, one Lazada) order the last 100 units at
once. Every push goes through the real webhook endpoint, two workers drain the inboxes and push stock back to the
sandboxes, and the books come out exact."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agrimarket.channels.registry import load
from agrimarket.channels.shop import callback_url
from agrimarket.config import Settings
from agrimarket.db import make_sessionmaker, reader, transaction
from agrimarket.media.storage import storage_for
from agrimarket.models import ChannelConnection, InboundEvent, Job, JobStatus, Listing, Order, OrderLine, StockLevel
from agrimarket.orders.inbox import DRAIN_KIND
from agrimarket.orders.tasks import drain_inbox
from agrimarket.sandbox.core import SandboxConfig
from agrimarket.sandbox.lazada import LazadaSandbox
from agrimarket.sandbox.shopee import ShopeeSandbox
from agrimarket.sync.queue import SYNC_KIND
from agrimarket.sync.runtime import SyncRuntime, use_runtime
from agrimarket.sync.tasks import sync_connection
from agrimarket.worker import Registry, Worker
from tests.conftest import _bare_app
from tests.media import images
from tests.orders.support import sku_of
from tests.sync.support import Farm

Db = async_sessionmaker[AsyncSession]
PUBLIC_URL = "https://agrimarket.test"
STOCK = 100
BUYERS_PER_SHOP = 100

pytestmark = pytest.mark.slow


@dataclass
class SandboxShop:
    sandbox: ShopeeSandbox | LazadaSandbox
    shop_id: str
    connection: ChannelConnection

    async def buy(self, sku: str) -> None:
        await self.sandbox.place_order(self.shop_id, [(sku, 1)])

    def stock(self, sku: str) -> int:
        found = self.sandbox.market.shops[self.shop_id].by_seller_sku(sku)
        assert found is not None, f"{sku} is not on shop {self.shop_id}"
        return found[1].stock


@pytest.fixture
def public_settings(worker_settings: Settings) -> Settings:
    return worker_settings.model_copy(update={"public_base_url": PUBLIC_URL})


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.register(SYNC_KIND, sync_connection)
    registry.register(DRAIN_KIND, drain_inbox)
    return registry


async def _settled(db: Db, pushes: int) -> bool:
    async with transaction(db) as session:
        handled = await session.scalar(
            select(func.count()).select_from(InboundEvent).where(InboundEvent.handled_at.is_not(None))
        )
        unfinished = await session.scalar(
            select(func.count()).select_from(Job).where(Job.status.in_([JobStatus.queued, JobStatus.running]))
        )
        dirty = await session.scalar(
            select(func.count()).select_from(Listing).where(Listing.desired_version > Listing.pushed_version)
        )
    return handled == pushes and unfinished == 0 and dirty == 0


async def _wait_settled(db: Db, pushes: int, *, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await _settled(db, pushes):
        if loop.time() > deadline:
            raise AssertionError(f"not settled within {within}s")
        await asyncio.sleep(0.05)


async def _watch_available(db: Db, variant_id: uuid.UUID, seen: list[int], stop: asyncio.Event) -> None:
    """Sample the stock level as fast as the database answers: available must never be seen below zero."""
    while not stop.is_set():
        async with transaction(db) as session:
            level = await session.get(StockLevel, variant_id, populate_existing=True)
            assert level is not None
            seen.append(level.on_hand - level.reserved)
        await asyncio.sleep(0.002)


async def test_300_buyers_on_three_shops_for_the_last_100_units_sell_exactly_100_and_every_shop_ends_at_zero(
    db: Db,
    public_settings: Settings,
    engine: AsyncEngine,
    engine_b: AsyncEngine,
    registry: Registry,
    make_worker: Callable[..., Worker],
) -> None:
    settings = public_settings
    config = SandboxConfig(rate_calls=10_000, burst=10_000)
    shopee, lazada = ShopeeSandbox(config), LazadaSandbox(SandboxConfig(rate_calls=10_000, burst=10_000))
    farm = await Farm.make(db, "HTX Sầu riêng Bù Đốp")
    product = await farm.product("Sầu riêng Ri6", variants=1, stock=STOCK, price=95_000)
    await farm.photo(settings, product, images.jpeg(images.photo((1600, 1200))))
    [variant_id] = farm.products[product]

    shops: list[SandboxShop] = []
    for sandbox, channel_settings in (
        (shopee, {"base_url": "http://shopee.test"}),
        (shopee, {"base_url": "http://shopee.test"}),  # a second Shopee shop of the same cooperative
        (lazada, {"api_url": "http://lazada.test/rest", "primary_category": 10000476}),
    ):
        credentials = sandbox.add_shop("Nông sản Bình Phước")
        shop_id = str(credentials.get("shop_id") or credentials.get("seller_id"))
        channel = "shopee" if isinstance(sandbox, ShopeeSandbox) else "lazada"
        connection = await farm.connect(
            settings, channel=channel, shop_id=shop_id, credentials=credentials, channel_settings=channel_settings
        )
        url = callback_url(settings, connection)
        assert url is not None
        sandbox.set_callback(shop_id, url)
        shops.append(SandboxShop(sandbox, shop_id, connection))

    app = _bare_app(settings, engine)
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.read_sessionmaker = make_sessionmaker(reader(engine))
    app.state.channels = load()
    to_app = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=httpx.Timeout(60.0))
    for sandbox in (shopee, lazada):
        sandbox.market.use_http(to_app)
    to_sandboxes = httpx.AsyncClient(
        mounts={
            "http://shopee.test": httpx.ASGITransport(app=shopee.app),
            "http://lazada.test": httpx.ASGITransport(app=lazada.app),
        },
        timeout=httpx.Timeout(30.0),
    )
    runtime = SyncRuntime(
        channels=load(), http=to_sandboxes, storage=storage_for(settings.media_storage_url, settings.data_dir)
    )
    seen: list[int] = []
    stop = asyncio.Event()
    try:
        with use_runtime(runtime):
            async with (
                make_worker(worker_id="w1", settings=settings),
                make_worker(worker_id="w2", settings=settings, engine=engine_b),
            ):
                for shop in shops:
                    await farm.list_product(shop.connection, product)
                await _wait_settled(db, 0, within=60)
                sku = await sku_of(db, variant_id)
                assert [shop.stock(sku) for shop in shops] == [STOCK] * 3

                watcher = asyncio.create_task(_watch_available(db, variant_id, seen, stop))
                buyers = [shop.buy(sku) for _ in range(BUYERS_PER_SHOP) for shop in shops]
                await asyncio.gather(*buyers)
                for sandbox in (shopee, lazada):
                    await sandbox.market.drain()
                await _wait_settled(db, len(buyers), within=120)
                stop.set()
                await watcher
    finally:
        stop.set()
        await to_app.aclose()
        await to_sandboxes.aclose()

    pushes = shopee.market.pushes + lazada.market.pushes
    assert len(pushes) == 300
    assert all(push.delivered and push.status_code == 200 for push in pushes)
    async with transaction(db) as session:
        level = await session.get(StockLevel, variant_id)
        assert level is not None
        orders = list(await session.scalars(select(Order)))
        lines = list(await session.scalars(select(OrderLine)))
        events = list(await session.scalars(select(InboundEvent)))
    assert (level.on_hand, level.reserved) == (STOCK, STOCK)  # held for the 100 orders that got a unit
    assert len(orders) == 300  # every order recorded, none lost, none twice
    assert sum(line.reserved_quantity for line in lines) == STOCK
    assert sum(line.oversold_quantity for line in lines) == 200
    assert sum(order.oversold for order in orders) == 200
    assert {order.connection_id for order in orders} == {shop.connection.id for shop in shops}
    assert len(events) == 300
    assert all(event.handled_at is not None and event.last_error is None for event in events)
    assert seen, "the stock level was sampled while the orders came in"
    assert min(seen) >= 0
    assert [shop.stock(sku) for shop in shops] == [0, 0, 0]
