"""All order and inbox queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, and_, bindparam, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from agrimarket.db import insert_objects, insert_or_nothing, table_of
from agrimarket.inventory.repository import keyset, lock_listings
from agrimarket.kit.pagination import Cursor
from agrimarket.models import (
    ChannelConnection,
    ConnectionStatus,
    InboundEvent,
    Listing,
    ListingStatus,
    Order,
    OrderLine,
    OrderStatus,
    StockLevel,
    Variant,
)
from agrimarket.sync.queue import request_sync


class PendingEvent(NamedTuple):
    """An unhandled event, as the inbox drain reads it."""

    id: uuid.UUID
    event_type: str
    order_ids: list[str] | None


# The drain's statements, built once per process: building a statement (and its cache key) cost about as much as
# running it; these run for every chunk of every shop's inbox.
_ORDERS_FOR_UPDATE = (
    select(Order)
    .where(
        Order.connection_id == bindparam("connection_id"),
        Order.external_id.in_(bindparam("external_ids", expanding=True)),
    )
    .order_by(Order.external_id)
    .options(defer(Order.raw))  # replaced, never read, by an ingest
    .with_for_update()
    .execution_options(populate_existing=True)
)
_LINES = (
    select(OrderLine)
    .where(OrderLine.order_id.in_(bindparam("order_ids", expanding=True)))
    .order_by(OrderLine.order_id, OrderLine.external_line_id, OrderLine.id)
    .execution_options(populate_existing=True)
)
_LISTED_VARIANTS = select(Listing.external_item_id, Listing.external_sku_id, Listing.variant_id).where(
    Listing.connection_id == bindparam("connection_id"),
    Listing.external_sku_id.in_(bindparam("sku_ids", expanding=True)),
)
_VARIANTS_BY_SKU = select(Variant.sku, Variant.id).where(
    Variant.organization_id == bindparam("organization_id"),
    func.lower(Variant.sku).in_(bindparam("skus", expanding=True)),
)
_UNHANDLED = (
    select(InboundEvent.id, InboundEvent.event_type, InboundEvent.order_ids)
    .where(InboundEvent.connection_id == bindparam("connection_id"), InboundEvent.handled_at.is_(None))
    .order_by(InboundEvent.received_at, InboundEvent.id)
    .limit(bindparam("limit"))
)
_EVENTS = table_of(InboundEvent).c
# On the table, not the entity: an ORM-enabled UPDATE goes through the ORM's bulk path first.
_MARK_HANDLED = (
    update(table_of(InboundEvent))
    .where(_EVENTS.id.in_(bindparam("ids", expanding=True)), _EVENTS.handled_at.is_(None))
    .values(handled_at=bindparam("at"), attempts=_EVENTS.attempts + 1, last_error=bindparam("error"))
)


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- orders ---------------------------------------------------------------------------------------------

    async def insert_order_if_absent(self, values: dict[str, Any]) -> bool:
        """Insert-or-nothing on (connection, external id): True when this call made the row. A second writer
        of the same order waits for the first (PostgreSQL's unique index; SQLite's single writer), then does
        nothing."""
        made = await insert_or_nothing(
            self.session, Order, [values], conflict=[Order.connection_id, Order.external_id], returning=Order.id
        )
        return bool(made)

    async def insert_orders_if_absent(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """:meth:`insert_order_if_absent` for many orders of one shop in one statement (in external id order, so
        two writers meet in the same order): the external ids of the rows this call made."""
        if not rows:
            return set()
        ordered = sorted(rows, key=lambda row: str(row["external_id"]))
        made = await insert_or_nothing(
            self.session, Order, ordered, conflict=[Order.connection_id, Order.external_id], returning=Order.external_id
        )
        return set(made)

    async def orders_for_update(self, connection_id: uuid.UUID, external_ids: Sequence[str]) -> dict[str, Order]:
        """The orders, row-locked until the transaction ends, in one order (external id) so two writers never
        wait for each other crosswise; refreshed with what the lock protects."""
        if not external_ids:
            return {}
        result = await self.session.execute(
            _ORDERS_FOR_UPDATE, {"connection_id": connection_id, "external_ids": list(external_ids)}
        )
        return {order.external_id: order for order in result.scalars()}

    async def insert_lines(self, lines: Sequence[OrderLine]) -> None:
        """New lines, not added to the session, in one statement (executemany); they stay detached from it."""
        await insert_objects(self.session, OrderLine, lines)

    async def order(self, order_id: uuid.UUID) -> Order | None:
        return await self.session.get(Order, order_id)

    async def order_for_update(self, order_id: uuid.UUID) -> Order | None:
        result = await self.session.execute(
            select(Order).where(Order.id == order_id).with_for_update().execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def lines(self, order_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[OrderLine]]:
        found: dict[uuid.UUID, list[OrderLine]] = {order_id: [] for order_id in order_ids}
        if not order_ids:
            return found
        result = await self.session.execute(_LINES, {"order_ids": list(order_ids)})
        for line in result.scalars():
            found[line.order_id].append(line)
        return found

    async def has_unknown_sku(self, order_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            select(exists().where(OrderLine.order_id == order_id, OrderLine.unknown_sku.is_(True)))
        )
        return bool(result.scalar_one())

    async def search(
        self,
        organization_id: uuid.UUID,
        *,
        status: OrderStatus | None,
        channel: str | None,
        connection_id: uuid.UUID | None,
        placed_from: datetime | None,
        placed_before: datetime | None,
        oversold: bool | None,
        unknown_sku: bool | None,
        cursor: Cursor | None,
        limit: int,
    ) -> list[tuple[Order, str, bool]]:
        """Orders newest first, each with its shop's channel and whether a line's SKU is unknown."""
        unknown = exists().where(OrderLine.order_id == Order.id, OrderLine.unknown_sku.is_(True))
        stmt = (
            select(Order, ChannelConnection.channel, unknown.label("unknown_sku"))
            .join(ChannelConnection, ChannelConnection.id == Order.connection_id)
            .where(Order.organization_id == organization_id)
        )
        if status is not None:
            stmt = stmt.where(Order.status == status)
        if channel is not None:
            stmt = stmt.where(ChannelConnection.channel == channel)
        if connection_id is not None:
            stmt = stmt.where(Order.connection_id == connection_id)
        if placed_from is not None:
            stmt = stmt.where(Order.placed_at >= placed_from)
        if placed_before is not None:
            stmt = stmt.where(Order.placed_at < placed_before)
        if oversold is not None:
            stmt = stmt.where(Order.oversold.is_(oversold))
        if unknown_sku is not None:
            stmt = stmt.where(unknown if unknown_sku else ~unknown)
        stmt = keyset(stmt, Order.placed_at, Order.id, cursor, newest_first=True)
        result = await self.session.execute(stmt.limit(limit))
        return [(order, channel_name, bool(flag)) for order, channel_name, flag in result.all()]

    # -- what an order line is ------------------------------------------------------------------------------

    async def listed_variants(
        self, connection_id: uuid.UUID, external_sku_ids: Sequence[str]
    ) -> list[tuple[str | None, str, uuid.UUID]]:
        """(external item id, external SKU id, variant) of the shop's listings with these platform SKU ids."""
        if not external_sku_ids:
            return []
        result = await self.session.execute(
            _LISTED_VARIANTS, {"connection_id": connection_id, "sku_ids": list(external_sku_ids)}
        )
        return [(item, sku, variant) for item, sku, variant in result.all() if sku is not None]

    async def variants_by_sku(self, organization_id: uuid.UUID, skus: Sequence[str]) -> dict[str, uuid.UUID]:
        """Our variants by SKU, compared case-insensitively (keys lower case)."""
        if not skus:
            return {}
        lowered = sorted({sku.lower() for sku in skus})
        result = await self.session.execute(_VARIANTS_BY_SKU, {"organization_id": organization_id, "skus": lowered})
        return {sku.lower(): variant_id for sku, variant_id in result.all()}

    async def lock_levels(self, variant_ids: Sequence[uuid.UUID]) -> None:
        """Lock the stock levels an ingest is about to change, all at once and in one order (PostgreSQL), so two
        batches touching the same variants queue instead of deadlocking."""
        if not variant_ids or self.session.get_bind().dialect.name != "postgresql":
            return
        await self.session.execute(
            select(StockLevel.variant_id)
            .where(StockLevel.variant_id.in_(sorted(set(variant_ids))))
            .order_by(StockLevel.variant_id)
            .with_for_update()
        )

    async def mark_shop_listings_dirty(self, connection: ChannelConnection) -> int:
        """Every listing of one shop needs pushing again (the platform changed stock on its side): our absolute
        quantities go out once more."""
        which = [Listing.connection_id == connection.id, Listing.status != ListingStatus.delisted]
        if self.session.get_bind().dialect.name == "postgresql":
            ids = await lock_listings(self.session, *which)  # in id order, as every writer of listings
            which = [Listing.id.in_(ids)]
        result = await self.session.execute(
            update(Listing)
            .where(*which)
            .values(desired_version=Listing.desired_version + 1)
            .execution_options(synchronize_session=False)
        )
        count = int(getattr(result, "rowcount", 0) or 0)
        if count:
            await request_sync(self.session, {connection.id: connection.organization_id})
        return count

    # -- connections ----------------------------------------------------------------------------------------

    async def connection(self, connection_id: uuid.UUID) -> ChannelConnection | None:
        return await self.session.get(ChannelConnection, connection_id)

    async def active_connections(self) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
        """(id, organization id, channel) of every shop in service."""
        result = await self.session.execute(
            select(ChannelConnection.id, ChannelConnection.organization_id, ChannelConnection.channel)
            .where(ChannelConnection.status == ConnectionStatus.active)
            .order_by(ChannelConnection.id)
        )
        return [(connection_id, organization_id, channel) for connection_id, organization_id, channel in result.all()]

    async def connections_by_shop(self, channel: str, shop_ids: Sequence[str]) -> dict[str, ChannelConnection]:
        """The channel's connected shops (not disconnected) by the platform's shop id."""
        if not shop_ids:
            return {}
        result = await self.session.execute(
            select(ChannelConnection).where(
                ChannelConnection.channel == channel,
                ChannelConnection.external_shop_id.in_(sorted(set(shop_ids))),
                ChannelConnection.status != ConnectionStatus.disconnected,
            )
        )
        return {c.external_shop_id: c for c in result.scalars() if c.external_shop_id is not None}

    async def advance_orders_cursor(
        self, connection_id: uuid.UUID, *, since: datetime, until: datetime, first: bool
    ) -> bool:
        """Move the shop's order cursor to ``until`` after a poll read every order updated in [since, until).

        Compare-and-set: only forward, and only if the cursor now stands inside what the poll covered
        (``since ≤ cursor``; or still unset, for a shop's first poll), so a poll that raced a newer one never
        moves the cursor back, and one that started before a reset by hand never skips what the reset asked for."""
        covered = and_(ChannelConnection.orders_cursor >= since, ChannelConnection.orders_cursor < until)
        condition = or_(ChannelConnection.orders_cursor.is_(None), covered) if first else covered
        result = cast(
            CursorResult[Any],
            await self.session.execute(
                update(ChannelConnection)
                .where(ChannelConnection.id == connection_id, condition)
                .values(orders_cursor=until)
                .execution_options(synchronize_session=False)
            ),
        )
        return bool(result.rowcount)

    async def mark_auth_expired(self, connection_id: uuid.UUID, credentials_version: int, message: str) -> bool:
        """The shop must be authorised again (as the sync engine records it), unless its credentials changed since
        they were refused (a reconnect or another process's refresh)."""
        result = cast(
            CursorResult[Any],
            await self.session.execute(
                update(ChannelConnection)
                .where(
                    ChannelConnection.id == connection_id,
                    ChannelConnection.status == ConnectionStatus.active,
                    ChannelConnection.credentials_version == credentials_version,
                )
                .values(status=ConnectionStatus.auth_expired, last_error=message[:1000])
                .execution_options(synchronize_session=False)
            ),
        )
        return bool(result.rowcount)

    # -- the inbox ------------------------------------------------------------------------------------------

    async def unhandled_events(self, connection_id: uuid.UUID, limit: int) -> list[PendingEvent]:
        """The shop's unhandled events, oldest first: what the drain needs of them (not their bodies)."""
        result = await self.session.execute(_UNHANDLED, {"connection_id": connection_id, "limit": limit})
        return [PendingEvent(event_id, event_type, order_ids) for event_id, event_type, order_ids in result.all()]

    async def event_bodies(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tuple[dict[str, str], bytes]]:
        """The headers and body kept with each event, to read it again."""
        if not event_ids:
            return {}
        result = await self.session.execute(
            select(InboundEvent.id, InboundEvent.headers, InboundEvent.body).where(InboundEvent.id.in_(event_ids))
        )
        return {event_id: (dict(headers or {}), body) for event_id, headers, body in result.all()}

    async def mark_handled(self, event_ids: Sequence[uuid.UUID], at: datetime, error: str | None = None) -> None:
        if not event_ids:
            return
        await self.session.execute(_MARK_HANDLED, {"ids": list(event_ids), "at": at, "error": error})

    async def note_failure(self, event_ids: Sequence[uuid.UUID], message: str) -> None:
        """A try that did not get through: the events stay unhandled, with what went wrong."""
        if not event_ids:
            return
        await self.session.execute(
            update(InboundEvent)
            .where(InboundEvent.id.in_(list(event_ids)), InboundEvent.handled_at.is_(None))
            .values(attempts=InboundEvent.attempts + 1, last_error=message[:2000])
            .execution_options(synchronize_session=False)
        )

    def add(self, *objects: object) -> None:
        self.session.add_all(objects)

    async def flush(self) -> None:
        await self.session.flush()
