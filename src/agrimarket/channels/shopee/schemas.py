"""What a Shopee connection stores (credentials, encrypted by the core) and how it is configured (settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PRODUCTION_URL = "https://partner.shopeemobile.com"


class ShopeeCredentials(BaseModel):
    """One authorised shop. The app's partner id and key travel with it so an adapter needs nothing else; the
    refresh token is single-use, so every refresh replaces it."""

    partner_id: int = Field(gt=0, lt=2**32)
    partner_key: str = Field(min_length=1)
    shop_id: int = Field(gt=0)
    access_token: str = Field(min_length=1)
    refresh_token: str = Field(min_length=1)
    access_expires_at: int | None = Field(default=None, description="Unix seconds; Shopee's tokens last 4 h.")


class ShopeeSettings(BaseModel):
    """Per-connection settings. Category and logistics ids are the shop's own choice on Shopee (see
    ``get_category`` / ``logistics/get_channel_list``); the defaults are placeholders a farmer's shop usually has
    enabled in Vietnam and are UNCONFIRMED as ids: set them per shop."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        default=PRODUCTION_URL,
        description="Shopee's host, or a sandbox's address with its mount prefix (http://127.0.0.1:8000/sandbox/shopee).",
    )
    category_id: int = Field(
        default=100629, gt=0, description="Used when the listing names no category (UNCONFIRMED default)."
    )
    logistic_ids: list[int] = Field(
        default_factory=lambda: [50021, 50018],
        min_length=1,
        description="Shipping channels enabled on new items (UNCONFIRMED defaults: SPX Express, GHN).",
    )
    default_weight_grams: int = Field(default=500, gt=0, le=300_000, description="When a variant has no weight.")
    days_to_ship: int = Field(default=2, ge=1, le=30)
    brand_name: str = Field(default="No Brand", min_length=1)
    tier_name: str = Field(default="Quy cách", min_length=1, max_length=20, description="The variants' tier name.")
    condition: Literal["NEW", "USED"] = "NEW"
    variation_delay_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="Wait between add_item and init_tier_variation; Shopee's guide asks for at least 5 s.",
    )
    ship_method: Literal["auto", "pickup", "dropoff"] = Field(
        default="auto", description="auto: dropoff when a tracking number is given and allowed, else pickup."
    )
    sender_real_name: str | None = Field(default=None, description="For dropoff, when Shopee asks for it.")


class ShopeeApp(BaseSettings):
    """AgriMarket's app on the Shopee Open Platform, for connect-by-authorisation: from the environment
    (``AGRIMARKET_SHOPEE_PARTNER_ID``, ``AGRIMARKET_SHOPEE_PARTNER_KEY``), never from a connection's settings,
    which are stored in clear and shown to the seller."""

    model_config = SettingsConfigDict(env_prefix="AGRIMARKET_SHOPEE_", extra="ignore")

    partner_id: int | None = None
    partner_key: str | None = None
