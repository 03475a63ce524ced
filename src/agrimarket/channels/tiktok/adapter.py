"""The TikTok Shop adapter: the channel port spoken to the Partner API (202309 versions) for one shop.

Choices where marketplaces.md says UNCONFIRMED or nothing:

- Republishing uses *Edit Product* (``PUT /product/202309/products/{id}``), which replaces the whole product: the
  current product is read first (``GET``), every SKU TikTok already has is sent back with its id (one we no longer
  list keeps its price and stock, which the edit leaves alone when omitted), new SKUs go without an id. A
  deactivated product is activated again (``POST /product/202309/products/activate``).
- Delisting is *Deactivate Products* (``POST /product/202309/products/deactivate``): off sale, not deleted.
- Creation carries ``idempotency_key = "agrimarket-<our product id>"``, so a create retried after a lost answer
  gives back the same product instead of a second one.
- A product with one variant is sent without sales attributes; with several, one custom attribute
  (``settings.sales_attribute_name``) whose value is the variant's name.
- Stock goes to one warehouse: ``settings.warehouse_id``, else the credentials', else the shop's default sales
  warehouse (``GET /logistics/202309/warehouses``), read once per adapter. ``shop_cipher`` likewise comes from the
  credentials or ``GET /authorization/202309/shops``.
- Shipping: seller-shipped orders (``shipping_type`` SELLER) send ``self_shipment`` with the tracking number and
  ``settings.shipping_provider_id``; TikTok-shipped ones the ``settings.handover_method``. An order already past
  AWAITING_SHIPMENT is left as it is, so a repeated call after a lost answer is harmless.
- Cancelling picks TikTok's reason code for the order's status (unpaid or paid) from our free text: the buyer asked,
  the address cannot be served, the price was wrong, else out of stock.
"""

from __future__ import annotations

import functools
import html
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from agrimarket.channels.base import (
    BatchResult,
    Capabilities,
    ChannelOrder,
    ConnectionInfo,
    EntryFailure,
    ImageRef,
    ListingDraft,
    OrderPage,
    OrderRef,
    PriceUpdate,
    PublishResult,
    Shipment,
    StockRef,
    StockUpdate,
    VariantDraft,
    WebhookEvent,
)
from agrimarket.channels.errors import AuthExpired, ChannelError, ChannelNotFound, InvalidSignature, Rejected, Retryable
from agrimarket.channels.tiktok import webhooks
from agrimarket.channels.tiktok.client import TikTokClient, call_json, error_for
from agrimarket.channels.tiktok.orders import channel_order, package_ids
from agrimarket.channels.tiktok.schemas import TikTokCredentials, TikTokSettings
from agrimarket.channels.tiktok.signing import Clock
from agrimarket.kit.concurrency import bounded_gather
from agrimarket.kit.text import clean_line, clean_text, fold
from agrimarket.models.orders import OrderStatus

T = TypeVar("T")

SKU_BATCH = 100  # SKUs per product in VN, so per inventory or price update (create-product.doc.json)
ORDER_PAGE = 100  # orders/search page_size maximum
ORDER_DETAIL_BATCH = 50  # ids per GET /order/202309/orders
ORDER_CALLS_AT_ONCE = 4  # order detail calls in flight for one burst of orders: within the shop's burst of 10
MAX_IMAGES = 9
ATTRIBUTE_VALUE_MAX = 50
CURRENCY = "VND"
DEACTIVATED = frozenset({"SELLER_DEACTIVATED"})
CANCEL_REASONS_UNPAID = {
    "buyer": "seller_cancel_unpaid_reason_buyer_requested_cancellation",
    "price": "seller_cancel_unpaid_reason_wrong_price",
    "stock": "seller_cancel_unpaid_reason_out_of_stock",
}
CANCEL_REASONS_PAID = {
    "buyer": "seller_cancel_paid_reason_buyer_requested_cancellation",
    "address": "seller_cancel_paid_reason_address_not_deliver",
    "price": "seller_cancel_reason_wrong_price",
    "stock": "seller_cancel_reason_out_of_stock",
}
_REASON_WORDS = (
    ("buyer", ("customer", "buyer", "khach", "nguoi mua")),
    ("address", ("address", "dia chi", "undeliverable", "khong giao")),
    ("price", ("price", "gia")),
)


