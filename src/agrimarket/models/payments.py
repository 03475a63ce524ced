"""Direct sales: a buyer's checkout on an organization's storefront, paid through Stripe Checkout."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agrimarket.models.base import Base, IdMixin, TimestampMixin, str_enum


class CheckoutState(StrEnum):
    """The Stripe Checkout Session's state, as last seen."""

    creating = "creating"  # stock held; the session is being created
    open = "open"  # the buyer can pay
    complete = "complete"  # paid (or an asynchronous payment pending): an order exists
    expired = "expired"  # never paid
    failed = "failed"  # the session could not be created


class HoldState(StrEnum):
    """What became of the stock the checkout held."""

    held = "held"
    converted = "converted"  # carried over to the order when the checkout completed
    released = "released"  # the checkout expired or was abandoned
    preempted = "preempted"  # taken by an order on another channel; the session is expired


class StorefrontCheckout(IdMixin, TimestampMixin, Base):
    __tablename__ = "storefront_checkouts"

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"))
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channel_connections.id", ondelete="RESTRICT"))
    state: Mapped[CheckoutState] = mapped_column(str_enum(CheckoutState, "checkout_state"))
    hold: Mapped[HoldState] = mapped_column(str_enum(HoldState, "checkout_hold"))
    session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    session_url: Mapped[str | None] = mapped_column(Text)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    total_vnd: Mapped[int] = mapped_column(BigInteger)
    locale: Mapped[str] = mapped_column(String(5), default="vi")
    expires_at: Mapped[datetime]
    # The refund this checkout's payment got from us (cancelled or oversold), once Stripe accepted it.
    refund_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("total_vnd > 0", name="total_positive"),
        # The sweep: open checkouts past their time, oldest first.
        Index("ix_storefront_checkouts_state_expires", "state", "expires_at"),
    )


class StorefrontCheckoutLine(IdMixin, Base):
    __tablename__ = "storefront_checkout_lines"

    checkout_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("storefront_checkouts.id", ondelete="CASCADE"), index=True
    )
    variant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_vnd: Mapped[int] = mapped_column(BigInteger)
    # How much of ``quantity`` the checkout holds in ``reserved`` now.
    held_quantity: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_vnd > 0", name="unit_price_positive"),
        CheckConstraint("held_quantity >= 0 AND held_quantity <= quantity", name="held_within_quantity"),
    )
