"""Direct database access for catalog and stock tests: rows no endpoint creates yet, and counts."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.models import Base, ChannelConnection, Listing


async def add_listing(
    sessionmaker: async_sessionmaker[AsyncSession], *, organization_id: str, product_id: str, variant_id: str
) -> uuid.UUID:
    """A listing on a fresh connection, as the channels module will make them: nothing pushed yet."""
    async with sessionmaker() as session:
        connection = ChannelConnection(
            id=uuid.uuid4(),
            organization_id=uuid.UUID(organization_id),
            channel="shopee",
            name="Shop Sầu riêng",
            external_shop_id=uuid.uuid4().hex,
        )
        session.add(connection)
        await session.flush()
        listing = Listing(
            id=uuid.uuid4(),
            organization_id=uuid.UUID(organization_id),
            connection_id=connection.id,
            product_id=uuid.UUID(product_id),
            variant_id=uuid.UUID(variant_id),
            desired_version=1,
            pushed_version=1,
        )
        session.add(listing)
        await session.commit()
        return listing.id


async def desired_version(sessionmaker: async_sessionmaker[AsyncSession], listing_id: uuid.UUID) -> int:
    async with sessionmaker() as session:
        value = await session.scalar(select(Listing.desired_version).where(Listing.id == listing_id))
        assert value is not None
        return int(value)


async def count_rows(sessionmaker: async_sessionmaker[AsyncSession], *models: type[Base]) -> dict[str, int]:
    async with sessionmaker() as session:
        counts: dict[str, int] = {}
        for model in models:
            counts[model.__tablename__] = int(await session.scalar(select(func.count()).select_from(model)) or 0)
        return counts
