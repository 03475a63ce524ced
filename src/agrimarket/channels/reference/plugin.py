"""The reference channel's plugin: its declared capabilities, schemas and adapter factory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel

from agrimarket.channels.base import (
    BatchLimit,
    Capabilities,
    ChannelAdapter,
    ConnectionInfo,
    Feature,
    ListingLimits,
    RateLimit,
)
from agrimarket.channels.reference.adapter import ReferenceAdapter
from agrimarket.channels.reference.schemas import ReferenceCredentials, ReferenceSettings

NAME = "reference"


def default_capabilities(name: str = NAME) -> Capabilities:
    return Capabilities(
        name=name,
        display_name="Reference market (in memory)",
        stock_batch=BatchLimit(50),
        price_batch=BatchLimit(50),
        rate_limit=RateLimit(
            calls=20, per_seconds=1.0, burst=5, documented=False, source="the reference adapter's stated default"
        ),
        limits=ListingLimits(),
        features=frozenset(Feature),
        required_fields=frozenset(),
        image_rule=None,
        max_in_flight=4,
    )


class ReferencePlugin:
    """``ReferencePlugin(capabilities=dataclasses.replace(...))`` makes a variant: tiny batches, required fields,
    another rate limit. Every variant talks to the same :class:`~.market.ReferenceMarket`."""

    def __init__(self, name: str = NAME, capabilities: Capabilities | None = None) -> None:
        self._name = name
        self._capabilities = capabilities or default_capabilities(name)

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def credentials_schema(self) -> type[BaseModel]:
        return ReferenceCredentials

    @property
    def settings_schema(self) -> type[BaseModel]:
        return ReferenceSettings

    def shop_id(self, credentials: Mapping[str, Any]) -> str | None:
        value = credentials.get("shop_id")
        return str(value) if value else None

    def adapter(self, connection: ConnectionInfo, http: httpx.AsyncClient) -> ChannelAdapter:
        return ReferenceAdapter(self._capabilities, connection)
