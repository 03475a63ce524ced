"""The Tiki adapter: the channel port spoken to Tiki's Open API for one seller.

**Products are reviewed requests.** A publish sends a *product request* (``POST /integration/v2.1/requests``); Tiki
moves it ``queuing → processing → md_waiting_approve → bot_waiting_approve → awaiting_approve`` and then
``approved`` (every variant becomes a Tiki product of its own, created **inactive**) or ``rejected`` (final: a new
request must be sent). So :meth:`TikiAdapter.publish` answers :attr:`PublishState.in_review` with the state in plain
words until Tiki decides; the engine looks again later (``sync_review_check_seconds``) by publishing the same draft,
whose ``external_item_id`` names the request. Once approved, the publish activates the products and sets their
price and stock (``updateSkus``), and answers ``live`` with each variant's Tiki product id as its SKU id. A
rejection is :class:`Rejected` with Tiki's reason.

``external_item_id`` is the adapter's own reference to the product's requests: a comma-separated list of
``r<request_id>`` (a decided request; track ids expire after 30 days, request ids do not) and ``t<track_id>`` (one
still under review). A variant added to a product already on Tiki goes out in a request of its own, once no other
request of the product is under review. A publish that fails after its request went out (a throttled look, a 5xx
while activating) names the request in the error's ``external_item_id``, which the engine keeps: Tiki refuses a
second request for the same SKUs ("already exists"), so the next publish must look at this one.

Content edits of an approved product are not re-sent: Tiki reviews them as a request of their own, whose API is
not published (UNCONFIRMED); a republish brings price, stock and the on-sale state up to date.

**Events are pulled**, not pushed (:class:`~agrimarket.channels.base.EventQueue`): the queue belongs to the app
(created with its ``client_credentials`` token), one per seller (``agrimarket-seller-<id>``), subscribed to the
order events with the seller's token. :meth:`TikiAdapter.parse_webhook` refuses everything: Tiki signs no push.
"""

from __future__ import annotations

import contextlib
import html
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from pydantic import ValidationError

from agrimarket.channels.base import (
    BatchResult,
    Capabilities,
    ChannelOrder,
    ConnectionInfo,
    EntryFailure,
    EventKind,
    ImageRef,
    ListingDraft,
    OrderPage,
    OrderRef,
    PriceUpdate,
    PublishResult,
    PublishState,
    PulledEvents,
    Shipment,
    StockUpdate,
    VariantDraft,
    WebhookEvent,
)
from agrimarket.channels.errors import (
    AuthExpired,
    ChannelError,
    ChannelNotFound,
    InvalidSignature,
    MalformedEvent,
    Rejected,
    Retryable,
)
from agrimarket.channels.tiki.auth import TokenEndpoint
from agrimarket.channels.tiki.client import TikiClient
from agrimarket.channels.tiki.orders import STATUS, channel_order, tiki_time, tiki_time_param
from agrimarket.channels.tiki.schemas import TikiCredentials, TikiSettings
from agrimarket.kit.text import clean_line, clean_text
from agrimarket.models.orders import OrderStatus

Clock = Callable[[], float]

ORDERS_PAGE = 50  # GET /integration/v2/orders ``limit``: Tiki publishes no maximum (UNCONFIRMED); 50 is our default
SKUS_BATCH = 50  # updateSkus ``data`` entries: no published maximum (UNCONFIRMED); 50 is our stated default
PULL_MAX = 100  # events per pull: no published maximum (UNCONFIRMED); the sandbox refuses more
ORDER_EVENTS = ("ORDER_CREATED_SUCCESSFULLY", "ORDER_STATUS_UPDATED")
APPROVED, REJECTED, DELETED = "approved", "rejected", "deleted"
REVIEW_WORDS: Mapping[str, str] = {
    "queuing": "Tiki has received the product and queued it for review",
    "processing": "Tiki is converting the product to its own format",
    "md_waiting_approve": "Tiki's legal team is checking the product's certificates",
    "md_awaiting_approve": "Tiki's legal team is checking the product's certificates",
    "bot_waiting_approve": "Tiki's automatic check is reviewing the product",
    "bot_awaiting_approve": "Tiki's automatic check is reviewing the product",
    "awaiting_approve": "Tiki's content team is reviewing the product",
}
EVENT_KINDS: Mapping[str, EventKind] = {
    "ORDER_CREATED_SUCCESSFULLY": EventKind.order,
    "ORDER_STATUS_UPDATED": EventKind.order,
    "PRODUCT_PRICE_UPDATED": EventKind.stock,
    "PRODUCT_MARKET_PRICE_UPDATED": EventKind.stock,
    "PRODUCT_INVENTORY_UPDATED": EventKind.stock,
}
_SHIPPABLE_DONE = frozenset(
    {OrderStatus.ready_to_ship, OrderStatus.shipped, OrderStatus.delivered, OrderStatus.completed}
)


