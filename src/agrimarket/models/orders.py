"""Orders from every channel, normalised."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from agrimarket.models.base import Base, IdMixin, TimestampMixin, str_enum


class OrderStatus(StrEnum):
    """Ordered: a status only moves to one of higher rank (cancelled and returned are terminal branches)."""

    unpaid = "unpaid"
    paid = "paid"
    ready_to_ship = "ready_to_ship"
    shipped = "shipped"
    delivered = "delivered"
    completed = "completed"
    cancelled = "cancelled"
    returned = "returned"


class Order(IdMixin, TimestampMixin, Base):
    __tablename__ = "orders"

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"))
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channel_connections.id", ondelete="RESTRICT"))
    external_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[OrderStatus] = mapped_column(str_enum(OrderStatus, "order_status"))
    currency: Mapped[str] = mapped_column(String(3), default="VND")
    total_vnd: Mapped[int] = mapped_column(BigInteger)
    shipping_fee_vnd: Mapped[int] = mapped_column(BigInteger, default=0)
    buyer_name: Mapped[str | None] = mapped_column(String(200))
    oversold: Mapped[bool] = mapped_column(default=False)
    placed_at: Mapped[datetime]
    remote_updated_at: Mapped[datetime | None]
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        UniqueConstraint("connection_id", "external_id"),
        Index("ix_orders_org_placed", "organization_id", "placed_at"),
    )


class OrderLine(IdMixin, Base):
    __tablename__ = "order_lines"

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    # None when the channel's SKU matches none of ours: kept and flagged, never dropped.
    variant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("variants.id", ondelete="SET NULL"))
    external_line_id: Mapped[str | None] = mapped_column(String(100))
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_vnd: Mapped[int] = mapped_column(BigInteger)
    unknown_sku: Mapped[bool] = mapped_column(default=False)
    # How much of this line's quantity is held in ``reserved`` now, and whether it was short.
    reserved_quantity: Mapped[int] = mapped_column(Integer, default=0)
    oversold_quantity: Mapped[int] = mapped_column(Integer, default=0)
