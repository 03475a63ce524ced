"""Acme keeps its items in memory: enough of a marketplace to prove a third-party adapter plugs in."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel

from agrimarket.channels.base import (
    BatchLimit,
    BatchResult,
    Capabilities,
    ChannelAdapter,
    ChannelOrder,
    ConnectionInfo,
    EntryFailure,
    EventKind,
    Feature,
    ListingDraft,
    NoSettings,
    OrderPage,
    PriceUpdate,
    PublishResult,
    RateLimit,
    Shipment,
    StockUpdate,
    WebhookEvent,
)
from agrimarket.channels.errors import ChannelNotFound, InvalidSignature, MalformedEvent

CAPABILITIES = Capabilities(
    name="acme",
    display_name="Acme",
    stock_batch=BatchLimit(20),
    price_batch=BatchLimit(20),
    rate_limit=RateLimit(calls=5, per_seconds=1.0, source="Acme's partner guide"),
    features=frozenset({Feature.variants, Feature.price_update, Feature.delist, Feature.webhooks}),
)

# Acme's side: item id → {"title", "status", "skus": {sku id → {"sku", "price", "stock"}}}
ITEMS: dict[str, dict[str, Any]] = {}
_ids = itertools.count(1)


class AcmeCredentials(BaseModel):
    shop_id: str
    api_key: str


class AcmeAdapter:
    def __init__(self, connection: ConnectionInfo) -> None:
        self._key = str(connection.credentials.get("api_key", ""))

    @property
    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    async def publish(self, draft: ListingDraft) -> PublishResult:
        item_id = draft.external_item_id or f"acme-{next(_ids)}"
        item = ITEMS.setdefault(item_id, {"skus": {}})
        item.update(title=draft.title, status="live")
        by_sku = {sku["sku"]: sku_id for sku_id, sku in item["skus"].items()}
        for variant in draft.variants:
            sku_id = by_sku.get(variant.sku) or f"{item_id}-{variant.sku}"
            item["skus"][sku_id] = {"sku": variant.sku, "price": variant.price_vnd, "stock": variant.stock}
            by_sku[variant.sku] = sku_id
        return PublishResult(item_id, {variant.sku: by_sku[variant.sku] for variant in draft.variants})

    def _sku(self, item_id: str, sku_id: str) -> dict[str, Any] | None:
        sku: dict[str, Any] | None = ITEMS.get(item_id, {}).get("skus", {}).get(sku_id)
        return sku

    async def set_stock(self, updates: Sequence[StockUpdate]) -> BatchResult:
        failures = []
        for update in updates:
            sku = self._sku(update.external_item_id, update.external_sku_id)
            if sku is None:
                failures.append(EntryFailure(update.sku, ChannelNotFound(f"No SKU {update.external_sku_id}")))
            else:
                sku["stock"] = update.quantity
        return BatchResult(failures)

    async def set_prices(self, updates: Sequence[PriceUpdate]) -> BatchResult:
        failures = []
        for update in updates:
            sku = self._sku(update.external_item_id, update.external_sku_id)
            if sku is None:
                failures.append(EntryFailure(update.sku, ChannelNotFound(f"No SKU {update.external_sku_id}")))
            else:
                sku["price"] = update.price_vnd
        return BatchResult(failures)

    async def delist(self, external_item_id: str) -> None:
        if external_item_id not in ITEMS:
            raise ChannelNotFound(f"No item {external_item_id}")
        ITEMS[external_item_id]["status"] = "unlisted"

    async def list_orders(self, *, since: datetime, until: datetime, cursor: str | None = None) -> OrderPage:
        return OrderPage([])  # Acme sells nothing yet

    async def get_orders(self, external_ids: Sequence[str]) -> Sequence[ChannelOrder]:
        return []

    async def ship(self, external_order_id: str, shipment: Shipment) -> None:
        raise ChannelNotFound(f"No order {external_order_id}")

    async def cancel(self, external_order_id: str, reason: str) -> None:
        raise ChannelNotFound(f"No order {external_order_id}")

    def parse_webhook(self, *, url: str, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        expected = hmac.new(self._key.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get("x-acme-signature", ""), expected):
            raise InvalidSignature("Bad Acme signature.")
        try:
            payload = json.loads(body)
            return WebhookEvent(str(payload["id"]), EventKind.other, data=payload)
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedEvent(f"Unreadable Acme push: {exc}") from exc

    async def refresh_credentials(self) -> Mapping[str, Any]:
        return {}  # Acme's API keys do not expire


class AcmePlugin:
    name = "acme"
    capabilities = CAPABILITIES
    credentials_schema: type[BaseModel] = AcmeCredentials
    settings_schema: type[BaseModel] = NoSettings

    def shop_id(self, credentials: Mapping[str, Any]) -> str | None:
        value = credentials.get("shop_id")
        return str(value) if value else None

    def adapter(self, connection: ConnectionInfo, http: httpx.AsyncClient) -> ChannelAdapter:
        return AcmeAdapter(connection)


plugin = AcmePlugin()
