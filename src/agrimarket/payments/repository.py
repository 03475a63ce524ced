"""Every storefront query: the shop page's rows, checkouts and their holds, and the Stripe events in the inbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.models import (
    Certification,
    ChannelConnection,
    CheckoutState,
    ConnectionStatus,
    HoldState,
    InboundEvent,
    Listing,
    ListingStatus,
    Order,
    Organization,
    Product,
    ProductStatus,
    StockLevel,
    StorefrontCheckout,
    StorefrontCheckoutLine,
    Variant,
)

CHANNEL = "storefront"
STRIPE_SOURCE = "stripe"
# Listings a buyer sees: nothing remote to wait for, so a listing is on the page from the moment it is made.
SHOWN = (ListingStatus.pending, ListingStatus.live)
OPEN_STATES = (CheckoutState.creating, CheckoutState.open)


@dataclass(frozen=True)
class ShopRow:
    listing: Listing
    variant: Variant
    product: Product
    level: StockLevel | None


class StorefrontRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    # -- the storefront -------------------------------------------------------------------------------------------

    async def storefront(self, key: str) -> ChannelConnection | None:
        """The storefront connection a page address names: its slug, or the organization's (or the connection's)
        id. A paused or disconnected storefront has no page."""
        statement = select(ChannelConnection).where(
            ChannelConnection.channel == CHANNEL, ChannelConnection.status == ConnectionStatus.active
        )
        try:
            as_id = uuid.UUID(key)
        except ValueError:
            found = await self.session.execute(statement.where(ChannelConnection.external_shop_id == key.lower()))
            return found.scalars().first()
        by_id = (
            await self.session.execute(
                statement.where(
                    (ChannelConnection.organization_id == as_id) | (ChannelConnection.id == as_id)
                ).order_by(ChannelConnection.created_at)
            )
        ).scalars()
        return by_id.first()

    async def organization(self, organization_id: uuid.UUID) -> Organization | None:
        return await self.session.get(Organization, organization_id)

    async def connection(self, connection_id: uuid.UUID) -> ChannelConnection | None:
        return await self.session.get(ChannelConnection, connection_id)

    async def shop_rows(self, connection_id: uuid.UUID, limit: int) -> list[ShopRow]:
        """What the storefront sells: shown listings of active products' variants, in catalogue order."""
        result = await self.session.execute(
            select(Listing, Variant, Product, StockLevel)
            .join(Variant, Variant.id == Listing.variant_id)
            .join(Product, Product.id == Variant.product_id)
            .outerjoin(StockLevel, StockLevel.variant_id == Variant.id)
            .where(
                Listing.connection_id == connection_id,
                Listing.status.in_(SHOWN),
                Variant.archived_at.is_(None),
                Product.status == ProductStatus.active,
            )
            .order_by(Product.created_at, Product.id, Variant.position, Variant.id)
            .limit(limit)
        )
        return [ShopRow(listing, variant, product, level) for listing, variant, product, level in result.all()]

    async def certifications(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Certification]]:
        found: dict[uuid.UUID, list[Certification]] = {}
        if not product_ids:
            return found
        result = await self.session.execute(
            select(Certification)
            .where(Certification.product_id.in_(list(product_ids)))
            .order_by(Certification.kind, Certification.id)
        )
        for certification in result.scalars():
            found.setdefault(certification.product_id, []).append(certification)
        return found

    async def sellable(self, connection_id: uuid.UUID, variant_ids: Sequence[uuid.UUID]) -> list[ShopRow]:
        """The rows of the variants a buyer asked for that the storefront does sell."""
        if not variant_ids:
            return []
        result = await self.session.execute(
            select(Listing, Variant, Product, StockLevel)
            .join(Variant, Variant.id == Listing.variant_id)
            .join(Product, Product.id == Variant.product_id)
            .outerjoin(StockLevel, StockLevel.variant_id == Variant.id)
            .where(
                Listing.connection_id == connection_id,
                Listing.variant_id.in_(list(variant_ids)),
                Listing.status.in_(SHOWN),
                Variant.archived_at.is_(None),
                Product.status == ProductStatus.active,
            )
            .order_by(Variant.id)
        )
        return [ShopRow(listing, variant, product, level) for listing, variant, product, level in result.all()]

    # -- checkouts ------------------------------------------------------------------------------------------------

    def add(self, *objects: object) -> None:
        self.session.add_all(objects)

    async def flush(self) -> None:
        await self.session.flush()

    async def checkout(self, checkout_id: uuid.UUID, *, lock: bool = False) -> StorefrontCheckout | None:
        statement = select(StorefrontCheckout).where(StorefrontCheckout.id == checkout_id)
        if lock:
            statement = statement.with_for_update().execution_options(populate_existing=True)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def checkout_of_session(self, session_id: str) -> StorefrontCheckout | None:
        result = await self.session.execute(
            select(StorefrontCheckout).where(StorefrontCheckout.session_id == session_id)
        )
        return result.scalar_one_or_none()

    async def checkout_of_payment(self, payment_intent_id: str) -> StorefrontCheckout | None:
        result = await self.session.execute(
            select(StorefrontCheckout).where(StorefrontCheckout.payment_intent_id == payment_intent_id)
        )
        return result.scalars().first()

    async def checkout_of_order(self, order_id: uuid.UUID) -> StorefrontCheckout | None:
        result = await self.session.execute(select(StorefrontCheckout).where(StorefrontCheckout.order_id == order_id))
        return result.scalars().first()

    async def lines(self, checkout_id: uuid.UUID) -> list[StorefrontCheckoutLine]:
        result = await self.session.execute(
            select(StorefrontCheckoutLine)
            .where(StorefrontCheckoutLine.checkout_id == checkout_id)
            .order_by(StorefrontCheckoutLine.variant_id, StorefrontCheckoutLine.id)
            .execution_options(populate_existing=True)
        )
        return list(result.scalars())

    async def holds_on(
        self, variant_id: uuid.UUID, *, exclude: uuid.UUID | None = None
    ) -> list[tuple[StorefrontCheckoutLine, StorefrontCheckout]]:
        """Open checkouts' holds on one variant, newest first (the buyer least far into paying). On PostgreSQL the
        checkouts are locked, and one being handled right now (its completion, its expiry) is skipped."""
        statement = (
            select(StorefrontCheckoutLine, StorefrontCheckout)
            .join(StorefrontCheckout, StorefrontCheckout.id == StorefrontCheckoutLine.checkout_id)
            .where(
                StorefrontCheckoutLine.variant_id == variant_id,
                StorefrontCheckoutLine.held_quantity > 0,
                StorefrontCheckout.hold.in_((HoldState.held, HoldState.preempted)),
                StorefrontCheckout.state.in_(OPEN_STATES),
            )
            .order_by(StorefrontCheckout.created_at.desc(), StorefrontCheckout.id.desc())
        )
        if exclude is not None:
            statement = statement.where(StorefrontCheckout.id != exclude)
        if self._postgres():
            statement = statement.with_for_update(skip_locked=True, of=StorefrontCheckout)
        result = await self.session.execute(statement.execution_options(populate_existing=True))
        return [(line, checkout) for line, checkout in result.all()]

    async def overdue(self, before: datetime, limit: int) -> list[uuid.UUID]:
        """Checkouts still open (or never opened) well past their time: their expiry may never have been told."""
        result = await self.session.execute(
            select(StorefrontCheckout.id)
            .where(StorefrontCheckout.state.in_(OPEN_STATES), StorefrontCheckout.expires_at < before)
            .order_by(StorefrontCheckout.expires_at)
            .limit(limit)
        )
        return list(result.scalars())

    async def order(self, order_id: uuid.UUID) -> Order | None:
        return await self.session.get(Order, order_id)

    # -- the inbox's Stripe events --------------------------------------------------------------------------------

    async def unhandled_events(self, limit: int) -> list[InboundEvent]:
        result = await self.session.execute(
            select(InboundEvent)
            .where(InboundEvent.source == STRIPE_SOURCE, InboundEvent.handled_at.is_(None))
            .order_by(InboundEvent.received_at, InboundEvent.id)
            .limit(limit)
        )
        return list(result.scalars())
