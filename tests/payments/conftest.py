"""The storefront's test world: the app with Stripe keys pointing at the local fake of the Stripe API (reached in
memory through ``httpx.ASGITransport``, as the stripe library's base address), a farm with a storefront and a
marketplace shop selling the same variant, and the fake's events delivered to our webhook when a test says so.

Committing for real: checkouts, the webhook and the handler each open their own transactions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agrimarket.channels.registry import load
from agrimarket.config import OversoldPolicy, Settings
from agrimarket.db import make_sessionmaker, reader, transaction
from agrimarket.media.storage import storage_for
from agrimarket.models import (
    ChannelConnection,
    ConnectionStatus,
    Job,
    Listing,
    ListingStatus,
    Order,
    OrderStatus,
    StockLevel,
    StorefrontCheckout,
)
from agrimarket.payments import gateway
from agrimarket.payments.events import StripeEvents
from agrimarket.sandbox.stripe import StripeFake
from agrimarket.sync.runtime import SyncRuntime, use_runtime
from tests.conftest import _bare_app, _wipe
from tests.factories import Account, create_product, register
from tests.orders.support import channel_order, ingest
from tests.web.helpers import SAME_ORIGIN, csrf

API_KEY = "sk_test_storefront_key"
WEBHOOK_SECRET = "whsec_storefront_test"
STRIPE_BASE = "http://stripe.test"
APP_BASE = "http://testserver"
SLUG = "htx-dieu"
PRICE = 150_000

Db = async_sessionmaker[AsyncSession]


@pytest.fixture
def policy() -> OversoldPolicy:
    return OversoldPolicy.refund


@pytest.fixture
def pay_settings(migrated: Settings, policy: OversoldPolicy) -> Settings:
    return migrated.model_copy(
        update={
            "stripe_secret_key": SecretStr(API_KEY),
            "stripe_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "stripe_api_base": STRIPE_BASE,
            "storefront_oversold_policy": policy,
        }
    )


@pytest.fixture
def fake() -> StripeFake:
    return StripeFake(api_key=API_KEY, public_base=STRIPE_BASE, delivery="manual")


@dataclass
class World:
    settings: Settings
    app: FastAPI
    db: Db
    client: httpx.AsyncClient  # a buyer's browser (and the farmer's API calls)
    http: httpx.AsyncClient  # the process's shared client: Stripe's base address reaches the fake
    fake: StripeFake
    account: Account
    storefront_id: uuid.UUID
    marketplace: ChannelConnection
    product_id: str
    variant_id: uuid.UUID
    sku: str

    async def handle(self) -> None:
        """Run the job the webhook queued: Stripe's events handled."""
        await StripeEvents(self.db, self.settings, self.http).handle_pending()

    async def deliver(self) -> None:
        """The fake sends what it holds, and the handler runs."""
        statuses = await self.fake.deliver_all()
        assert all(status == 200 for status in statuses), statuses
        await self.handle()

    async def level(self) -> StockLevel:
        async with transaction(self.db) as session:
            found = await session.get(StockLevel, self.variant_id)
            assert found is not None
            return found

    async def checkout(self, checkout_id: uuid.UUID | None = None) -> StorefrontCheckout:
        async with transaction(self.db) as session:
            statement = select(StorefrontCheckout).order_by(StorefrontCheckout.created_at.desc())
            if checkout_id is not None:
                statement = statement.where(StorefrontCheckout.id == checkout_id)
            found = (await session.execute(statement)).scalars().first()
            assert found is not None
            return found

    async def order(self) -> Order | None:
        checkout = await self.checkout()
        if checkout.order_id is None:
            return None
        async with transaction(self.db) as session:
            return await session.get(Order, checkout.order_id)

    async def listing_version(self, connection_id: uuid.UUID) -> int:
        async with transaction(self.db) as session:
            listing = (
                await session.execute(
                    select(Listing).where(Listing.connection_id == connection_id, Listing.variant_id == self.variant_id)
                )
            ).scalar_one()
            return listing.desired_version

    async def buy(self, quantity: int = 1, *, variant_id: uuid.UUID | None = None) -> httpx.Response:
        """A buyer on the storefront page: choose a quantity and press "Pay by card"."""
        page = await self.client.get(f"/shop/{SLUG}")
        assert page.status_code == 200, page.text
        return await self.client.post(
            f"/shop/{SLUG}/checkout",
            data={"csrf_token": csrf(page.text), f"q-{variant_id or self.variant_id}": str(quantity)},
            headers=SAME_ORIGIN,
        )

    async def marketplace_sale(self, quantity: int, *, status: OrderStatus = OrderStatus.paid) -> Order:
        """An order on the marketplace shop, through the order pipeline as its push would bring it."""
        result = await ingest(self.db, self.marketplace, channel_order([(self.sku, quantity)], status=status))
        return result.order

    async def jobs(self, kind: str) -> list[Job]:
        async with transaction(self.db) as session:
            return list((await session.execute(select(Job).where(Job.kind == kind))).scalars())

    async def session_id(self) -> str:
        checkout = await self.checkout()
        assert checkout.session_id is not None
        return checkout.session_id


