"""What a TikTok Shop connection stores (credentials, encrypted by the core; settings) and AgriMarket's own app."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

API_URL = "https://open-api.tiktokglobalshop.com"
AUTH_URL = "https://auth.tiktok-shops.com"
SERVICES_URL = "https://services.tiktokshop.com"


class TikTokCredentials(BaseModel):
    """One shop's authorisation of our app. The app key and secret travel with it so an adapter needs nothing
    else. ``shop_cipher`` (and ``warehouse_id``) are read from the platform when absent, once per adapter."""

    app_key: str = Field(min_length=1)
    app_secret: str = Field(min_length=1)
    access_token: str = Field(min_length=1)
    refresh_token: str = Field(min_length=1)
    shop_id: str = Field(min_length=1)
    shop_cipher: str | None = None
    warehouse_id: str | None = None
    access_expires_at: int | None = Field(default=None, description="Unix seconds; TikTok's tokens last 7 days.")
    refresh_expires_at: int | None = None
    open_id: str | None = None
    seller_name: str | None = None


class TikTokSettings(BaseModel):
    """Per-connection settings: where the platform is, and what ``Create Product`` needs that our catalogue lacks.
    The category is a leaf of TikTok's VN tree (``Get Categories``); the default is a placeholder (UNCONFIRMED as
    an id): set it per shop."""

    model_config = ConfigDict(extra="forbid")

    api_url: str = Field(default=API_URL, description="The Partner API host, or a sandbox's address with its prefix.")
    auth_url: str = Field(default=AUTH_URL, description="The token host (its /api/v2/token/get and /refresh).")
    services_url: str = Field(default=SERVICES_URL, description="The seller authorisation host (/open/authorize).")
    category_id: str = Field(default="600001", min_length=1, description="Leaf category when a listing names none.")
    warehouse_id: str | None = Field(default=None, description="Sales warehouse for inventory (else the default).")
    brand_id: str | None = None
    sales_attribute_name: str = Field(default="Quy cách", min_length=1, max_length=20)
    default_weight_grams: int = Field(default=500, gt=0, le=300_000)
    handover_method: Literal["PICKUP", "DROP_OFF"] = "PICKUP"
    shipping_provider_id: str | None = Field(
        default=None, description="For seller-shipped orders (shipping_type SELLER): the carrier's id on TikTok."
    )


class TikTokApp(BaseSettings):
    """AgriMarket's app on the TikTok Shop Partner Center, for connect-by-authorisation: from the environment
    (``AGRIMARKET_TIKTOK_APP_KEY``, ``_APP_SECRET``, ``_SERVICE_ID``), never from a connection's settings."""

    model_config = SettingsConfigDict(env_prefix="AGRIMARKET_TIKTOK_", extra="ignore")

    app_key: str = ""
    app_secret: str = ""
    service_id: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.app_key and self.app_secret and self.service_id)