def cancel_reason(reason: str, *, unpaid: bool) -> str:
    """TikTok's reason code for our free text (seller_cancel_… as listed for each order status)."""
    codes = CANCEL_REASONS_UNPAID if unpaid else CANCEL_REASONS_PAID
    text = reason.strip()
    if text in codes.values():
        return text
    folded = fold(text)
    for kind, words in _REASON_WORDS:
        if kind in codes and any(word in folded for word in words):
            return codes[kind]
    return codes["stock"]


def _chunks(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _id(value: str, what: str) -> str:
    """A TikTok id as it goes into a path: digits only (anything else cannot be one of theirs)."""
    text = str(value).strip()
    if not text.isdigit():
        raise ChannelNotFound(f"{value!r} is not a TikTok Shop {what} id.", code="id_invalid")
    return text


def _description_html(text: str, fallback: str) -> str:
    """TikTok's description is HTML: our plain text, escaped, one paragraph per line."""
    paragraphs = [line.strip() for line in clean_text(text).split("\n") if line.strip()] or [fallback]
    return "".join(f"<p>{html.escape(line)}</p>" for line in paragraphs)


def token_credentials(
    data: Mapping[str, Any],
    *,
    app_key: str,
    app_secret: str,
    shop_id: str,
    shop_cipher: str | None = None,
    warehouse_id: str | None = None,
) -> dict[str, Any]:
    """Credentials from a token/get or token/refresh ``data``; its ``*_expire_in`` are Unix times, not durations."""
    if not data.get("access_token") or not data.get("refresh_token"):
        raise Rejected("TikTok Shop's token answer lacks the access or refresh token.", code="token_invalid")

    def at(value: Any) -> int | None:
        try:
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    return TikTokCredentials(
        app_key=app_key,
        app_secret=app_secret,
        access_token=str(data["access_token"]),
        refresh_token=str(data["refresh_token"]),
        shop_id=shop_id,
        shop_cipher=shop_cipher,
        warehouse_id=warehouse_id,
        access_expires_at=at(data.get("access_token_expire_in")),
        refresh_expires_at=at(data.get("refresh_token_expire_in")),
        open_id=str(data["open_id"]) if data.get("open_id") else None,
        seller_name=clean_line(str(data["seller_name"])) if data.get("seller_name") else None,
    ).model_dump()


async def refresh_token(
    http: httpx.AsyncClient, auth_url: str, *, app_key: str, app_secret: str, refresh: str
) -> dict[str, Any]:
    """``GET /api/v2/token/refresh`` on the auth host (not signed: the app secret is in the query)."""
    request = http.build_request(
        "GET",
        auth_url.rstrip("/") + "/api/v2/token/refresh",
        params={
            "app_key": app_key,
            "app_secret": app_secret,
            "refresh_token": refresh,
            "grant_type": "refresh_token",
        },
    )
    return await call_json(http, request, auth=None, what="/api/v2/token/refresh")


async def shop_ciphers(client: TikTokClient) -> list[dict[str, Any]]:
    """The shops this token opens (``GET /authorization/202309/shops``): id, name, region, cipher…"""
    data = await client.call("GET", "/authorization/202309/shops", shop=False)
    return [shop for shop in data.get("shops") or [] if isinstance(shop, dict)]


class TikTokAdapter:
    def __init__(
        self, capabilities: Capabilities, connection: ConnectionInfo, http: httpx.AsyncClient, *, clock: Clock
    ) -> None:
        self._capabilities = capabilities
        self._http = http
        self._clock = clock
        self.settings = TikTokSettings.model_validate(connection.settings or {})
        try:
            # Unreadable credentials are a shop to connect again, said on the first call, not a crash here.
            self._creds: TikTokCredentials | None = TikTokCredentials.model_validate(connection.credentials)
        except ValidationError:
            self._creds = None
        self.shop_id = connection.external_shop_id or (self._creds.shop_id if self._creds else None)
        self._cipher = self._creds.shop_cipher if self._creds else None
        self._warehouse = self.settings.warehouse_id or (self._creds.warehouse_id if self._creds else None)

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def credentials(self) -> Mapping[str, Any]:
        """What this adapter calls with: as connected, or as its last refresh left them."""
        return self._creds.model_dump() if self._creds else {}

    def _credentials(self) -> TikTokCredentials:
        if self._creds is None:
            raise AuthExpired(
                "The shop's TikTok Shop credentials are incomplete: connect it again.", code="credentials"
            )
        return self._creds

    def _client(self, cipher: str | None) -> TikTokClient:
        creds = self._credentials()
        return TikTokClient(
            self._http,
            base_url=self.settings.api_url,
            app_key=creds.app_key,
            app_secret=creds.app_secret,
            access_token=creds.access_token,
            shop_cipher=cipher,
            clock=self._clock,
        )

    async def _api(self) -> TikTokClient:
        """A client for shop APIs, with the shop's cipher (read once from the platform when not stored)."""
        if self._cipher is None:
            creds = self._credentials()
            shops = await shop_ciphers(self._client(None))
            found = next((s for s in shops if str(s.get("id")) == creds.shop_id and s.get("cipher")), None)
            if found is None:
                raise AuthExpired("TikTok Shop no longer lists this shop as authorised.", code="shop_not_authorised")
            self._cipher = str(found["cipher"])
        return self._client(self._cipher)

    async def _warehouse_id(self, api: TikTokClient) -> str:
        if self._warehouse is None:
            data = await api.call("GET", "/logistics/202309/warehouses")
            sales = [
                w
                for w in data.get("warehouses") or []
                if isinstance(w, dict) and w.get("id") and w.get("type", "SALES_WAREHOUSE") == "SALES_WAREHOUSE"
            ]
            chosen = next((w for w in sales if w.get("is_default")), sales[0] if sales else None)
            if chosen is None:
                raise Rejected("The shop has no sales warehouse on TikTok Shop.", code="warehouse_missing")
            self._warehouse = str(chosen["id"])
        return self._warehouse

    # -- listings ------------------------------------------------------------------------------------------

    async def _upload(self, api: TikTokClient, image: ImageRef) -> str:
        if not image.data:
            raise Rejected(f"The image {image.content_hash} has no bytes to upload.", field="images")
        extension = "png" if image.mime_type == "image/png" else "jpg"
        data = await api.call(
            "POST",
            "/product/202309/images/upload",
            files={"data": (f"{image.content_hash[:16]}.{extension}", image.data, image.mime_type)},
            data={"use_case": "MAIN_IMAGE"},
            shop=False,
        )
        if not data.get("uri"):
            raise Retryable("TikTok Shop took the image but gave no uri.", code="image_uri")
        return str(data["uri"])

    def _category(self, draft: ListingDraft) -> str:
        category = (draft.category or self.settings.category_id).strip()
        if not category.isdigit():
            raise Rejected(f"TikTok Shop needs a numeric leaf category id; {category!r} is not one.", field="category")
        return category

    def _weight(self, variants: Sequence[VariantDraft]) -> dict[str, str]:
        grams = max(
            (v.weight_grams for v in variants if v.weight_grams > 0), default=self.settings.default_weight_grams
        )
        return {"value": f"{grams / 1000:.3f}".rstrip("0").rstrip("."), "unit": "KILOGRAM"}

    @staticmethod
    def _value_names(variants: Sequence[VariantDraft], taken: Sequence[str] = ()) -> list[str]:
        """One distinct attribute value per variant (TikTok refuses two SKUs with the same value)."""
        names: list[str] = []
        for variant in variants:
            name = (clean_line(variant.name) or variant.sku)[:ATTRIBUTE_VALUE_MAX]
            if name in names or name in taken:
                name = variant.sku[:ATTRIBUTE_VALUE_MAX]
            names.append(name)
        return names

    def _sku(self, variant: VariantDraft, warehouse: str, value: str | None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "seller_sku": variant.sku,
            "price": {"amount": str(variant.price_vnd), "currency": CURRENCY},
            "inventory": [{"warehouse_id": warehouse, "quantity": variant.stock}],
        }
        if value is not None:
            entry["sales_attributes"] = [{"name": self.settings.sales_attribute_name, "value_name": value}]
        return entry

    async def publish(self, draft: ListingDraft) -> PublishResult:
        if not draft.variants:
            raise Rejected("A TikTok Shop product needs at least one SKU.", field="variants")
        api = await self._api()
        uploaded = dict(draft.uploaded_images)
        shown = list(draft.images)[:MAX_IMAGES]
        for image in shown:
            if image.content_hash not in uploaded:
                uploaded[image.content_hash] = await self._upload(api, image)
        used = {image.content_hash: uploaded[image.content_hash] for image in shown}
        warehouse = await self._warehouse_id(api)
        title = clean_line(draft.title)
        body: dict[str, Any] = {
            "title": title,
            "description": _description_html(draft.description, title),
            "category_id": self._category(draft),
            "main_images": [{"uri": uri} for uri in dict.fromkeys(used.values())],
            "package_weight": self._weight(draft.variants),
        }
        if self.settings.brand_id:
            body["brand_id"] = self.settings.brand_id
        if draft.external_item_id is None:
            product_id, sku_ids = await self._create(api, draft, body, warehouse)
        else:
            product_id = _id(draft.external_item_id, "product")
            sku_ids = await self._edit(api, product_id, draft, body, warehouse)
        missing = [v.sku for v in draft.variants if v.sku not in sku_ids]
        if missing:
            raise Retryable(f"TikTok Shop did not say which SKU id holds {', '.join(missing)}; publishing again will.")
        return PublishResult(
            external_item_id=product_id,
            external_sku_ids={v.sku: sku_ids[v.sku] for v in draft.variants},
            uploaded_images=used,
        )

    async def _create(
        self, api: TikTokClient, draft: ListingDraft, body: dict[str, Any], warehouse: str
    ) -> tuple[str, dict[str, str]]:
        multi = len(draft.variants) > 1
        values = self._value_names(draft.variants) if multi else [None] * len(draft.variants)
        body = {
            **body,
            "skus": [self._sku(v, warehouse, value) for v, value in zip(draft.variants, values, strict=True)],
            "idempotency_key": f"agrimarket-{draft.product_id}",
        }
        data = await api.call("POST", "/product/202309/products", json=body)
        if not data.get("product_id"):
            raise Retryable("TikTok Shop created the product but gave no product id.", code="product_id")
        return str(data["product_id"]), self._sku_ids(data.get("skus"))

    @staticmethod
    def _sku_ids(skus: Any) -> dict[str, str]:
        return {
            str(s["seller_sku"]): str(s["id"])
            for s in skus or []
            if isinstance(s, Mapping) and s.get("seller_sku") and s.get("id")
        }

    async def _product(self, api: TikTokClient, product_id: str) -> dict[str, Any]:
        return await api.call("GET", f"/product/202309/products/{product_id}")

    async def _edit(
        self, api: TikTokClient, product_id: str, draft: ListingDraft, body: dict[str, Any], warehouse: str
    ) -> dict[str, str]:
        current = await self._product(api, product_id)
        have = [s for s in current.get("skus") or [] if isinstance(s, Mapping) and s.get("id")]
        ours = {v.sku for v in draft.variants}
        kept = [s for s in have if str(s.get("seller_sku") or "") not in ours]
        multi = len(draft.variants) + len(kept) > 1
        kept_values = [
            str(attribute.get("value_name") or "")
            for s in kept
            for attribute in (s.get("sales_attributes") or [])[:1]
            if isinstance(attribute, Mapping)
        ]
        values = self._value_names(draft.variants, kept_values) if multi else [None] * len(draft.variants)
        ids = self._sku_ids(have)
        skus: list[dict[str, Any]] = []
        for variant, value in zip(draft.variants, values, strict=True):
            entry = self._sku(variant, warehouse, value)
            if variant.sku in ids:
                entry = {"id": ids[variant.sku], **entry}
            skus.append(entry)
        for index, sku in enumerate(kept):  # not ours any more: kept as they are (price and stock untouched)
            entry = {"id": str(sku["id"]), "seller_sku": str(sku.get("seller_sku") or "")}
            attributes = sku.get("sales_attributes") or []
            if attributes:
                entry["sales_attributes"] = attributes
            elif multi:
                entry["sales_attributes"] = [
                    {"name": self.settings.sales_attribute_name, "value_name": f"{entry['seller_sku'] or index}"}
                ]
            skus.append(entry)
        data = await api.call("PUT", f"/product/202309/products/{product_id}", json={**body, "skus": skus})
        sku_ids = self._sku_ids(data.get("skus"))
        if not ours <= set(sku_ids):
            sku_ids = self._sku_ids((await self._product(api, product_id)).get("skus"))
        if str(current.get("status") or "") in DEACTIVATED:
            await self._activate(api, product_id)
        return sku_ids

    async def _activate(self, api: TikTokClient, product_id: str) -> None:
        data = await api.call("POST", "/product/202309/products/activate", json={"product_ids": [product_id]})
        self._raise_product_errors(data, "activate")

    @staticmethod
    def _raise_product_errors(data: Mapping[str, Any], what: str) -> None:
        """Activate and deactivate answer 0 with the products they refused in ``errors``."""
        for error in data.get("errors") or []:
            if not isinstance(error, Mapping):
                continue
            try:
                code: int | None = int(error.get("code"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                code = None
            raise error_for(code, str(error.get("message") or f"TikTok Shop refused to {what} the product."))

    async def delist(self, external_item_id: str) -> None:
        """Deactivate: off sale, not deleted; :meth:`publish` activates it again."""
        api = await self._api()
        product_id = _id(external_item_id, "product")
        data = await api.call("POST", "/product/202309/products/deactivate", json={"product_ids": [product_id]})
        self._raise_product_errors(data, "deactivate")

    # -- stock and price -------------------------------------------------------------------------------------

    async def _per_product(
        self,
        updates: Sequence[StockUpdate] | Sequence[PriceUpdate],
        path: str,
        entry: Callable[[Any], dict[str, Any]],
    ) -> BatchResult:
        """One call per product and per 100 SKUs (the update APIs take one product, every SKU of it); a product
        refused whole becomes a failure of each of its SKUs."""
        if not updates:
            return BatchResult()
        api = await self._api()
        groups: OrderedDict[str, list[Any]] = OrderedDict()
        for update in updates:
            groups.setdefault(update.external_item_id, []).append(update)
        failures: list[EntryFailure] = []
        for external_item_id, group in groups.items():
            for chunk in _chunks(group, SKU_BATCH):
                try:
                    product_id = _id(external_item_id, "product")
                    await api.call("POST", path.format(product_id=product_id), json={"skus": [entry(u) for u in chunk]})
                except (Rejected, ChannelNotFound) as exc:
                    failures.extend(EntryFailure(u.sku, exc) for u in chunk)
        return BatchResult(failures)

    async def set_stock(self, updates: Sequence[StockUpdate]) -> BatchResult:
        warehouse = await self._warehouse_id(await self._api()) if updates else ""
        return await self._per_product(
            updates,
            "/product/202309/products/{product_id}/inventory/update",
            lambda u: {"id": u.external_sku_id, "inventory": [{"warehouse_id": warehouse, "quantity": u.quantity}]},
        )

    async def set_prices(self, updates: Sequence[PriceUpdate]) -> BatchResult:
        return await self._per_product(
            updates,
            "/product/202309/products/{product_id}/prices/update",
            lambda u: {"id": u.external_sku_id, "price": {"amount": str(u.price_vnd), "currency": CURRENCY}},
        )

    async def read_stock(self, refs: Sequence[StockRef]) -> Mapping[StockRef, int]:
        """The quantity each SKU shows (summed over warehouses), from ``Get Product``: one call per product."""
        api = await self._api()
        wanted: OrderedDict[str, set[str]] = OrderedDict()
        for item, sku in refs:
            wanted.setdefault(item, set()).add(sku)
        found: dict[StockRef, int] = {}
        for item, skus in wanted.items():
            try:
                product = await self._product(api, _id(item, "product"))
            except ChannelNotFound:
                continue  # the product is gone: its SKUs are left out
            for sku in product.get("skus") or []:
                sku_id = str(sku.get("id") or "")
                inventory = [i for i in sku.get("inventory") or [] if isinstance(i, Mapping)]
                if sku_id in skus and inventory:
                    found[(item, sku_id)] = sum(int(i.get("quantity") or 0) for i in inventory)
        return found

    # -- orders ----------------------------------------------------------------------------------------------

    async def list_orders(self, *, since: datetime, until: datetime, cursor: str | None = None) -> OrderPage:
        """``orders/search`` by update time in [since, until), oldest first, 100 a page; the cursor is TikTok's
        ``page_token``. TikTok states no maximum range (UNCONFIRMED), so none is cut."""
        api = await self._api()
        params: dict[str, str | int] = {"page_size": ORDER_PAGE, "sort_field": "update_time", "sort_order": "ASC"}
        if cursor:
            params["page_token"] = cursor
        body = {"update_time_ge": math.floor(since.timestamp()), "update_time_lt": math.ceil(until.timestamp())}
        data = await api.call("POST", "/order/202309/orders/search", params=params, json=body)
        refs = [
            OrderRef(str(o["id"]), datetime.fromtimestamp(int(o["update_time"]), UTC) if o.get("update_time") else None)
            for o in data.get("orders") or []
            if isinstance(o, Mapping) and o.get("id")
        ]
        token = data.get("next_page_token")
        return OrderPage(refs, str(token) if token else None)

    async def get_orders(self, external_ids: Sequence[str]) -> Sequence[ChannelOrder]:
        """``GET /order/202309/orders?ids=`` 50 at a time; an id TikTok does not know is left out of its answer
        (as the sandbox does; whether TikTok refuses the whole call instead is UNCONFIRMED)."""
        api = await self._api()
        wanted = [i for i in dict.fromkeys(str(i).strip() for i in external_ids) if i and "," not in i]

        async def detail(chunk: Sequence[str]) -> list[ChannelOrder]:
            data = await api.call("GET", "/order/202309/orders", params={"ids": ",".join(chunk)})
            return [channel_order(order) for order in data.get("orders") or [] if isinstance(order, Mapping)]

        # A burst's 50-order calls at once, within the shop's burst of 10 calls.
        answers = await bounded_gather(
            [functools.partial(detail, chunk) for chunk in _chunks(wanted, ORDER_DETAIL_BATCH)], ORDER_CALLS_AT_ONCE
        )
        return [order for found in answers for order in found]

    async def _order(self, external_order_id: str) -> ChannelOrder:
        orders = await self.get_orders([external_order_id])
        if not orders:
            raise ChannelNotFound(f"TikTok Shop has no order {external_order_id}.", code="order_not_found")
        return orders[0]

    async def ship(self, external_order_id: str, shipment: Shipment) -> None:
        order = await self._order(external_order_id)
        if order.status is OrderStatus.cancelled:
            raise Rejected("The order is cancelled on TikTok Shop: there is nothing to ship.", code="order_cancelled")
        if order.platform_status not in {"AWAITING_SHIPMENT", "PARTIALLY_SHIPPING"}:
            return  # already arranged (or not yet paid): nothing to do, or nothing we may do
        packages = package_ids(order.raw)
        if not packages:
            raise Retryable("TikTok Shop has not made the order's package yet.", code="package_missing")
        body: dict[str, Any]
        if str(order.raw.get("shipping_type") or "") == "SELLER":
            if not shipment.tracking_number or not self.settings.shipping_provider_id:
                raise Rejected(
                    "A seller-shipped TikTok order needs the tracking number and the carrier's TikTok id.",
                    field="tracking_number",
                )
            body = {
                "self_shipment": {
                    "tracking_number": shipment.tracking_number,
                    "shipping_provider_id": self.settings.shipping_provider_id,
                }
            }
        else:
            body = {"handover_method": self.settings.handover_method}
        api = await self._api()
        for package in packages:
            await api.call("POST", f"/fulfillment/202309/packages/{_id(package, 'package')}/ship", json=body)

    async def cancel(self, external_order_id: str, reason: str) -> None:
        order = await self._order(external_order_id)
        if order.status is OrderStatus.cancelled:
            return
        code = cancel_reason(reason, unpaid=order.status is OrderStatus.unpaid)
        api = await self._api()
        await api.call(
            "POST", "/return_refund/202309/cancellations", json={"order_id": order.external_id, "cancel_reason": code}
        )

    # -- pushes and tokens -------------------------------------------------------------------------------------

    def parse_webhook(self, *, url: str, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        if self._creds is None:
            raise InvalidSignature("The shop has no TikTok Shop app secret to verify with.", code="no_key")
        return webhooks.parse(
            headers, body, app_key=self._creds.app_key, app_secret=self._creds.app_secret, shop_id=self.shop_id
        )

    async def refresh_credentials(self) -> Mapping[str, Any]:
        """``/api/v2/token/refresh`` on the auth host; store the answer whole (TikTok may rotate the refresh
        token). A refused refresh is :class:`AuthExpired`; only a platform fault is worth retrying."""
        creds = self._credentials()
        try:
            data = await refresh_token(
                self._http,
                self.settings.auth_url,
                app_key=creds.app_key,
                app_secret=creds.app_secret,
                refresh=creds.refresh_token,
            )
            fresh = token_credentials(
                data,
                app_key=creds.app_key,
                app_secret=creds.app_secret,
                shop_id=creds.shop_id,
                shop_cipher=creds.shop_cipher or self._cipher,
                warehouse_id=creds.warehouse_id,
            )
        except Retryable:
            raise
        except ChannelError as exc:
            raise AuthExpired(f"TikTok Shop refused to refresh the shop's token: {exc.message}", code=exc.code) from exc
        self._creds = TikTokCredentials.model_validate(fresh)
        return fresh
