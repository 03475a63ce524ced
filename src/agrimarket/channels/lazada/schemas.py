"""What a Lazada connection stores (credentials, encrypted by the core; settings) and AgriMarket's own Lazada app."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

API_URL = "https://api.lazada.vn/rest"
AUTH_URL = "https://auth.lazada.com"


class LazadaCredentials(BaseModel):
    """One seller's authorisation of our app. ``seller_id`` is the shop's id on Lazada."""

    app_key: str = Field(min_length=1)
    app_secret: str = Field(min_length=1)
    access_token: str = Field(min_length=1)
    refresh_token: str = Field(min_length=1)
    seller_id: str = Field(min_length=1)
    country: str = "vn"
    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None


class LazadaSettings(BaseModel):
    """Per-connection settings: where the platform is and what ``/product/create`` needs that our catalogue lacks.

    Package dimensions and weight are mandatory on Lazada (cm and kg, ≤ 2 decimals); the defaults fit a carton of
    a few kilograms of fruit. A variant's own weight wins over ``package_weight_kg`` when it has one.
    """

    model_config = ConfigDict(extra="forbid")

    api_url: str = Field(default=API_URL, description="The API gateway, e.g. https://api.lazada.vn/rest.")
    auth_url: str = Field(default=AUTH_URL, description="The authorisation host (its /oauth/authorize and /rest).")
    primary_category: int | None = Field(
        default=None, description="Lazada category id used when a listing names none (see /category/tree/get)."
    )
    brand: str = Field(default="No Brand", description="Sent as the brand attribute when brand_id is unset.")
    brand_id: str | None = Field(default=None, description="Lazada's brand id (/category/brands/query).")
    package_length_cm: float = Field(default=30.0, gt=0, le=300)
    package_width_cm: float = Field(default=20.0, gt=0, le=300)
    package_height_cm: float = Field(default=15.0, gt=0, le=300)
    package_weight_kg: float = Field(default=1.0, gt=0, le=300)
    variation_name: str = Field(
        default="Variation", description="The sale property that tells a product's SKUs apart (saleProp key)."
    )


class LazadaApp(BaseSettings):
    """AgriMarket's app on the Lazada Open Platform, for the connect-by-authorisation flow: read from
    ``AGRIMARKET_LAZADA_APP_KEY`` / ``AGRIMARKET_LAZADA_APP_SECRET`` (one app for every seller, so it is process
    configuration, not a connection's setting)."""

    model_config = SettingsConfigDict(env_prefix="AGRIMARKET_LAZADA_", extra="ignore")

    app_key: str = ""
    app_secret: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.app_key and self.app_secret)
