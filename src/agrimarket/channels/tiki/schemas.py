"""What a Tiki connection stores (credentials, encrypted by the core; settings) and AgriMarket's own Tiki app."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

API_URL = "https://api.tiki.vn"
AUTH_URL = "https://api.tiki.vn/sc/oauth2"
# What the app asks the seller for: products and inventory to publish, orders to fulfil, offline for a refresh token.
SCOPE = "offline product order inventory"


class TikiCredentials(BaseModel):
    """One seller's authorisation of our app (authorization-code grant). ``client_id``/``client_secret`` are the
    app's, kept with the connection so a refresh needs nothing else; ``seller_id`` is the shop's id on Tiki."""

    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    access_token: str = Field(min_length=1)
    refresh_token: str | None = None
    seller_id: str = Field(min_length=1)
    scope: str = ""
    access_expires_at: datetime | None = None


class TikiSettings(BaseModel):
    """Per-connection settings: where the platform is and what a product request needs that our catalogue lacks."""

    model_config = ConfigDict(extra="forbid")

    api_url: str = Field(default=API_URL, description="The Open API host, e.g. https://api.tiki.vn.")
    auth_url: str = Field(default=AUTH_URL, description="The OAuth 2 server (its /auth and /token).")
    category_id: int | None = Field(
        default=None, description="Tiki category id used when a listing names none (/integration/v2/categories)."
    )
    brand: str = Field(default="OEM", description="Sent as the brand attribute when a listing names none.")
    origin: str = Field(default="Việt Nam", description="Sent as the origin attribute when a listing names none.")
    warehouse_id: int = Field(default=1, ge=1, description="The seller warehouse whose quantity we set.")
    inventory_type: str = Field(default="dropship", description="Tiki's inventory type for new products.")
    option_name: str = Field(default="Quy cách", description="The option that tells a product's variants apart.")


class TikiApp(BaseSettings):
    """AgriMarket's app on Tiki's Open API, for the connect-by-authorisation flow: read from
    ``AGRIMARKET_TIKI_CLIENT_ID`` / ``AGRIMARKET_TIKI_CLIENT_SECRET`` (one app for every seller, so process
    configuration, not a connection's setting)."""

    model_config = SettingsConfigDict(env_prefix="AGRIMARKET_TIKI_", extra="ignore")

    client_id: str = ""
    client_secret: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret)
