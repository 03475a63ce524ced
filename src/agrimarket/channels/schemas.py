"""Request and response bodies for channels, connections and listings. Credentials go in, never out."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from agrimarket.catalog.fields import bounded
from agrimarket.channels.base import Feature
from agrimarket.channels.rules import ListingOverrides
from agrimarket.kit.text import Line
from agrimarket.models import Category, ConnectionStatus, ListingStatus


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_null(value: Any) -> Any:
    if value is None:
        raise PydanticCustomError("required", "This cannot be empty; leave the field out to keep its value.")
    return value


ConnectionName = Annotated[Line, bounded(120), Field(max_length=120, examples=["Shopee – HTX Điều Bình Phước"])]
ChannelName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,39}$", examples=["shopee"])]
ChannelCategoryId = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
CategoryMap = Annotated[
    dict[Category, ChannelCategoryId],
    Field(
        description="Our category → the channel's category id, used when a listing names no category of its own.",
        examples=[{"fruit": "100629"}],
    ),
]
# The plugin's own schema validates what is inside; this only keeps a request from being absurd.
Credentials = Annotated[
    dict[str, Any],
    Field(
        max_length=50,
        description="As the channel asks for them (see `credential_fields` of `GET /channels`). Stored encrypted; "
        "never returned.",
    ),
]
ChannelSettings = Annotated[
    dict[str, Any], Field(max_length=50, description="The channel's own settings (see `setting_fields`).")
]


class SettableStatus(StrEnum):
    """What a person may set; ``auth_expired`` and ``disconnected`` follow from events and DELETE."""

    active = "active"
    paused = "paused"


# -- requests ---------------------------------------------------------------------------------------------------


class ConnectionCreate(Strict):
    channel: ChannelName
    name: ConnectionName
    credentials: Credentials
    settings: ChannelSettings = Field(default_factory=dict)
    category_map: CategoryMap = Field(default_factory=dict)


class ConnectionAuthorize(Strict):
    """Connect a shop through the marketplace's own authorisation page (channels with
    `connect_by_authorization`)."""

    channel: ChannelName
    name: ConnectionName
    settings: ChannelSettings | None = Field(
        default=None,
        description="The channel's own settings (see `setting_fields`). Left out: the channel's defaults, or, "
        "when the shop is already connected here, the settings it has.",
    )
    category_map: CategoryMap | None = Field(
        default=None, description="Left out: none, or, when the shop is already connected here, the map it has."
    )


class ConnectionUpdate(Strict):
    """Only the fields sent change. ``credentials`` replaces the stored ones as a whole (same shop only);
    ``settings`` and ``category_map`` replace theirs as a whole too."""

    name: ConnectionName | None = None
    credentials: Credentials | None = None
    settings: ChannelSettings | None = None
    category_map: CategoryMap | None = None
    status: SettableStatus | None = Field(
        default=None, description="`paused`: nothing is sent to the shop until `active` again."
    )

    _required = field_validator("name", "credentials", "settings", "category_map", "status")(_not_null)


class ListingCreate(Strict):
    product_id: uuid.UUID
    overrides: ListingOverrides = Field(default_factory=ListingOverrides)


class ListingUpdate(Strict):
    overrides: ListingOverrides = Field(description="Replaces the listing's overrides as a whole.")


# -- responses --------------------------------------------------------------------------------------------------


class BatchLimitOut(BaseModel):
    max_size: int
    per_item: bool = Field(description="Every entry of one call belongs to the same item.")


class RateLimitOut(BaseModel):
    calls: int
    per_seconds: float
    burst: int
    documented: bool = Field(description="The platform publishes this figure; otherwise it is our default.")
    source: str


class ListingLimitsOut(BaseModel):
    title_min: int
    title_max: int
    description_max: int
    images_min: int
    images_max: int
    variants_max: int
    price_min_vnd: int
    price_max_vnd: int
    stock_max: int
    sku_max: int


class ChannelOut(BaseModel):
    name: str
    display_name: str
    features: list[Feature]
    stock_batch: BatchLimitOut
    price_batch: BatchLimitOut
    rate_limit: RateLimitOut
    max_in_flight: int
    limits: ListingLimitsOut
    required_fields: list[str] = Field(
        description='"category", "description", "images", "weight", or "attributes.<name>".'
    )
    image_rule: str | None
    credential_fields: list[str] = Field(description="What `credentials` holds when connecting a shop.")
    setting_fields: list[str]
    connect_by_authorization: bool = Field(
        description="Shops are connected through the marketplace's own authorisation page "
        "(`POST /organizations/{organization_id}/connections/authorize`) instead of by entering credentials."
    )


class ConnectionOut(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    channel: str
    name: str
    external_shop_id: str | None
    status: ConnectionStatus
    settings: dict[str, Any]
    category_map: dict[str, str]
    credential_fields: list[str] = Field(description="The names of the stored credentials; their values never.")
    credentials_version: int
    last_error: str | None
    last_synced_at: datetime | None
    token_expires_at: datetime | None
    circuit_open_until: datetime | None = Field(description="Calls to the shop rest until then after failures.")
    listings: dict[ListingStatus, int] = Field(description="Listed products by status.")
    created_at: datetime
    updated_at: datetime


class ListingVariantOut(BaseModel):
    listing_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    name: str
    status: ListingStatus
    external_sku_id: str | None
    pushed_price_vnd: int | None = Field(description="What the channel was last told.")
    pushed_stock: int | None
    desired_price_vnd: int = Field(description="What the price rule gives now.")
    desired_stock: int = Field(description="What the stock rule gives now (0 while paused, delisted or archived).")


class ListingOut(BaseModel):
    connection_id: uuid.UUID
    connection_name: str
    channel: str
    product_id: uuid.UUID
    status: ListingStatus
    message: str | None = Field(description="What the channel said, when it refused or something went wrong.")
    external_item_id: str | None
    overrides: ListingOverrides
    syncing: bool = Field(description="A change is waiting to reach the channel.")
    updated_at: datetime
    variants: list[ListingVariantOut]


class AuthorizationOut(BaseModel):
    authorization_url: str = Field(
        description="Send the seller's browser here. After they authorise AgriMarket, the marketplace sends them "
        "back to `GET /connections/callback/{channel}`, which connects the shop."
    )
    expires_at: datetime = Field(description="Authorise before this (10 minutes); afterwards, start again.")
