"""Connected marketplace shops and what is listed on them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from agrimarket.models.base import Base, IdMixin, TimestampMixin, str_enum


class ConnectionStatus(StrEnum):
    active = "active"
    paused = "paused"
    auth_expired = "auth_expired"
    disconnected = "disconnected"


class ListingStatus(StrEnum):
    pending = "pending"
    live = "live"
    error = "error"
    rejected = "rejected"
    paused = "paused"
    delisted = "delisted"


class ChannelConnection(IdMixin, TimestampMixin, Base):
    """One organization's authorised shop on one channel. Credentials are Fernet-encrypted JSON."""

    __tablename__ = "channel_connections"

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"), index=True)
    channel: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(120))
    external_shop_id: Mapped[str | None] = mapped_column(String(100))
    credentials_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[ConnectionStatus] = mapped_column(
        str_enum(ConnectionStatus, "connection_status"), default=ConnectionStatus.active
    )
    token_expires_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_synced_at: Mapped[datetime | None]
    # Reconciliation cursor: orders updated since this instant are polled (with overlap).
    orders_cursor: Mapped[datetime | None]
    # Bumped on every credentials write: a token refresh saves only over the credentials it started from, so two
    # processes refreshing at once cannot overwrite each other (Shopee refresh tokens are single-use).
    credentials_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The sync lease: one worker at a time pushes to a shop, so its rate limit holds across processes.
    sync_lease_owner: Mapped[str | None] = mapped_column(String(100))
    sync_lease_expires_at: Mapped[datetime | None]
    # The rate limiter's state (GCRA): the earliest instant the next call may go out.
    rate_next_at: Mapped[datetime | None]
    # The circuit: after repeated failures the shop is left alone until ``circuit_open_until``.
    circuit_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    circuit_open_until: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("channel", "external_shop_id"),)


class UsedConnectState(Base):
    """A connect-by-authorisation ``state`` that has connected a shop, so the same state cannot connect again.
    Kept until the state would have expired anyway (``expires_at``), then purged."""

    __tablename__ = "used_connect_states"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    used_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Listing(IdMixin, TimestampMixin, Base):
    """A variant bound to a connection. Dirty while ``desired_version > pushed_version``."""

    __tablename__ = "listings"

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"))
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channel_connections.id", ondelete="CASCADE"))
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    variant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"), index=True)
    external_item_id: Mapped[str | None] = mapped_column(String(100))
    external_sku_id: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[ListingStatus] = mapped_column(
        str_enum(ListingStatus, "listing_status"), default=ListingStatus.pending
    )
    # Per-channel overrides: title, price rule, stock rule, category, attributes.
    overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    desired_version: Mapped[int] = mapped_column(BigInteger, default=1)
    pushed_version: Mapped[int] = mapped_column(BigInteger, default=0)
    pushed_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    pushed_at: Mapped[datetime | None]
    channel_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("connection_id", "variant_id"),
        Index("ix_listings_dirty", "connection_id", "desired_version", "pushed_version"),
    )
