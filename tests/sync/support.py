"""The sync engine's test world, made through the services (not the API): an organization, products with
stock, a shop on a channel plugin, listings; and an engine to run over it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.accounts.permissions import Access
from agrimarket.catalog.repository import CatalogRepository
from agrimarket.catalog.schemas import ProductCreate, ProductUpdate
from agrimarket.catalog.service import CatalogService
from agrimarket.channels.base import ChannelPlugin
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService
from agrimarket.kit.crypto import CredentialCipher
from agrimarket.media.storage import storage_for
from agrimarket.models import (
    ChannelConnection,
    Job,
    JobStatus,
    Listing,
    MovementKind,
    Organization,
    OrganizationKind,
    Role,
)
from agrimarket.sync.engine import RunReport, SyncEngine
from agrimarket.sync.queue import SYNC_KIND, request_sync


@dataclass
class Farm:
    """One organization and its products, with an owner's reach to change them."""

    db: async_sessionmaker[AsyncSession]
    organization_id: uuid.UUID
    access: Access
    products: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)  # product → its variant ids

    @classmethod
    async def make(cls, db: async_sessionmaker[AsyncSession], name: str = "HTX Điều Bình Phước") -> Farm:
        org_id = uuid.uuid4()
        async with transaction(db) as session:
            session.add(Organization(id=org_id, name=name, kind=OrganizationKind.cooperative))
        return cls(db, org_id, Access(uuid.uuid4(), {org_id: Role.owner}))

    def _catalog(self, session: AsyncSession) -> CatalogService:
        return CatalogService(CatalogRepository(session), InventoryService(InventoryRepository(session)))

    async def product(
        self, name: str = "Hạt điều rang muối", *, variants: int = 2, stock: int = 10, price: int = 120_000
    ) -> uuid.UUID:
        data = ProductCreate.model_validate(
            {
                "name": name,
                "description": "Điều Bình Phước loại A, rang củi.",
                "category": "nuts",
                "variants": [
                    {
                        "sku": f"DIEU-{uuid.uuid4().hex[:8].upper()}",
                        "name": f"Hũ {i + 1}",
                        "unit": "hu",
                        "price_vnd": price * (i + 1),
                        "weight_grams": 500 * (i + 1),
                        "initial_stock": stock,
                    }
                    for i in range(variants)
                ],
            }
        )
        async with transaction(self.db) as session:
            view = await self._catalog(session).create_product(
                self.access, self.organization_id, data, actor_user_id=None
            )
        self.products[view.product.id] = [v.id for v in view.variants]
        return view.product.id

    async def set_stock(self, variant_id: uuid.UUID, on_hand: int) -> None:
        async with transaction(self.db) as session:
            await InventoryService(InventoryRepository(session)).set_on_hand(
                self.access,
                variant_id,
                on_hand=on_hand,
                kind=MovementKind.adjust,
                reason="kiểm kho",
                actor_user_id=None,
            )

    async def update_product(self, product_id: uuid.UUID, **changes: Any) -> None:
        async with transaction(self.db) as session:
            await self._catalog(session).update_product(self.access, product_id, ProductUpdate.model_validate(changes))

    async def update_variant(self, variant_id: uuid.UUID, **changes: Any) -> None:
        from agrimarket.catalog.schemas import VariantUpdate

        async with transaction(self.db) as session:
            await self._catalog(session).update_variant(self.access, variant_id, VariantUpdate.model_validate(changes))

    async def photo(self, settings: Settings, product_id: uuid.UUID, data: bytes) -> None:
        from agrimarket.media.repository import MediaRepository
        from agrimarket.media.service import MediaService

        storage = storage_for(settings.media_storage_url, settings.data_dir)
        async with transaction(self.db) as session:
            await MediaService(MediaRepository(session), storage).add_photo(
                organization_id=self.organization_id, product_id=product_id, data=data, filename="sau-rieng.jpg"
            )

    async def connect(
        self,
        settings: Settings,
        *,
        channel: str = "reference",
        shop_id: str | None = None,
        credentials: Mapping[str, Any] | None = None,
        channel_settings: Mapping[str, Any] | None = None,
        category_map: Mapping[str, str] | None = None,
    ) -> ChannelConnection:
        shop_id = shop_id or f"shop-{uuid.uuid4().hex[:8]}"
        creds = dict(credentials or {"shop_id": shop_id, "access_token": "at-1", "refresh_token": "rt-1"})
        connection = ChannelConnection(
            id=uuid.uuid4(),
            organization_id=self.organization_id,
            channel=channel,
            name=f"Shop {shop_id}",
            external_shop_id=shop_id,
            credentials_encrypted=CredentialCipher(settings.encryption_keys).encrypt_json(creds),
            settings={"channel": dict(channel_settings or {}), "category_map": dict(category_map or {})},
        )
        async with transaction(self.db) as session:
            session.add(connection)
        return connection

    async def list_product(
        self, connection: ChannelConnection, product_id: uuid.UUID, overrides: Mapping[str, Any] | None = None
    ) -> None:
        async with transaction(self.db) as session:
            for variant_id in self.products[product_id]:
                session.add(
                    Listing(
                        organization_id=self.organization_id,
                        connection_id=connection.id,
                        product_id=product_id,
                        variant_id=variant_id,
                        overrides=dict(overrides or {}),
                    )
                )
            await session.flush()
            await request_sync(session, {connection.id: self.organization_id})


async def listings(db: async_sessionmaker[AsyncSession], connection_id: uuid.UUID) -> list[Listing]:
    async with transaction(db) as session:
        result = await session.execute(
            select(Listing).where(Listing.connection_id == connection_id).order_by(Listing.created_at, Listing.id)
        )
        return list(result.scalars())


async def connection_row(db: async_sessionmaker[AsyncSession], connection_id: uuid.UUID) -> ChannelConnection:
    async with transaction(db) as session:
        found = await session.get(ChannelConnection, connection_id)
        assert found is not None
        return found


async def queued_syncs(db: async_sessionmaker[AsyncSession], connection_id: uuid.UUID) -> list[Job]:
    async with transaction(db) as session:
        result = await session.execute(select(Job).where(Job.kind == SYNC_KIND, Job.status == JobStatus.queued))
        return [job for job in result.scalars() if job.payload.get("connection_id") == str(connection_id)]


def dirty(rows: Sequence[Listing]) -> list[Listing]:
    return [row for row in rows if row.desired_version > row.pushed_version]


def registry_of(*plugins: ChannelPlugin) -> ChannelRegistry:
    registry = ChannelRegistry()
    for plugin in plugins:
        registry.add(plugin)
    return registry


def make_engine(
    db: async_sessionmaker[AsyncSession], settings: Settings, registry: ChannelRegistry, *, owner: str = "test"
) -> SyncEngine:
    return SyncEngine(
        db,
        settings,
        channels=registry,
        http=httpx.AsyncClient(),
        storage=storage_for(settings.media_storage_url, settings.data_dir),
        owner=owner,
    )


async def run(engine: SyncEngine, connection: ChannelConnection) -> RunReport:
    return await engine.run(connection.id)
