"""Request and response bodies for orders."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agrimarket.models import OrderStatus

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ReasonText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShipIn(Strict):
    tracking_number: ShortText | None = Field(
        default=None, description="When you hand the parcel to a carrier yourself; the platform's own carrier sets it."
    )
    carrier: ShortText | None = None


class CancelIn(Strict):
    reason: ReasonText = Field(description="Why, in your words; the marketplace's closest reason is chosen.")


class OrderLineOut(BaseModel):
    id: uuid.UUID
    variant_id: uuid.UUID | None = Field(description="None when the SKU matches none of ours (`unknown_sku`).")
    external_line_id: str | None
    sku: str
    name: str
    quantity: int
    unit_price_vnd: int
    unknown_sku: bool
    reserved_quantity: int = Field(description="Held in stock for this line now.")
    oversold_quantity: int = Field(description="What stock could not cover: sold on the channel, not in stock.")


class OrderOut(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    connection_id: uuid.UUID
    channel: str
    external_id: str = Field(description="The marketplace's order number.")
    status: OrderStatus
    oversold: bool = Field(description="Some line sold more than was in stock: find more, or cancel.")
    unknown_sku: bool = Field(description="Some line's SKU matches none of ours: its stock was not touched.")
    currency: str
    total_vnd: int
    shipping_fee_vnd: int
    buyer_name: str | None
    tracking_number: str | None
    placed_at: datetime
    remote_updated_at: datetime | None
    created_at: datetime
    updated_at: datetime


class OrderDetailOut(OrderOut):
    lines: list[OrderLineOut]
