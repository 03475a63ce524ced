"""Request and response bodies for stock."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agrimarket.catalog.fields import Delta, IdempotencyKey, OnHand, Reason
from agrimarket.models import MovementKind, Unit


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StockSetIn(Strict):
    """The counted quantity now on hand (a stock-take): the difference is recorded as one movement."""

    on_hand: OnHand
    reason: Reason
    kind: Literal["adjust", "receive"] = Field(
        default="adjust", description="`receive` for new stock that came in; `adjust` for a count corrected."
    )


class StockAdjustmentIn(Strict):
    delta: Delta
    kind: Literal["receive", "adjust", "return"] = Field(
        description="`receive` and `return` add stock; `adjust` adds or removes (a count corrected, spoilage)."
    )
    reason: Reason
    idempotency_key: IdempotencyKey | None = Field(
        default=None,
        description="Send the same key when retrying after a lost connection: the change is applied only once.",
    )


class StockOut(BaseModel):
    variant_id: uuid.UUID
    product_id: uuid.UUID
    sku: str
    product_name: str
    variant_name: str
    unit: Unit
    on_hand: int
    reserved: int = Field(description="Held for orders not yet shipped.")
    available: int = Field(description="on_hand − reserved: what the channels may sell.")
    updated_at: datetime | None


class MovementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    variant_id: uuid.UUID
    kind: MovementKind
    on_hand_delta: int
    reserved_delta: int
    on_hand_after: int
    reserved_after: int
    reason: str
    reference: str | None
    actor_user_id: uuid.UUID | None
    created_at: datetime
