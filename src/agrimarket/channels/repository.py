"""All connection and listing queries.

A listing is stored per (connection, variant) and shown per (connection, product); the product's status is its
rows' most telling one (:data:`STATUS_RANK`), computed in SQL where a page or a count needs it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.kit.pagination import Cursor
from agrimarket.models import ChannelConnection, Listing, ListingStatus, Product, UsedConnectState
from agrimarket.sync.queue import request_sync

# Higher wins: one refused variant makes the whole product's listing "rejected", one waiting makes it "pending".
STATUS_RANK: dict[ListingStatus, int] = {
    ListingStatus.live: 1,
    ListingStatus.pending: 2,
    ListingStatus.delisted: 3,
    ListingStatus.paused: 4,
    ListingStatus.error: 5,
    ListingStatus.rejected: 6,
}
_STATUS_OF_RANK = {rank: status for status, rank in STATUS_RANK.items()}


def product_status(statuses: Sequence[ListingStatus]) -> ListingStatus:
    return max(statuses, key=STATUS_RANK.__getitem__)


def _rank() -> ColumnElement[int]:
    return case(*((Listing.status == status, rank) for status, rank in STATUS_RANK.items()), else_=0)


class ChannelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- connections --------------------------------------------------------------------------------------------

    async def connection(self, connection_id: uuid.UUID, *, lock: bool = False) -> ChannelConnection | None:
        """With ``lock``: row-locked and re-read, so a credentials change and a token refresh cannot interleave."""
        return await self.session.get(
            ChannelConnection, connection_id, with_for_update=lock or None, populate_existing=lock
        )

    async def connections(self, organization_id: uuid.UUID) -> list[ChannelConnection]:
        result = await self.session.execute(
            select(ChannelConnection)
            .where(ChannelConnection.organization_id == organization_id)
            .order_by(ChannelConnection.created_at, ChannelConnection.id)
        )
        return list(result.scalars())

    async def connections_by_id(self, connection_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ChannelConnection]:
        if not connection_ids:
            return {}
        result = await self.session.execute(
            select(ChannelConnection).where(ChannelConnection.id.in_(list(connection_ids)))
        )
        return {connection.id: connection for connection in result.scalars()}

    async def connection_of_shop(self, channel: str, external_shop_id: str) -> ChannelConnection | None:
        result = await self.session.execute(
            select(ChannelConnection).where(
                ChannelConnection.channel == channel, ChannelConnection.external_shop_id == external_shop_id
            )
        )
        return result.scalar_one_or_none()

    async def listing_counts(self, connection_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[ListingStatus, int]]:
        """Listed products by status, per connection: one query for a whole page of connections."""
        counts: dict[uuid.UUID, dict[ListingStatus, int]] = {connection_id: {} for connection_id in connection_ids}
        if not connection_ids:
            return counts
        per_product = (
            select(Listing.connection_id, func.max(_rank()).label("rank"))
            .where(Listing.connection_id.in_(list(connection_ids)))
            .group_by(Listing.connection_id, Listing.product_id)
            .subquery()
        )
        result = await self.session.execute(
            select(per_product.c.connection_id, per_product.c.rank, func.count()).group_by(
                per_product.c.connection_id, per_product.c.rank
            )
        )
        for connection_id, rank, count in result.all():
            counts[connection_id][_STATUS_OF_RANK[rank]] = int(count)
        return counts

    async def mark_connection_dirty(self, connection_id: uuid.UUID) -> int:
        """Every listing on the shop needs pushing again (the category map changed, the shop resumed)."""
        result = await self.session.execute(
            update(Listing)
            .where(Listing.connection_id == connection_id, Listing.status != ListingStatus.delisted)
            .values(desired_version=Listing.desired_version + 1)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def request_sync(self, connection: ChannelConnection) -> None:
        await request_sync(self.session, {connection.id: connection.organization_id})

    # -- connect-by-authorisation states -------------------------------------------------------------------------

    async def connect_state_used(self, nonce: str) -> bool:
        found = await self.session.execute(select(UsedConnectState.nonce).where(UsedConnectState.nonce == nonce))
        return found.first() is not None

    async def use_connect_state(
        self, nonce: str, organization_id: uuid.UUID, used_at: datetime, expires_at: datetime
    ) -> bool:
        """Record the state as used; False when it already was (by a request that committed first, whichever
        process ran it: the primary key decides). States past their expiry are purged on the way."""
        await self.session.execute(
            delete(UsedConnectState)
            .where(UsedConnectState.expires_at < used_at)
            .execution_options(synchronize_session=False)
        )
        try:
            async with self.session.begin_nested():
                self.session.add(
                    UsedConnectState(
                        nonce=nonce, organization_id=organization_id, used_at=used_at, expires_at=expires_at
                    )
                )
        except IntegrityError:
            return False
        return True

    # -- listings -----------------------------------------------------------------------------------------------

    async def rows(self, connection_id: uuid.UUID, product_id: uuid.UUID) -> list[Listing]:
        result = await self.session.execute(
            select(Listing)
            .where(Listing.connection_id == connection_id, Listing.product_id == product_id)
            .order_by(Listing.created_at, Listing.id)
            .execution_options(populate_existing=True)
        )
        return list(result.scalars())

    async def rows_of_products(
        self, connection_id: uuid.UUID, product_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[Listing]]:
        found: dict[uuid.UUID, list[Listing]] = defaultdict(list)
        if product_ids:
            result = await self.session.execute(
                select(Listing)
                .where(Listing.connection_id == connection_id, Listing.product_id.in_(list(product_ids)))
                .order_by(Listing.created_at, Listing.id)
            )
            for row in result.scalars():
                found[row.product_id].append(row)
        return found

    async def rows_of_product(self, product_id: uuid.UUID) -> dict[uuid.UUID, list[Listing]]:
        """A product's rows on every connection, by connection."""
        found: dict[uuid.UUID, list[Listing]] = defaultdict(list)
        result = await self.session.execute(
            select(Listing).where(Listing.product_id == product_id).order_by(Listing.created_at, Listing.id)
        )
        for row in result.scalars():
            found[row.connection_id].append(row)
        return found

    async def listed_products(
        self, connection_id: uuid.UUID, *, status: ListingStatus | None, cursor: Cursor | None, limit: int
    ) -> list[tuple[uuid.UUID, datetime]]:
        """Products listed on the shop, most recently listed first: (product id, when first listed).

        Keyset over (first row's created_at, product id); the cursor's ``id`` is a product id.
        """
        listed_at = func.min(Listing.created_at).label("listed_at")
        stmt = (
            select(Listing.product_id, listed_at)
            .where(Listing.connection_id == connection_id)
            .group_by(Listing.product_id)
        )
        if status is not None:
            stmt = stmt.having(func.max(_rank()) == STATUS_RANK[status])
        grouped = stmt.subquery()
        page = select(grouped.c.product_id, grouped.c.listed_at)
        if cursor is not None:
            page = page.where(
                or_(
                    grouped.c.listed_at < cursor.created_at,
                    and_(grouped.c.listed_at == cursor.created_at, grouped.c.product_id < cursor.id),
                )
            )
        page = page.order_by(grouped.c.listed_at.desc(), grouped.c.product_id.desc()).limit(limit)
        result = await self.session.execute(page)
        return [(product_id, at) for product_id, at in result.all()]

    async def update_rows(self, listing_ids: Sequence[uuid.UUID], **values: Any) -> None:
        """Change rows and make them dirty, in SQL: a bump made meanwhile by a stock change is added to, not lost."""
        await self.session.execute(
            update(Listing)
            .where(Listing.id.in_(list(listing_ids)))
            .values(desired_version=Listing.desired_version + 1, **values)
            .execution_options(synchronize_session=False)
        )

    async def products(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Product]:
        if not product_ids:
            return {}
        result = await self.session.execute(select(Product).where(Product.id.in_(list(product_ids))))
        return {product.id: product for product in result.scalars()}

    def add(self, *objects: object) -> None:
        self.session.add_all(objects)

    async def flush(self) -> None:
        await self.session.flush()
