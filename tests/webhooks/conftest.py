"""The app under test knows its public address (the callback URL Shopee signs), reaches Shopee and Lazada sandboxes,
and makes no network call on the way: the process's HTTP client refuses every request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agrimarket.channels import lazada, shopee
from agrimarket.channels.lazada import push_signature as lazada_signature
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.channels.shop import callback_url
from agrimarket.channels.shopee.webhooks import push_signature as shopee_signature
from agrimarket.config import Settings
from agrimarket.db import make_sessionmaker, reader, transaction
from agrimarket.kit.crypto import CredentialCipher
from agrimarket.media.storage import storage_for
from agrimarket.models import ChannelConnection, InboundEvent, Job, Organization, OrganizationKind
from agrimarket.sandbox.core import Item, SandboxConfig, Sku
from agrimarket.sandbox.lazada import LazadaSandbox
from agrimarket.sandbox.shopee import ShopeeSandbox
from agrimarket.sync.runtime import SyncRuntime, use_runtime
from tests.conftest import _bare_app, _wipe

PUBLIC_URL = "https://agrimarket.test"
SKU = "SR-RI6-3KG"
Maker = async_sessionmaker[AsyncSession]


@pytest.fixture
def public_settings(migrated: Settings) -> Settings:
    return migrated.model_copy(update={"public_base_url": PUBLIC_URL})


def sandbox_channels() -> ChannelRegistry:
    registry = ChannelRegistry()
    registry.add(shopee.plugin)
    registry.add(lazada.plugin)
    return registry


@pytest.fixture(autouse=True)
def no_network(public_settings: Settings) -> Iterator[None]:
    """Acknowledging a push never calls out: the shared client fails the test if anything tries."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"network call while acknowledging a push: {request.method} {request.url}")

    parts = SyncRuntime(
        channels=sandbox_channels(),
        http=httpx.AsyncClient(transport=httpx.MockTransport(refuse)),
        storage=storage_for(public_settings.media_storage_url, public_settings.data_dir),
    )
    with use_runtime(parts):
        yield


@pytest.fixture
def app(public_settings: Settings, engine: AsyncEngine, sessionmaker: Maker) -> FastAPI:
    app = _bare_app(public_settings, engine)
    app.state.sessionmaker = sessionmaker
    app.state.read_sessionmaker = sessionmaker
    app.state.channels = sandbox_channels()
    return app


@pytest.fixture
async def committing_app(public_settings: Settings, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    app = _bare_app(public_settings, engine)
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.read_sessionmaker = make_sessionmaker(reader(engine))
    app.state.channels = sandbox_channels()
    try:
        yield app
    finally:
        await _wipe(engine)


@dataclass
class Shop:
    """A sandbox shop selling one SKU, connected to AgriMarket, its pushes aimed at the app under test."""

    channel: str
    sandbox: ShopeeSandbox | LazadaSandbox
    credentials: dict[str, Any]
    connection: ChannelConnection
    url: str  # the callback URL the marketplace posts to (and Shopee signs)

    @property
    def shop_id(self) -> str:
        return str(self.credentials["shop_id" if self.channel == "shopee" else "seller_id"])

    async def order(self, quantity: int = 1) -> str:
        """A buyer orders; the sandbox sends its signed push and waits until it is delivered."""
        if isinstance(self.sandbox, ShopeeSandbox):
            order_id = await self.sandbox.place_order(self.shop_id, [(SKU, quantity)])
        else:
            order_id = (await self.sandbox.place_order(self.shop_id, [(SKU, quantity)])).order_id
        await self.sandbox.market.drain()
        return order_id

    async def change_status(self, order_id: str, status: str) -> None:
        if isinstance(self.sandbox, ShopeeSandbox):
            await self.sandbox.set_order_status(self.shop_id, order_id, status)
        else:
            self.sandbox.set_order_status(self.shop_id, order_id, status)
        await self.sandbox.market.drain()

    @property
    def delivered_status(self) -> str:
        return "SHIPPED" if self.channel == "shopee" else "delivered"

    def sign(self, body: bytes, *, url: str | None = None) -> dict[str, str]:
        """Headers of a push with this body, signed as the marketplace signs (Shopee: over ``url`` too)."""
        if isinstance(self.sandbox, ShopeeSandbox):
            signature = shopee_signature(self.sandbox.partner_key, url or self.url, body)
        else:
            signature = lazada_signature(self.sandbox.app_key, self.sandbox.app_secret, body)
        return {"Authorization": signature, "Content-Type": "application/json"}


async def connect_shop(db: Maker, settings: Settings, channel: str, app: FastAPI) -> Shop:
    """A new organization with a shop on a fresh sandbox of ``channel``; pushes go to ``app`` through ASGI."""
    sandbox: ShopeeSandbox | LazadaSandbox
    config = SandboxConfig(rate_calls=10_000, burst=10_000)
    if channel == "shopee":
        sandbox = ShopeeSandbox(config)
        credentials = sandbox.add_shop("Nông sản Bình Phước")
        shop_id, channel_settings = str(credentials["shop_id"]), {"base_url": "http://shopee.test"}
    else:
        sandbox = LazadaSandbox(config)
        credentials = sandbox.add_shop("Nông sản Bình Phước")
        shop_id, channel_settings = str(credentials["seller_id"]), {"api_url": "http://lazada.test/rest"}
    market_shop = sandbox.market.shops[shop_id]
    item_id, sku_id = sandbox.market.new_id(), sandbox.market.new_id()
    market_shop.items[item_id] = Item(
        item_id=item_id,
        name="Sầu riêng Ri6",
        description="",
        category_id=None,
        status="NORMAL",
        image_ids=[],
        skus={sku_id: Sku(sku_id=sku_id, seller_sku=SKU, name="Trái 3 kg", price_vnd=300_000, stock=1_000)},
    )
    organization_id = uuid.uuid4()
    connection = ChannelConnection(
        id=uuid.uuid4(),
        organization_id=organization_id,
        channel=channel,
        name=f"Shop {shop_id}",
        external_shop_id=shop_id,
        credentials_encrypted=CredentialCipher(settings.encryption_keys).encrypt_json(credentials),
        settings={"channel": channel_settings, "category_map": {}},
    )
    async with transaction(db) as session:
        session.add(Organization(id=organization_id, name="HTX Sầu riêng", kind=OrganizationKind.cooperative))
        await session.flush()
        session.add(connection)
    url = callback_url(settings, connection)
    assert url is not None
    assert url.startswith(PUBLIC_URL)
    sandbox.set_callback(shop_id, url)
    sandbox.market.use_http(httpx.AsyncClient(transport=httpx.ASGITransport(app=app)))
    return Shop(channel, sandbox, credentials, connection, url)


@pytest.fixture(params=["shopee", "lazada"])
async def shop(request: pytest.FixtureRequest, sessionmaker: Maker, public_settings: Settings, app: FastAPI) -> Shop:
    return await connect_shop(sessionmaker, public_settings, str(request.param), app)


async def events_of(db: Maker, connection_id: uuid.UUID) -> list[InboundEvent]:
    async with transaction(db) as session:
        found = await session.scalars(
            select(InboundEvent).where(InboundEvent.connection_id == connection_id).order_by(InboundEvent.received_at)
        )
        return list(found)


async def jobs_of(db: Maker, kind: str = "orders.drain_inbox") -> list[Job]:
    async with transaction(db) as session:
        return list(await session.scalars(select(Job).where(Job.kind == kind).order_by(Job.created_at)))


async def count(db: Maker, model: type[InboundEvent] | type[Job]) -> int:
    async with transaction(db) as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())
