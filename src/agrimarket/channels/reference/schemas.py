"""What a reference connection stores: its credentials (encrypted by the core) and its settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agrimarket.channels.reference.state import DEFAULT_WEBHOOK_SECRET


class ReferenceCredentials(BaseModel):
    shop_id: str = Field(min_length=1)
    access_token: str = Field(min_length=1)
    refresh_token: str = Field(min_length=1)
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET


class ReferenceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str | None = Field(
        default=None, description="A JSON file holding the shop, shared by every process that names it."
    )
    latency_ms: int = Field(default=0, ge=0, le=600_000, description="Added to every call, as a slow platform.")
