"""The sync engine's fault tests again, against the Shopee, Lazada and TikTok Shop sandboxes: the real adapters,
signing, error envelopes and batch limits, reached through ``httpx`` mounts onto the sandboxes' ASGI apps."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.registry import ChannelRegistry, load
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.media.storage import storage_for
from agrimarket.models import ChannelConnection, ListingStatus, Rendition
from agrimarket.sandbox.core import Fault, Marketplace, SandboxConfig, Sku
from agrimarket.sandbox.lazada import LazadaSandbox
from agrimarket.sandbox.shopee import ShopeeSandbox
from agrimarket.sandbox.tiktok import TikTokSandbox
from agrimarket.sync.engine import RunReport, SyncEngine
from agrimarket.worker import RetryLater
from tests.media import images
from tests.sync.support import Farm, dirty, listings

Db = async_sessionmaker[AsyncSession]


@dataclass
class World:
    """One sandbox platform, a shop on it, and the names its call log uses."""

    channel: str
    sandbox: ShopeeSandbox | LazadaSandbox | TikTokSandbox
    credentials: dict[str, Any]
    settings: dict[str, Any]
    stock_op: str
    price_op: str
    image_op: str

    @property
    def market(self) -> Marketplace:
        return self.sandbox.market

    @property
    def shop_id(self) -> str:
        return str(self.credentials["seller_id" if self.channel == "lazada" else "shop_id"])

    def skus(self) -> dict[str, Sku]:
        shop = self.market.shops[self.shop_id]
        return {sku.seller_sku: sku for item in shop.items.values() for sku in item.skus.values()}

    def ok_calls(self) -> Counter[str]:
        return Counter(call.op for call in self.market.calls_of(outcome="ok"))


def _world(channel: str) -> World:
    config = SandboxConfig(rate_calls=1000, burst=1000)
    if channel == "shopee":
        shopee = ShopeeSandbox(config)
        return World(
            "shopee",
            shopee,
            shopee.add_shop("Nông sản Bình Phước"),
            # The sandbox does not make us wait the 5 s Shopee's guide asks between add_item and init_tier_variation.
            {"base_url": "http://shopee.test", "variation_delay_seconds": 0},
            "product.update_stock",
            "product.update_price",
            "media_space.upload_image",
        )
    if channel == "tiktok":
        tiktok = TikTokSandbox(config)
        products = "/product/202309/products/{product_id}"
        settings = {"api_url": "http://tiktok.test", "auth_url": "http://tiktok.test/auth", "category_id": "600001"}
        return World(
            "tiktok",
            tiktok,
            tiktok.add_shop("Nông sản Bình Phước"),
            settings,
            f"{products}/inventory/update",
            f"{products}/prices/update",
            "/product/202309/images/upload",
        )
    lazada = LazadaSandbox(config)
    return World(
        "lazada",
        lazada,
        lazada.add_shop("Nông sản Bình Phước"),
        {"api_url": "http://lazada.test/rest", "auth_url": "http://lazada.test/auth", "primary_category": 10000481},
        "/product/stock/sellable/update",
        "/product/price_quantity/update",
        "/image/upload",
    )


@pytest.fixture(params=["shopee", "lazada", "tiktok"])
def world(request: pytest.FixtureRequest) -> World:
    return _world(str(request.param))


@pytest.fixture
async def sync_engine(db: Db, sync_settings: Settings, world: World) -> AsyncIterator[SyncEngine]:
    registry: ChannelRegistry = load()
    http = httpx.AsyncClient(
        mounts={f"http://{world.channel}.test": httpx.ASGITransport(app=world.sandbox.app)},
        timeout=httpx.Timeout(5.0),
    )
    yield SyncEngine(
        db,
        sync_settings,
        channels=registry,
        http=http,
        storage=storage_for(sync_settings.media_storage_url, sync_settings.data_dir),
        owner="sandbox-test",
    )
    await http.aclose()


async def _listed(
    db: Db, settings: Settings, world: World, *, variants: int = 2, stock: int = 10
) -> tuple[Farm, ChannelConnection, Any]:
    farm = await Farm.make(db)
    # 25 characters at least: TikTok Shop's shortest title in Vietnam.
    product = await farm.product("Hạt điều rang muối Bình Phước", variants=variants, stock=stock)
    await farm.photo(settings, product, images.jpeg(images.photo((1600, 1200))))
    connection = await farm.connect(
        settings,
        channel=world.channel,
        shop_id=world.shop_id,
        credentials=world.credentials,
        channel_settings=world.settings,
    )
    await farm.list_product(connection, product)
    return farm, connection, product


async def test_publishing_lists_every_variant_with_the_channels_rendition_uploaded_once(
    db: Db, sync_settings: Settings, world: World, sync_engine: SyncEngine
) -> None:
    farm, connection, product = await _listed(db, sync_settings, world, variants=3, stock=7)

    report = await sync_engine.run(connection.id)

    assert report.outcome == "done"
    skus = world.skus()
    assert len(skus) == 3
    assert {sku.stock for sku in skus.values()} == {7}
    assert world.ok_calls()[world.image_op] == 1
    [image] = world.market.images.values()
    purpose = load().get(world.channel).capabilities.image_rule
    async with transaction(db) as session:
        made = {r.purpose: r.content_hash for r in await session.scalars(select(Rendition))}
    assert purpose in made
    # The channel's own rendition went out, not the photo as stored.
    assert hashlib.sha256(image.data).hexdigest() == made[purpose]
    rows = await listings(db, connection.id)
    assert {row.status for row in rows} == {ListingStatus.live}
    assert not dirty(rows)

    await farm.update_product(product, name="Hạt điều rang muối Bình Phước loại A")  # republish: no second upload
    await sync_engine.run(connection.id)
    assert world.ok_calls()[world.image_op] == 1


async def test_ten_quick_stock_changes_go_out_as_one_call_of_the_last_quantity(
    db: Db, sync_settings: Settings, world: World, sync_engine: SyncEngine
) -> None:
    farm, connection, product = await _listed(db, sync_settings, world, variants=1)
    await sync_engine.run(connection.id)
    [variant] = farm.products[product]
    before = world.ok_calls()[world.stock_op]
    for quantity in range(11, 21):
        await farm.set_stock(variant, quantity)

    report: RunReport = await sync_engine.run(connection.id)

    assert report.outcome == "done"
    assert world.ok_calls()[world.stock_op] - before == 1
    assert [sku.stock for sku in world.skus().values()] == [20]


async def test_throttling_ends_the_run_with_the_platforms_retry_after_and_the_next_run_finishes(
    db: Db, sync_settings: Settings, world: World, sync_engine: SyncEngine
) -> None:
    farm, connection, product = await _listed(db, sync_settings, world, variants=2)
    await sync_engine.run(connection.id)
    for variant in farm.products[product]:
        await farm.set_stock(variant, 3)
    world.market.inject("*", Fault.throttle)

    with pytest.raises(RetryLater) as raised:
        await sync_engine.run(connection.id)
    assert raised.value.retry_after is not None
    assert raised.value.retry_after >= 0.9  # the platform's own hint (Shopee: Retry-After; Lazada: "ban … 1 seconds")
    assert dirty(await listings(db, connection.id))

    finished = await sync_engine.run(connection.id)
    assert finished.outcome == "done"
    assert {sku.stock for sku in world.skus().values()} == {3}
    assert not dirty(await listings(db, connection.id))


async def test_a_server_error_is_retried_and_nothing_is_lost(
    db: Db, sync_settings: Settings, world: World, sync_engine: SyncEngine
) -> None:
    farm, connection, product = await _listed(db, sync_settings, world, variants=2)
    await sync_engine.run(connection.id)
    for variant in farm.products[product]:
        await farm.set_stock(variant, 0)
    world.market.inject(world.stock_op, Fault.server_error)

    with pytest.raises(RetryLater):
        await sync_engine.run(connection.id)
    assert dirty(await listings(db, connection.id))
    finished = await sync_engine.run(connection.id)
    assert finished.outcome == "done"
    assert {sku.stock for sku in world.skus().values()} == {0}
    assert not dirty(await listings(db, connection.id))


async def test_an_expired_token_is_refreshed_once_and_the_call_made_again(
    db: Db, sync_settings: Settings, world: World, sync_engine: SyncEngine
) -> None:
    farm, connection, product = await _listed(db, sync_settings, world, variants=1)
    await sync_engine.run(connection.id)
    old_refresh_token = world.market.shops[world.shop_id].refresh_token
    world.market.expire_access_token(world.shop_id)
    [variant] = farm.products[product]
    await farm.set_stock(variant, 4)

    report = await sync_engine.run(connection.id)

    assert report.outcome == "done"
    assert report.calls["refresh"] == 1
    assert [sku.stock for sku in world.skus().values()] == [4]
    shop = world.market.shops[world.shop_id]
    assert shop.refresh_token != old_refresh_token  # a new refresh token, stored for the next refresh
    assert old_refresh_token in shop.used_refresh_tokens
