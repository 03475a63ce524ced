"""The ``storefront`` channel: a plugin like any marketplace's, registered through the same entry points.

Publishing is local (the storefront page reads our own catalogue), so a listing is live at once and stock and price
pushes have nothing to send. Orders are not polled: they come from Stripe's events (``agrimarket.payments.events``).
Cancelling a paid order refunds it through Stripe; cancelling one whose session is still open expires the session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from agrimarket.channels.base import (
    BatchLimit,
    BatchResult,
    Capabilities,
    ChannelAdapter,
    ChannelOrder,
    ConnectionInfo,
    Feature,
    ListingDraft,
    ListingLimits,
    NoSettings,
    OrderPage,
    PriceUpdate,
    PublishResult,
    PublishState,
    RateLimit,
    Shipment,
    StockUpdate,
    WebhookEvent,
)
from agrimarket.channels.errors import MalformedEvent
from agrimarket.channels.plugin_base import PluginBase
from agrimarket.payments.gateway import gateway, idempotency_key
from agrimarket.sandbox.stripe import MAX_AMOUNT

NAME = "storefront"
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?$"

CAPABILITIES = Capabilities(
    name=NAME,
    display_name="Storefront (direct sales, Stripe)",
    stock_batch=BatchLimit(500),
    price_batch=BatchLimit(500),
    rate_limit=RateLimit(calls=1000, per_seconds=1.0, burst=1000, source="local: nothing is sent"),
    # A checkout is one Stripe payment, at most eight digits of dong.
    limits=ListingLimits(title_max=300, description_max=20_000, images_max=20, price_max_vnd=MAX_AMOUNT),
    features=frozenset({Feature.variants, Feature.price_update, Feature.delist, Feature.fulfilment}),
    max_in_flight=8,
)


class StorefrontCredentials(BaseModel):
    """Nothing secret: the storefront's address (``/shop/<slug>``), unique across the server."""

    model_config = ConfigDict(extra="forbid")

    slug: Annotated[str, Field(pattern=SLUG_PATTERN, examples=["htx-dieu-binh-phuoc"])]


def refund_key(session_id: str) -> str:
    """One refund per paid session, whoever asks for it (a cancel, the oversold policy)."""
    return idempotency_key("refund", session_id)


REFUND_METADATA_KEY = "checkout_session"


class StorefrontAdapter:
    def __init__(self, connection: ConnectionInfo, http: httpx.AsyncClient) -> None:
        self.connection = connection
        self.http = http

    @property
    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    async def publish(self, draft: ListingDraft) -> PublishResult:
        return PublishResult(
            external_item_id=str(draft.product_id),
            external_sku_ids={variant.sku: variant.sku for variant in draft.variants},
            state=PublishState.live,
        )

    async def set_stock(self, updates: Sequence[StockUpdate]) -> BatchResult:
        return BatchResult()  # the page reads available stock itself

    async def set_prices(self, updates: Sequence[PriceUpdate]) -> BatchResult:
        return BatchResult()

    async def delist(self, external_item_id: str) -> None:
        return None

    async def list_orders(self, *, since: datetime, until: datetime, cursor: str | None = None) -> OrderPage:
        return OrderPage(orders=[])

    async def get_orders(self, external_ids: Sequence[str]) -> Sequence[ChannelOrder]:
        return []  # storefront orders are made from Stripe's events, with the checkout's own lines

    async def ship(self, external_order_id: str, shipment: Shipment) -> None:
        return None  # the farmer delivers; the order just moves on

    async def cancel(self, external_order_id: str, reason: str) -> None:
        """Refund a paid session in full (idempotent), or expire one still open."""
        stripe = gateway(self.http)
        session = await stripe.session(external_order_id)
        intent = session.get("payment_intent")
        if session.get("status") == "open":
            await stripe.expire_session(external_order_id, idempotency_key=idempotency_key("expire", external_order_id))
            return
        if isinstance(intent, str) and intent and await stripe.refunded_vnd(intent) < int(session["amount_total"]):
            await stripe.refund(
                intent,
                idempotency_key=refund_key(external_order_id),
                metadata={REFUND_METADATA_KEY: external_order_id},
            )

    def parse_webhook(self, *, url: str, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        raise MalformedEvent("Storefront payments are told by Stripe at /webhooks/stripe.")

    async def refresh_credentials(self) -> Mapping[str, Any]:
        return dict(self.connection.credentials)  # nothing expires


class StorefrontPlugin(PluginBase):
    credentials_model = StorefrontCredentials
    settings_model = NoSettings

    def __init__(self) -> None:
        super().__init__(NAME, CAPABILITIES)

    def shop_id(self, credentials: Mapping[str, Any]) -> str | None:
        slug = credentials.get("slug")
        return str(slug).lower() if slug else None

    def adapter(self, connection: ConnectionInfo, http: httpx.AsyncClient) -> ChannelAdapter:
        return StorefrontAdapter(connection, http)


plugin = StorefrontPlugin()