def review_message(state: str) -> str:
    words = REVIEW_WORDS.get(state, "Tiki is reviewing the product")
    return f"Waiting for Tiki's review: {words} ({state})."


def queue_name(seller_id: str) -> str:
    return f"agrimarket-seller-{seller_id}"


@dataclass
class AppCache:
    """What one process remembers per Tiki app: its own token (so a pull every 15 s costs no token call) and the
    queue code of each seller (so it is looked up once)."""

    tokens: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)  # (auth url, client) → token
    queues: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (api url, client, seller) → code


def _refs(external_item_id: str | None) -> list[tuple[str, str]]:
    refs: list[tuple[str, str]] = []
    for part in (external_item_id or "").split(","):
        part = part.strip()
        if len(part) > 1 and part[0] in "rt":
            refs.append((part[0], part[1:]))
    return refs


def _join(refs: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{kind}{ident}" for kind, ident in dict.fromkeys(refs))


def _description_html(text: str) -> str:
    paragraphs = [line.strip() for line in clean_text(text).split("\n") if line.strip()]
    return "".join(f"<p>{html.escape(line)}</p>" for line in paragraphs)


def token_credentials(
    *,
    client_id: str,
    client_secret: str,
    seller_id: str,
    access_token: str,
    refresh_token: str | None,
    scope: str,
    expires_at: datetime | None,
) -> dict[str, Any]:
    return TikiCredentials(
        client_id=client_id,
        client_secret=client_secret,
        access_token=access_token,
        refresh_token=refresh_token,
        seller_id=seller_id,
        scope=scope,
        access_expires_at=expires_at,
    ).model_dump(mode="json")


class TikiAdapter:
    def __init__(
        self,
        capabilities: Capabilities,
        connection: ConnectionInfo,
        http: httpx.AsyncClient,
        *,
        cache: AppCache,
        clock: Clock = time.time,
    ) -> None:
        self._capabilities = capabilities
        self._http = http
        self._cache = cache
        self._clock = clock
        self.settings = TikiSettings.model_validate(connection.settings or {})
        try:
            self._credentials: TikiCredentials | None = TikiCredentials.model_validate(connection.credentials)
        except ValidationError:
            self._credentials = None  # said on the first call: the shop must be connected again
        self.seller_id = connection.external_shop_id or (self._credentials.seller_id if self._credentials else None)

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def credentials(self) -> Mapping[str, Any]:
        return self._credentials.model_dump(mode="json") if self._credentials else {}

    def _creds(self) -> TikiCredentials:
        if self._credentials is None:
            raise AuthExpired("The shop's Tiki credentials are incomplete: connect it again.", code="credentials")
        return self._credentials

    def _api(self) -> TikiClient:
        return TikiClient(self._http, base_url=self.settings.api_url, token=self._creds().access_token)

    def _tokens(self) -> TokenEndpoint:
        creds = self._creds()
        return TokenEndpoint(
            self._http,
            auth_url=self.settings.auth_url,
            client_id=creds.client_id,
            client_secret=creds.client_secret,
            clock=self._clock,
        )

    # -- listings ------------------------------------------------------------------------------------------

    async def _upload(self, api: TikiClient, image: ImageRef) -> str:
        extension = "png" if image.mime_type == "image/png" else "jpg"
        files = {"file": (f"{image.content_hash}.{extension}", image.data, image.mime_type)}
        answer = await api.call("POST", "/integration/v2/media/images", files=files)
        url = answer.get("url") if isinstance(answer, dict) else None
        if not url:
            raise Retryable("Tiki accepted an image but gave no URL for it.", code="image_url")
        return str(url)

    async def _images(self, api: TikiClient, draft: ListingDraft) -> tuple[list[str], dict[str, str]]:
        uploaded: dict[str, str] = {}
        urls: list[str] = []
        for image in list(draft.images)[: self._capabilities.limits.images_max]:
            url = draft.uploaded_images.get(image.content_hash) or uploaded.get(image.content_hash)
            if url is None:
                url = uploaded[image.content_hash] = await self._upload(api, image)
            if url not in urls:
                urls.append(url)
        return urls, uploaded

    def _request_body(self, draft: ListingDraft, variants: Sequence[VariantDraft], urls: list[str]) -> dict[str, Any]:
        settings = self.settings
        category = draft.category or (str(settings.category_id) if settings.category_id else None)
        if category is None:
            raise Rejected("Choose a Tiki category for this product.", code="category_missing", field="category")
        if not urls:
            raise Rejected("Tiki needs at least one photo of the product.", code="image_missing", field="images")
        attributes: dict[str, Any] = {clean_line(k): clean_line(v) for k, v in draft.attributes.items()}
        attributes.setdefault("brand", settings.brand)
        attributes.setdefault("origin", settings.origin)
        if draft.shelf_life_days:
            attributes.setdefault("expiry_time", f"{draft.shelf_life_days} ngày")
        multiple = len(draft.variants) > 1
        return {
            "category_id": int(category) if category.isdigit() else category,
            "name": clean_line(draft.title),
            "description": _description_html(draft.description),
            "market_price": max(v.price_vnd for v in variants),
            "attributes": attributes,
            "image": urls[0],
            "images": urls[1:],
            "option_attributes": [settings.option_name] if multiple else [],
            "variants": [
                {
                    "sku": v.sku,
                    **({"option1": clean_line(v.name) or v.sku} if multiple else {}),
                    "price": v.price_vnd,
                    "inventory_type": settings.inventory_type,
                    "seller_warehouse": str(settings.warehouse_id),
                    "warehouse_stocks": [{"warehouseId": settings.warehouse_id, "qtyAvailable": v.stock}],
                    "image": urls[0],
                    "images": urls[1:],
                }
                for v in variants
            ],
            "certificate_files": [],
            "meta_data": {"is_auto_turn_on": False},
        }

    async def _track(self, api: TikiClient, track_id: str) -> Mapping[str, Any]:
        answer = await api.call("GET", f"/integration/v2/tracking/{track_id}")
        if not isinstance(answer, dict) or not answer.get("state"):
            raise Retryable("Tiki's tracking answer carries no state.", code="tracking")
        return answer

    async def _request_products(self, api: TikiClient, request_id: str) -> list[Mapping[str, Any]]:
        answer = await api.call("GET", f"/integration/v2/requests/{request_id}")
        products = answer.get("products") if isinstance(answer, dict) else None
        return [p for p in products or [] if isinstance(p, dict)]

    async def _resolve(
        self, api: TikiClient, refs: Sequence[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], dict[str, Mapping[str, Any]], list[str], list[str]]:
        """Each ref looked up: the refs as they are now (approved tracks become requests, rejected ones go), the
        approved products by seller SKU, the states still under review, and Tiki's reasons for rejections."""
        kept: list[tuple[str, str]] = []
        products: dict[str, Mapping[str, Any]] = {}
        pending: list[str] = []
        reasons: list[str] = []
        for kind, ident in refs:
            request_id = ident
            if kind == "t":
                tracking = await self._track(api, ident)
                state = str(tracking["state"])
                if state in (REJECTED, DELETED):
                    reason = tracking.get("reason") or tracking.get("reasons") or f"the request was {state}"
                    reasons.append(str(reason if not isinstance(reason, list) else "; ".join(map(str, reason))))
                    continue
                if state != APPROVED or not tracking.get("request_id"):
                    pending.append(state)
                    kept.append((kind, ident))
                    continue
                request_id = str(tracking["request_id"])
            kept.append(("r", request_id))
            for product in await self._request_products(api, request_id):
                if product.get("original_sku"):
                    products[str(product["original_sku"])] = product
        return kept, products, pending, reasons

    async def publish(self, draft: ListingDraft) -> PublishResult:
        """Send a request for the variants Tiki lacks (once none is under review), look at the requests' states, and
        once every variant is a Tiki product, put them on sale at the draft's price and stock."""
        api = self._api()
        refs, products, pending, reasons = await self._resolve(api, _refs(draft.external_item_id))
        missing = [v for v in draft.variants if v.sku not in products]
        if not missing or pending or reasons:
            return await self._conclude(api, draft, refs, products, pending, reasons, {})
        urls, uploaded = await self._images(api, draft)
        answer = await api.call("POST", "/integration/v2.1/requests", json=self._request_body(draft, missing, urls))
        track_id = answer.get("track_id") if isinstance(answer, dict) else None
        if not track_id:
            raise Retryable("Tiki accepted the product request but gave no track id.", code="track_id")
        sent = [("t", str(track_id))]
        try:
            # One look at once: a request Tiki decides quickly (the sandbox's review_seconds=0) need not wait for
            # the next check.
            sent, new_products, pending, reasons = await self._resolve(api, sent)
            products.update(new_products)
            return await self._conclude(api, draft, refs + sent, products, pending, reasons, uploaded)
        except ChannelError as exc:
            # The request is on Tiki now, whatever failed after it went out (a throttled look, a 5xx while putting
            # its products on sale): the error names it, so the engine keeps it and the next publish looks at this
            # request instead of sending the same SKUs again, which Tiki refuses ("already exists").
            exc.external_item_id = _join(refs + sent) or None
            raise

    async def _conclude(
        self,
        api: TikiClient,
        draft: ListingDraft,
        refs: list[tuple[str, str]],
        products: Mapping[str, Mapping[str, Any]],
        pending: Sequence[str],
        reasons: Sequence[str],
        uploaded: Mapping[str, str],
    ) -> PublishResult:
        """The publish's answer from the requests' states: rejected, still in review, or on sale."""
        if reasons and not products:
            # Every request was rejected: final on Tiki's side, and the seller has to change something first.
            raise Rejected(f"Tiki rejected the product: {' '.join(reasons)}", code="request_rejected")
        ids = {v.sku: str(products[v.sku]["product_id"]) for v in draft.variants if v.sku in products}
        if pending:
            return PublishResult(
                external_item_id=_join(refs),
                external_sku_ids=ids,
                state=PublishState.in_review,
                uploaded_images=uploaded,
                message=review_message(pending[0]),
            )
        on_tiki = [v for v in draft.variants if v.sku in ids]
        entries = [self._sku_entry(int(ids[v.sku]), price=v.price_vnd, stock=v.stock, active=1) for v in on_tiki]
        for start in range(0, len(entries), SKUS_BATCH):
            batch = on_tiki[start : start + SKUS_BATCH]
            result = await self._update_skus(entries[start : start + SKUS_BATCH], [v.sku for v in batch])
            if result.failures:
                raise result.failures[0].error
        # A request for variants added later that Tiki rejected: the others are on sale; the refused ones are sent
        # again in a new request after the next change (a rejected request is final), and the message says why.
        refused = [v.sku for v in draft.variants if v.sku not in ids]
        message = f"Tiki rejected {', '.join(refused)}: {' '.join(reasons)}" if refused else None
        return PublishResult(
            external_item_id=_join(refs), external_sku_ids=ids, uploaded_images=uploaded, message=message
        )

    def _sku_entry(
        self, product_id: int, *, price: int | None = None, stock: int | None = None, active: int | None = None
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"product_id": product_id}
        if price is not None:
            entry["price"] = price
        if active is not None:
            entry["active"] = active
        if stock is not None:
            warehouse = self.settings.warehouse_id
            entry["seller_warehouse"] = str(warehouse)
            entry["warehouse_quantities"] = [{"warehouse_id": warehouse, "qty_available": stock}]
        return entry

    async def _update_skus(self, entries: list[dict[str, Any]], skus: Sequence[str]) -> BatchResult:
        """One entry: ``PUT /integration/v2/products/updateSku``; more: ``PUT /integration/v2.1/products/updateSkus``,
        which answers a state per entry (``approved`` or ``rejected`` with a reason) and applies the others."""
        api = self._api()
        if len(entries) == 1:
            await api.call("PUT", "/integration/v2/products/updateSku", json=entries[0])
            return BatchResult()
        answer = await api.call("PUT", "/integration/v2.1/products/updateSkus", json={"data": entries})
        sku_of = {str(entry["product_id"]): sku for entry, sku in zip(entries, skus, strict=True)}
        failures: list[EntryFailure] = []
        for result in (answer or {}).get("data") or []:
            if not isinstance(result, dict) or result.get("state", APPROVED) == APPROVED:
                continue
            sku = sku_of.get(str(result.get("product_id")))
            if sku is not None:
                message = str(result.get("reason") or "Tiki refused this SKU.")
                error = ChannelNotFound(message) if result.get("code") == "PRODUCT_NOT_FOUND" else Rejected(message)
                failures.append(EntryFailure(sku, error))
        return BatchResult(failures)

    async def set_stock(self, updates: Sequence[StockUpdate]) -> BatchResult:
        """Absolute quantity in our warehouse, at most ``SKUS_BATCH`` products per call."""
        entries = [self._sku_entry(int(u.external_sku_id), stock=u.quantity) for u in updates]
        return await self._update_skus(entries, [u.sku for u in updates]) if entries else BatchResult()

    async def set_prices(self, updates: Sequence[PriceUpdate]) -> BatchResult:
        entries = [self._sku_entry(int(u.external_sku_id), price=u.price_vnd) for u in updates]
        return await self._update_skus(entries, [u.sku for u in updates]) if entries else BatchResult()

    async def delist(self, external_item_id: str) -> None:
        """Every approved product of the item inactive (``active: 0``); a request still under review has nothing on
        sale, and its products are created inactive. :meth:`publish` activates them again."""
        api = self._api()
        _, products, _, _ = await self._resolve(api, _refs(external_item_id))
        entries = [self._sku_entry(int(p["product_id"]), active=0) for p in products.values()]
        skus = list(products)
        for start in range(0, len(entries), SKUS_BATCH):
            result = await self._update_skus(entries[start : start + SKUS_BATCH], skus[start : start + SKUS_BATCH])
            if result.failures:
                raise result.failures[0].error

    async def read_stock(self, refs: Sequence[tuple[str, str]]) -> Mapping[tuple[str, str], int]:
        """What each Tiki product shows in our warehouse (``GET /integration/v2/products/{id}``), one call per
        product: each variant is a product of its own."""
        api = self._api()
        found: dict[tuple[str, str], int] = {}
        for item, product_id in dict.fromkeys(refs):
            try:
                product = await api.call("GET", f"/integration/v2/products/{product_id}")
            except ChannelNotFound:
                continue
            for row in (product or {}).get("warehouse_quantities") or []:
                if int(row.get("warehouse_id", -1)) == self.settings.warehouse_id:
                    found[(item, product_id)] = int(row.get("qty_available", 0))
        return found

    # -- orders --------------------------------------------------------------------------------------------

    async def list_orders(self, *, since: datetime, until: datetime, cursor: str | None = None) -> OrderPage:
        """``GET /integration/v2/orders`` by update time, a page at a time (the cursor is the page number). Every
        status is listed: an order still waiting for payment is ingested as unpaid."""
        page = int(cursor) if cursor else 1
        answer = await self._api().call(
            "GET",
            "/integration/v2/orders",
            params={
                "page": page,
                "limit": ORDERS_PAGE,
                "updated_from_date": tiki_time_param(since),
                "updated_to_date": tiki_time_param(until),
                "order_by": "updated_at|asc",
            },
        )
        orders = [o for o in (answer or {}).get("data") or [] if isinstance(o, dict)]
        refs = [OrderRef(str(o["code"]), tiki_time(o["updated_at"]) if o.get("updated_at") else None) for o in orders]
        paging = (answer or {}).get("paging") or {}
        last = int(paging.get("last_page") or page)
        return OrderPage(refs, str(page + 1) if page < last and orders else None)

    async def _order(self, api: TikiClient, code: str) -> Mapping[str, Any]:
        answer = await api.call("GET", f"/integration/v2/orders/{code}", params={"include": "items"})
        if not isinstance(answer, dict):
            raise Retryable("Tiki answered an order with an unexpected body.", code="order_body")
        return answer

    async def get_orders(self, external_ids: Sequence[str]) -> Sequence[ChannelOrder]:
        """One ``GET /integration/v2/orders/{code}`` per order (Tiki has no batch detail call)."""
        api = self._api()
        found: list[ChannelOrder] = []
        for code in dict.fromkeys(external_ids):
            try:
                found.append(channel_order(await self._order(api, code)))
            except ChannelNotFound:
                continue
        return found

    async def _confirm(self, code: str, available: bool, reason: str | None = None) -> None:
        body: dict[str, Any] = {"confirmation_status": "available" if available else "unavailable"}
        if reason:
            body["reason"] = clean_line(reason)
        await self._api().call("POST", f"/integration/v2/orders/{code}/dropship/confirm-available", json=body)

    async def ship(self, external_order_id: str, shipment: Shipment) -> None:
        """Dropship: confirm that the goods are available (Tiki's carrier collects them and gives the tracking
        number, so ``shipment`` is not sent). An order already confirmed or further on is left as it is."""
        status = STATUS.get(str((await self._order(self._api(), external_order_id)).get("status")), OrderStatus.paid)
        if status in _SHIPPABLE_DONE:
            return
        if status in (OrderStatus.cancelled, OrderStatus.returned):
            raise Rejected("The order is cancelled on Tiki: there is nothing to ship.", code="order_cancelled")
        await self._confirm(external_order_id, True)

    async def cancel(self, external_order_id: str, reason: str) -> None:
        """Dropship: confirm that the goods are *not* available, which cancels the order (Tiki's seller cancel;
        the dedicated endpoint is UNCONFIRMED). An order already cancelled is left as it is."""
        status = STATUS.get(str((await self._order(self._api(), external_order_id)).get("status")), OrderStatus.paid)
        if status is OrderStatus.cancelled:
            return
        if status not in (OrderStatus.unpaid, OrderStatus.paid):
            raise Rejected("Tiki no longer lets the seller cancel this order.", code="not_cancellable")
        await self._confirm(external_order_id, False, reason)

    # -- the event queue -----------------------------------------------------------------------------------

    async def _app_token(self, *, fresh: bool = False) -> str:
        creds = self._creds()
        key = (self.settings.auth_url, creds.client_id)
        cached = self._cache.tokens.get(key)
        if cached is not None and not fresh and cached[1] > self._clock() + 30:
            return cached[0]
        answer = await self._tokens().client_credentials()
        expires = answer.expires_at.timestamp() if answer.expires_at else self._clock() + 600
        self._cache.tokens[key] = (answer.access_token, expires)
        return answer.access_token

    async def _as_app(self, method: str, path: str, json_body: Any = None) -> Any:
        """A call with the app's own token; an expired one is replaced once (the seller's token is not involved)."""
        for attempt in (1, 2):
            token = await self._app_token(fresh=attempt == 2)
            try:
                return await TikiClient(self._http, base_url=self.settings.api_url, token=token).call(
                    method, path, json=json_body
                )
            except AuthExpired:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _forget_queue(self) -> None:
        creds = self._creds()
        self._cache.queues.pop((self.settings.api_url, creds.client_id, creds.seller_id), None)

    async def _queue(self) -> str:
        """The seller's queue: found by name or created (app token), then subscribed to the order events (seller
        token) where it is not yet; remembered for the process."""
        creds = self._creds()
        key = (self.settings.api_url, creds.client_id, creds.seller_id)
        code = self._cache.queues.get(key)
        if code is not None:
            return code
        name = queue_name(creds.seller_id)
        queues = await self._as_app("GET", "/integration/v1/queues") or []
        found = next((q for q in queues if isinstance(q, dict) and q.get("name") == name), None)
        if found is None:
            found = await self._as_app("POST", "/integration/v1/queues", {"name": name})
        code = str(found["code"])
        api = self._api()
        subscribed = await api.call("GET", f"/integration/v1/queues/{code}/subscriptions") or []
        have = {str(s.get("event_type")) for s in subscribed if isinstance(s, dict) and s.get("active", True)}
        for event_type in ORDER_EVENTS:
            if event_type not in have:
                await api.call("POST", f"/integration/v1/queues/{code}/subscriptions", json={"event_type": event_type})
        self._cache.queues[key] = code
        return code

    def _event(self, raw: Mapping[str, Any]) -> WebhookEvent:
        payload = raw.get("payload") or {}
        kind = EVENT_KINDS.get(str(raw.get("type")), EventKind.other)
        order_ids = [str(payload["order_code"])] if kind is EventKind.order and payload.get("order_code") else []
        if kind is EventKind.order and not order_ids:
            kind = EventKind.other  # an order event naming no order: nothing to fetch
        occurred = None
        if raw.get("created_at"):
            with contextlib.suppress(MalformedEvent):
                occurred = tiki_time(raw["created_at"])
        return WebhookEvent(str(raw["id"]), kind, order_ids, occurred, dict(raw))

    async def pull_events(self, limit: int) -> PulledEvents:
        """``POST /integration/v1/queues/{code}/events/pull`` with the app's token: the oldest events not yet
        acknowledged, in order, with the ``ack_id`` that acknowledges them. Another seller's event (there is none
        in a queue of one seller's subscriptions) is left out and acknowledged with the rest."""
        body = {"max_messages": max(1, min(limit, PULL_MAX))}
        code = await self._queue()
        try:
            answer = await self._as_app("POST", f"/integration/v1/queues/{code}/events/pull", body)
        except ChannelNotFound:
            # The queue this process remembered is gone (deleted on Tiki's side): find or make it again, once.
            self._forget_queue()
            code = await self._queue()
            answer = await self._as_app("POST", f"/integration/v1/queues/{code}/events/pull", body)
        events: list[WebhookEvent] = []
        bodies: dict[str, bytes] = {}
        for raw in (answer or {}).get("events") or []:
            if not isinstance(raw, dict) or not raw.get("id"):
                continue
            if raw.get("sid") is not None and self.seller_id and str(raw["sid"]) != self.seller_id:
                continue
            event = self._event(raw)
            events.append(event)
            bodies[event.external_id] = json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode()
        ack_id = (answer or {}).get("ack_id")
        return PulledEvents(events, str(ack_id) if ack_id else None, bodies)

    async def ack_events(self, ack_token: str) -> None:
        code = await self._queue()
        await self._as_app("POST", f"/integration/v1/queues/{code}/events/ack", {"ack_id": ack_token})

    # -- pushes and tokens ---------------------------------------------------------------------------------

    def parse_webhook(self, *, url: str, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """Tiki signs no push (its events are pulled from the event queue, :meth:`pull_events`), so nothing that
        arrives at a webhook address can be from Tiki: always :class:`InvalidSignature`."""
        raise InvalidSignature("Tiki sends no pushes: its events are pulled from its event queue.", code="no_push")

    async def refresh_credentials(self) -> Mapping[str, Any]:
        """The refresh-token grant at Tiki's token endpoint (Basic client auth). Without a refresh token, or when
        Tiki refuses it, the seller must authorise again (AuthExpired); a 5xx stays retryable."""
        creds = self._creds()
        if not creds.refresh_token:
            raise AuthExpired("The Tiki token cannot be refreshed: connect the shop again.", code="no_refresh_token")
        answer = await self._tokens().refresh(creds.refresh_token)
        fresh = token_credentials(
            client_id=creds.client_id,
            client_secret=creds.client_secret,
            seller_id=creds.seller_id,
            access_token=answer.access_token,
            refresh_token=answer.refresh_token or creds.refresh_token,
            scope=answer.scope or creds.scope,
            expires_at=answer.expires_at,
        )
        self._credentials = TikiCredentials.model_validate(fresh)
        return fresh
