"""Stock: one level per variant, and the movements that explain it."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from agrimarket.models.base import Base, IdMixin, str_enum, utcnow


class MovementKind(StrEnum):
    receive = "receive"  # new stock came in (harvest, purchase)
    adjust = "adjust"  # a count corrected, spoilage, a gift
    sale = "sale"  # shipped to a buyer
    cancel = "cancel"  # a sale undone before it shipped
    return_ = "return"  # came back from a buyer
    import_ = "import"  # set by a bulk upload
    reserve = "reserve"  # held for an order not yet shipped
    release = "release"  # a hold given back


class StockLevel(Base):
    __tablename__ = "stock_levels"

    variant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"), index=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        # The database refuses what the code must never do, whatever the code does.
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="reserved_within_on_hand"),
    )

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class StockMovement(IdMixin, Base):
    """One change of stock. ``on_hand`` equals the sum of ``on_hand_delta`` over a variant's movements."""

    __tablename__ = "stock_movements"

    variant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"))
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"))
    kind: Mapped[MovementKind] = mapped_column(str_enum(MovementKind, "movement_kind"))
    on_hand_delta: Mapped[int] = mapped_column(Integer)
    reserved_delta: Mapped[int] = mapped_column(Integer, default=0)
    on_hand_after: Mapped[int] = mapped_column(Integer)
    reserved_after: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(300), default="")
    # What caused it: an order line, an import job…, as "kind:id"; unique so an event applies at most once.
    reference: Mapped[str | None] = mapped_column(String(200), unique=True)
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_stock_movements_variant_created", "variant_id", "created_at"),)