async def _storefront(client: httpx.AsyncClient, account: Account, product_id: str) -> uuid.UUID:
    connected = await client.post(
        f"/api/v1/organizations/{account.organization_id}/connections",
        json={"channel": "storefront", "name": "Cửa hàng HTX Điều", "credentials": {"slug": SLUG}},
        headers=account.headers,
    )
    assert connected.status_code == 201, connected.text
    connection_id = uuid.UUID(connected.json()["id"])
    listed = await client.post(
        f"/api/v1/connections/{connection_id}/listings", json={"product_id": product_id}, headers=account.headers
    )
    assert listed.status_code == 201, listed.text
    return connection_id


async def _marketplace(db: Db, organization_id: uuid.UUID, variant_id: uuid.UUID, product_id: str) -> ChannelConnection:
    """A marketplace shop listing the same variant (the order pipeline's side of the story)."""
    async with transaction(db) as session:
        connection = ChannelConnection(
            organization_id=organization_id,
            channel="reference",
            name="Chợ tham chiếu",
            external_shop_id=f"ref-{uuid.uuid4().hex[:8]}",
            settings={},
            status=ConnectionStatus.active,
        )
        session.add(connection)
        await session.flush()
        session.add(
            Listing(
                organization_id=organization_id,
                connection_id=connection.id,
                product_id=uuid.UUID(product_id),
                variant_id=variant_id,
                status=ListingStatus.live,
                external_item_id="ITEM-1",
                external_sku_id="SKU-ON-REF",
                desired_version=1,
                pushed_version=1,
            )
        )
        return connection


@pytest.fixture
def stock() -> int:
    return 3


@pytest.fixture
async def world(engine: AsyncEngine, pay_settings: Settings, fake: StripeFake, stock: int) -> AsyncIterator[World]:
    app = _bare_app(pay_settings, engine)
    db = make_sessionmaker(engine)
    app.state.sessionmaker = db
    app.state.read_sessionmaker = make_sessionmaker(reader(engine))
    mounts: dict[str, httpx.AsyncBaseTransport] = {
        STRIPE_BASE: httpx.ASGITransport(app=fake.app),
        APP_BASE: httpx.ASGITransport(app=app),
    }
    try:
        async with (
            httpx.AsyncClient(mounts=mounts) as http,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=APP_BASE) as client,
        ):
            fake.http = http
            fake.add_endpoint(f"{APP_BASE}/webhooks/stripe", WEBHOOK_SECRET)
            runtime = SyncRuntime(
                channels=load(), http=http, storage=storage_for(pay_settings.media_storage_url, pay_settings.data_dir)
            )
            with use_runtime(runtime), gateway.configured(pay_settings):
                account = await register(client, kind="cooperative", name="HTX Điều Bình Phước")
                product = await create_product(
                    client,
                    account,
                    name="Hạt điều rang muối",
                    initial_stock=stock,
                    harvest_date="2026-11-02",
                    certifications=[{"kind": "vietgap", "number": "VG-0042", "expires_on": "2028-06-30"}],
                )
                variant = product["variants"][0]
                await _price(client, account, variant["id"])
                storefront_id = await _storefront(client, account, str(product["id"]))
                variant_id = uuid.UUID(variant["id"])
                marketplace = await _marketplace(db, uuid.UUID(account.organization_id), variant_id, str(product["id"]))
                yield World(
                    settings=pay_settings,
                    app=app,
                    db=db,
                    client=client,
                    http=http,
                    fake=fake,
                    account=account,
                    storefront_id=storefront_id,
                    marketplace=marketplace,
                    product_id=str(product["id"]),
                    variant_id=variant_id,
                    sku=str(variant["sku"]),
                )
    finally:
        await _wipe(engine)


async def _price(client: httpx.AsyncClient, account: Account, variant_id: str) -> None:
    response = await client.patch(f"/api/v1/variants/{variant_id}", json={"price_vnd": PRICE}, headers=account.headers)
    assert response.status_code == 200, response.text


def body_of(fake: StripeFake, event_type: str) -> dict[str, Any]:
    [found] = [e for e in fake.events.values() if e["type"] == event_type]
    return found
