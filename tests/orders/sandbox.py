"""A shop on the Shopee or Lazada sandbox with a product published to it by the sync engine, reached through
``httpx`` mounts onto the sandbox's ASGI app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from agrimarket.accounts.permissions import Access
from agrimarket.channels.registry import load
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.media.storage import storage_for
from agrimarket.models import ChannelConnection, InboundEvent, Role
from agrimarket.sync.engine import SyncEngine
from tests.media import images
from tests.orders.support import Db, sku_of
from tests.sync.support import Farm
from tests.sync.test_sandboxes import World, _listed, _world


@dataclass
class Shop:
    world: World
    farm: Farm
    connection: ChannelConnection
    variant_id: uuid.UUID
    sku: str
    http: httpx.AsyncClient

    async def place_order(self, quantity: int = 1, *, paid: bool = True) -> str:
        placed = await self.world.sandbox.place_order(self.world.shop_id, [(self.sku, quantity)], paid=paid)
        return placed if isinstance(placed, str) else placed.order_id  # Lazada's façade answers the order itself


def http_for(world: World) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        mounts={f"http://{world.channel}.test": httpx.ASGITransport(app=world.sandbox.app)},
        timeout=httpx.Timeout(5.0),
    )


async def open_shop(
    db: Db, settings: Settings, channel: str, *, stock: int = 10, organization_id: uuid.UUID | None = None
) -> AsyncIterator[Shop]:
    world = _world(channel)
    http = http_for(world)
    try:
        if organization_id is None:
            farm, connection, product = await _listed(db, settings, world, variants=1, stock=stock)
        else:
            farm = Farm(db, organization_id, Access(uuid.uuid4(), {organization_id: Role.owner}))
            product = await farm.product("Hạt điều rang muối", variants=1, stock=stock)
            await farm.photo(settings, product, images.jpeg(images.photo((1600, 1200))))
            connection = await farm.connect(
                settings,
                channel=world.channel,
                shop_id=world.shop_id,
                credentials=world.credentials,
                channel_settings=world.settings,
            )
            await farm.list_product(connection, product)
        engine = SyncEngine(
            db,
            settings,
            channels=load(),
            http=http,
            storage=storage_for(settings.media_storage_url, settings.data_dir),
            owner="orders-test",
        )
        report = await engine.run(connection.id)
        assert report.outcome == "done", report
        variant = farm.products[product][0]
        yield Shop(world, farm, connection, variant, await sku_of(db, variant), http)
    finally:
        await http.aclose()


async def push(db: Db, shop: Shop, *order_ids: str, event_type: str = "order") -> uuid.UUID:
    """What the webhook endpoint stores for a verified push."""
    event = InboundEvent(
        source=f"{shop.connection.channel}:{shop.connection.id}",
        external_id=f"test:{uuid.uuid4().hex}",
        connection_id=shop.connection.id,
        event_type=event_type,
        order_ids=list(order_ids) if event_type == "order" else None,
        headers={"content-type": "application/json"},
        body=b"{}",
    )
    async with transaction(db) as session:
        session.add(event)
    return event.id
