"""The channel port: one narrow Protocol every marketplace adapter implements, over provider-neutral dataclasses.

The core never imports an adapter. It asks the registry (``agrimarket.channels.registry``) for a
:class:`ChannelPlugin` by name, builds an adapter for one connection with :meth:`ChannelPlugin.adapter`, and talks
to it only through :class:`ChannelAdapter` and the dataclasses below. Everything an adapter needs to know about a
marketplace's rules (batch sizes, rate limits, image rules, required fields) it declares in
:class:`Capabilities`, so the engine batches, throttles and validates before anything is sent.

Money is integer VND and quantities are absolute ("stock is now N"), never deltas, so a repeated push is harmless.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel

from agrimarket.channels.errors import ChannelError
from agrimarket.models.orders import OrderStatus

# -- what a channel declares ------------------------------------------------------------------------------------


class Feature(StrEnum):
    """What a channel can do beyond publishing a listing and setting its stock."""

    variants = "variants"  # one item with several SKUs (else every variant is its own item)
    price_update = "price_update"  # price changes without republishing
    delist = "delist"
    order_polling = "order_polling"  # list orders updated since a time
    webhooks = "webhooks"  # signed push notifications
    fulfilment = "fulfilment"  # ship / cancel an order from here
    image_upload = "image_upload"  # images are uploaded (else referenced by public URL)


@dataclass(frozen=True, slots=True)
class BatchLimit:
    """At most ``max_size`` entries per call. ``per_item``: every entry of one call belongs to the same item
    (Shopee's ``update_stock`` takes one ``item_id`` and up to 50 of its models)."""

    max_size: int
    per_item: bool = False

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError("a batch holds at least one entry")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``calls`` per ``per_seconds`` for one shop, across every process. ``documented``: the platform publishes
    this figure (``source`` says where); otherwise it is our stated, configurable default."""

    calls: int
    per_seconds: float = 1.0
    burst: int = 1
    documented: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        if self.calls < 1 or self.per_seconds <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs calls ≥ 1, a positive period and burst ≥ 1")

    @property
    def interval(self) -> float:
        """Seconds between two calls at the sustained rate."""
        return self.per_seconds / self.calls


@dataclass(frozen=True, slots=True)
class ListingLimits:
    """What the channel accepts in one listing; checked before anything is sent."""

    title_max: int = 120
    title_min: int = 1
    description_max: int = 5000
    images_min: int = 0
    images_max: int = 9
    variants_max: int = 50
    price_min_vnd: int = 1
    price_max_vnd: int = 1_000_000_000
    stock_max: int = 999_999
    sku_max: int = 64


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Everything the engine must know about a channel to batch, throttle and validate for it."""

    name: str
    display_name: str
    stock_batch: BatchLimit
    price_batch: BatchLimit
    rate_limit: RateLimit
    limits: ListingLimits = field(default_factory=ListingLimits)
    features: frozenset[Feature] = frozenset()
    # Fields a listing must carry for this channel: "category", "description", "images", "weight", or
    # "attributes.<name>" for a mandatory attribute.
    required_fields: frozenset[str] = frozenset()
    # The media pipeline's rendition purpose for this channel's images (``agrimarket.media.rules``); None: the
    # stored normalised photo as it is.
    image_rule: str | None = None
    # Calls to one shop that may be in flight at once (each still waits its turn under ``rate_limit``).
    max_in_flight: int = 4

    def supports(self, feature: Feature) -> bool:
        return feature in self.features


# -- listings -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image to show on the listing, as the channel's rendition. ``content_hash`` identifies it: an adapter
    that uploads images returns the platform's id per hash, and the engine never uploads the same image twice."""

    content_hash: str
    mime_type: str
    width: int
    height: int
    data: bytes = field(repr=False)
    url: str | None = None  # public address, for channels that fetch images themselves


@dataclass(frozen=True, slots=True)
class VariantDraft:
    sku: str
    name: str
    price_vnd: int
    stock: int
    weight_grams: int
    unit: str
    external_sku_id: str | None = None


@dataclass(frozen=True, slots=True)
class ListingDraft:
    """One product as this channel should show it: our data with the listing's overrides applied.
    ``external_item_id`` is None until the item exists on the channel."""

    product_id: uuid.UUID
    title: str
    description: str
    variants: Sequence[VariantDraft]
    images: Sequence[ImageRef] = ()
    category: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    external_item_id: str | None = None
    # Images already on the channel, by content hash (the ids earlier publishes returned).
    uploaded_images: Mapping[str, str] = field(default_factory=dict)
    harvest_date: date | None = None
    shelf_life_days: int | None = None


class PublishState(StrEnum):
    live = "live"
    in_review = "in_review"  # the platform reviews it first (Tiki); still our "pending"


@dataclass(frozen=True, slots=True)
class PublishResult:
    external_item_id: str
    external_sku_ids: Mapping[str, str]  # our SKU → the platform's id for it
    state: PublishState = PublishState.live
    uploaded_images: Mapping[str, str] = field(default_factory=dict)  # content hash → platform image id
    message: str | None = None


@dataclass(frozen=True, slots=True)
class StockUpdate:
    """Set the quantity on sale to exactly ``quantity`` (never negative)."""

    external_item_id: str
    external_sku_id: str
    sku: str
    quantity: int

    def __post_init__(self) -> None:
        if self.quantity < 0:
            raise ValueError(f"a channel is never told a negative quantity ({self.sku}: {self.quantity})")


@dataclass(frozen=True, slots=True)
class PriceUpdate:
    external_item_id: str
    external_sku_id: str
    sku: str
    price_vnd: int

    def __post_init__(self) -> None:
        if self.price_vnd <= 0:
            raise ValueError(f"a price is positive ({self.sku}: {self.price_vnd})")


@dataclass(frozen=True, slots=True)
class EntryFailure:
    """One entry of a batch the platform refused while accepting the rest (an HTTP 200 partial failure)."""

    sku: str
    error: ChannelError


@dataclass(frozen=True, slots=True)
class BatchResult:
    failures: Sequence[EntryFailure] = ()

    @property
    def ok(self) -> bool:
        return not self.failures


# -- orders and events --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelOrderLine:
    external_line_id: str
    sku: str | None  # the seller SKU as the platform knows it; None when the platform gave none
    quantity: int
    unit_price_vnd: int
    external_item_id: str | None = None
    external_sku_id: str | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class ChannelOrder:
    external_id: str
    status: OrderStatus
    platform_status: str  # the platform's own word, for people and logs
    created_at: datetime
    updated_at: datetime
    lines: Sequence[ChannelOrderLine]
    total_vnd: int
    shipping_fee_vnd: int = 0
    buyer_name: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class OrderRef:
    external_id: str
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OrderPage:
    orders: Sequence[OrderRef]
    next_cursor: str | None = None  # None: this was the last page


class EventKind(StrEnum):
    order = "order"  # an order was created or changed
    stock = "stock"  # the platform changed stock on its side
    listing = "listing"  # review result, a ban, a deletion
    auth = "auth"  # authorisation revoked or about to expire
    other = "other"


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified push. ``external_id`` is unique per event on this channel (the inbox's dedupe key); a push is a
    hint: the order is re-fetched with :meth:`ChannelAdapter.get_orders` before anything changes."""

    external_id: str
    kind: EventKind
    order_ids: Sequence[str] = ()
    occurred_at: datetime | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Shipment:
    tracking_number: str | None = None
    carrier: str | None = None


@dataclass(frozen=True, slots=True)
class PulledEvents:
    """One pull from a channel's event queue: the events read from it, and the token that acknowledges them
    (None: nothing to acknowledge). ``bodies`` holds each event's raw JSON as the inbox keeps it, by event id."""

    events: Sequence[WebhookEvent]
    ack_token: str | None
    bodies: Mapping[str, bytes] = field(default_factory=dict, repr=False)


@runtime_checkable
class EventQueue(Protocol):
    """A channel that tells of new orders through a queue we pull from, instead of signed pushes (Tiki's Event
    Queue). Optional: the worker's ``webhooks.pull_events`` job pulls for adapters that implement this.

    Delivery is at-least-once: events pulled and not acknowledged come again, so the job stores every event in
    the inbox (insert-or-nothing on its id) and acknowledges only after that commit."""

    async def pull_events(self, limit: int) -> PulledEvents:
        """Up to ``limit`` of the oldest unacknowledged events (the channel may give fewer)."""
        ...

    async def ack_events(self, ack_token: str) -> None:
        """The events of that pull are stored: the channel may forget them. An expired token raises
        :class:`~agrimarket.channels.errors.ChannelNotFound` (the events will come again)."""
        ...


# -- the port -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One shop's connection as an adapter sees it: decrypted credentials, validated settings."""

    connection_id: uuid.UUID
    organization_id: uuid.UUID
    external_shop_id: str | None
    credentials: Mapping[str, Any] = field(repr=False)
    settings: Mapping[str, Any] = field(default_factory=dict)
    callback_url: str | None = None  # where this connection's webhooks arrive (some platforms sign it)


@runtime_checkable
class ChannelAdapter(Protocol):
    """Speaks one marketplace's API for one shop. Raises only :mod:`agrimarket.channels.errors`."""

    @property
    def capabilities(self) -> Capabilities: ...

    async def publish(self, draft: ListingDraft) -> PublishResult:
        """Create the item (``draft.external_item_id`` is None) or bring it up to date, variants and images too."""
        ...

    async def set_stock(self, updates: Sequence[StockUpdate]) -> BatchResult:
        """At most ``capabilities.stock_batch`` entries, grouped as it says."""
        ...

    async def set_prices(self, updates: Sequence[PriceUpdate]) -> BatchResult: ...

    async def delist(self, external_item_id: str) -> None:
        """Take the item off sale on the channel (unlist or delete, as the platform allows)."""
        ...

    async def list_orders(self, *, since: datetime, until: datetime, cursor: str | None = None) -> OrderPage:
        """Orders updated in [since, until), one page; within the platform's window and page-size limits."""
        ...

    async def get_orders(self, external_ids: Sequence[str]) -> Sequence[ChannelOrder]:
        """Full orders by id; an id the platform does not know is left out of the answer."""
        ...

    async def ship(self, external_order_id: str, shipment: Shipment) -> None: ...

    async def cancel(self, external_order_id: str, reason: str) -> None: ...

    def parse_webhook(self, *, url: str, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """Verify the push's signature over the raw body (constant time) and read it, or raise
        :class:`~agrimarket.channels.errors.InvalidSignature` / :class:`~agrimarket.channels.errors.MalformedEvent`."""
        ...

    async def refresh_credentials(self) -> Mapping[str, Any]:
        """New credentials (a refreshed access token) to store in place of the old; raises
        :class:`~agrimarket.channels.errors.AuthExpired` when the shop must be authorised again."""
        ...


class ChannelPlugin(Protocol):
    """What an entry point in the group ``agrimarket.channels`` provides: a channel's name, its declared
    capabilities, the schemas of a connection's credentials and settings, and a factory of adapters.

    A third-party package adds a marketplace by exposing one of these, e.g. in its ``pyproject.toml``::

        [project.entry-points."agrimarket.channels"]
        acme = "acme_market.adapter:plugin"
    """

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def credentials_schema(self) -> type[BaseModel]: ...

    @property
    def settings_schema(self) -> type[BaseModel]: ...

    def shop_id(self, credentials: Mapping[str, Any]) -> str | None:
        """The platform's id of the shop these credentials open (unique per channel), if it has one."""
        ...

    def adapter(self, connection: ConnectionInfo, http: httpx.AsyncClient) -> ChannelAdapter:
        """An adapter for one connection, on the process's shared HTTP client."""
        ...


class NoSettings(BaseModel):
    """For channels that take no per-connection settings."""

    model_config = {"extra": "forbid"}


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """Where to send the seller to authorise AgriMarket on the platform. ``redirect_uri`` is our callback; the
    platform sends the seller back to it with a one-time code (and ``state``, where the platform echoes it)."""

    redirect_uri: str
    state: str
    settings: Mapping[str, Any] = field(default_factory=dict)  # the connection's settings (base URLs, region)


@runtime_checkable
class OAuthPlugin(Protocol):
    """A channel whose shops are connected by the platform's own authorisation page (Shopee, Lazada, TikTok Shop)
    rather than by pasting credentials. Optional: the core offers the connect-by-authorisation flow for plugins
    that also implement this."""

    def authorization_url(self, request: AuthorizationRequest) -> str:
        """The platform's authorisation page for AgriMarket's app, signed as the platform requires."""
        ...

    async def exchange_code(
        self, callback: Mapping[str, str], request: AuthorizationRequest, http: httpx.AsyncClient
    ) -> Mapping[str, Any]:
        """The shop's credentials (valid for ``credentials_schema``) from the query the platform redirected back
        with (``code``, ``shop_id``…); raises :class:`~agrimarket.channels.errors.Rejected` for a refused or
        expired code."""
        ...


@dataclass(frozen=True, slots=True)
class LostPush:
    """A push the platform could not deliver, as its recovery API lists it: the event read from it (unsigned: it
    came over our own authenticated call), the platform's id of the shop it is for (None: an app-level push), and
    the push's body as the inbox keeps it."""

    shop_id: str | None
    event: WebhookEvent
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class LostPushBatch:
    events: Sequence[LostPush]
    last_message_id: str | None  # confirm up to this once the events are stored; None: nothing to confirm
    more: bool = False


@runtime_checkable
class LostPushSource(Protocol):
    """A channel that keeps the pushes it failed to deliver and lists them on request (Shopee's
    ``get_lost_push_message``). Optional: reconciliation fetches them for adapters that implement this.

    The list is the app's, not one shop's: every shop connected through the same app sees the same list, so
    ``lost_push_key`` names the app, and one job per key fetches, stores and confirms."""

    @property
    def lost_push_key(self) -> str:
        """Identifies the list (e.g. ``shopee:<partner id>``); not a secret."""
        ...

    async def lost_pushes(self) -> LostPushBatch:
        """The oldest unconfirmed lost pushes, one page."""
        ...

    async def confirm_lost_pushes(self, last_message_id: str) -> None:
        """The pushes up to ``last_message_id`` are stored: the platform may forget them."""
        ...


StockRef = tuple[str, str]  # (external item id, external SKU id)


@runtime_checkable
class StockReader(Protocol):
    """A channel that can say what quantity it shows for a listing. Optional: drift repair compares it with what
    we pushed, for adapters that implement this."""

    async def read_stock(self, refs: Sequence[StockRef]) -> Mapping[StockRef, int]:
        """The quantity on sale for each ``(external item id, external SKU id)`` asked, keyed by that pair (a SKU
        id alone is not unique: Shopee's item without variations has model 0). A SKU the channel no longer has is
        left out. Callers ask for one item's SKUs per call, so one call is one request under the rate limit."""
        ...
