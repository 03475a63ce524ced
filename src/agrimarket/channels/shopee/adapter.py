"""The Shopee adapter: the channel port spoken to Shopee Open Platform v2 for one shop.

Token refreshes are single-use on Shopee (a refresh token works once), so two refreshes of one shop must never
run at once. The sync engine already serialises them per shop under its connection lease (``SyncRun._refresh``),
so this adapter adds no lock of its own; anything else that refreshes must hold that lease too.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import datetime
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
    LostPush,
    LostPushBatch,
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
from agrimarket.channels.errors import (
    AuthExpired,
    ChannelError,
    ChannelNotFound,
    InvalidSignature,
    MalformedEvent,
    Rejected,
    Retryable,
)
from agrimarket.channels.shopee import webhooks
from agrimarket.channels.shopee.auth import Clock
from agrimarket.channels.shopee.client import ShopeeClient, expires_at
from agrimarket.channels.shopee.orders import DETAIL_FIELDS, channel_order
from agrimarket.channels.shopee.schemas import ShopeeCredentials, ShopeeSettings
from agrimarket.kit.concurrency import bounded_gather
from agrimarket.kit.text import clean_line, clean_text
from agrimarket.observability import get_logger

log = get_logger(__name__)

T = TypeVar("T")

BATCH = 50  # update_stock / update_price models per call, order_sn_list per get_order_detail
ORDER_CALLS_AT_ONCE = 4  # get_order_detail calls in flight for one burst of orders: within the shop's burst of 10
PAGE_SIZE = 100
WINDOW_SECONDS = 15 * 24 * 3600  # get_order_list: time_to - time_from at most 15 days
MAX_IMAGES = 9
NO_VARIATION_MODEL = "0"  # Shopee's model_id for an item without tier variations

# Our free-text reasons to Shopee's codes; a farmer cancels mostly because the produce is gone.
CANCEL_REASONS = (
    ("customer", "CUSTOMER_REQUEST"),
    ("buyer", "CUSTOMER_REQUEST"),
    ("khách", "CUSTOMER_REQUEST"),
    ("cod", "COD_NOT_SUPPORTED"),
    ("undeliverable", "UNDELIVERABLE_AREA"),
)


def cancel_reason(reason: str) -> str:
    text = reason.strip()
    if text.upper() in {"OUT_OF_STOCK", "CUSTOMER_REQUEST", "UNDELIVERABLE_AREA", "COD_NOT_SUPPORTED"}:
        return text.upper()
    lowered = text.casefold()
    return next((code for word, code in CANCEL_REASONS if word in lowered), "OUT_OF_STOCK")


def _chunks(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _int_id(value: str, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ChannelNotFound(f"{value!r} is not a Shopee {what} id.", code="id_invalid") from exc


def _seller_stock(info: Any) -> int | None:
    """The seller stock in a ``stock_info_v2`` (summed over locations), or None when it holds none."""
    if not isinstance(info, Mapping):
        return None
    entries = [e for e in info.get("seller_stock") or [] if isinstance(e, Mapping) and e.get("stock") is not None]
    return sum(int(e["stock"]) for e in entries) if entries else None


def encode_cursor(window_from: int, shopee_cursor: str) -> str:
    return f"{window_from}:{shopee_cursor}"


def decode_cursor(cursor: str) -> tuple[int, str]:
    window, _, shopee_cursor = cursor.partition(":")
    try:
        return int(window), shopee_cursor
    except ValueError as exc:
        raise Rejected(f"The order cursor {cursor!r} is not one this adapter made.", code="cursor_invalid") from exc


class ShopeeAdapter:
    def __init__(
        self,
        capabilities: Capabilities,
        connection: ConnectionInfo,
        http: httpx.AsyncClient,
        *,
        clock: Clock = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._capabilities = capabilities
        self._credentials = dict(connection.credentials)
        self.settings = ShopeeSettings.model_validate(connection.settings or {})
        self.callback_url = connection.callback_url
        self._clock = clock
        self._sleep = sleep
        try:
            # Unreadable credentials are a shop to connect again, said on the first call, not a crash here.
            self._creds: ShopeeCredentials | None = ShopeeCredentials.model_validate(self._credentials)
        except ValidationError:
            self._creds = None
        self._client: ShopeeClient | None = None
        if self._creds is not None:
            self._client = ShopeeClient(
                http,
                base_url=self.settings.base_url,
                partner_id=self._creds.partner_id,
                partner_key=self._creds.partner_key,
                shop_id=self._creds.shop_id,
                access_token=self._creds.access_token,
                clock=clock,
            )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def credentials(self) -> Mapping[str, Any]:
        """What this adapter calls with: as connected, or as its last refresh left them."""
        return dict(self._credentials)

    @property
    def client(self) -> ShopeeClient:
        if self._client is None:
            raise AuthExpired(
                "The shop's Shopee credentials are incomplete: connect it again.", code="credentials_invalid"
            )
        return self._client

    # -- listings --------------------------------------------------------------------------------------------

    async def _upload(self, image: ImageRef) -> str:
        if not image.data:
            raise Rejected(f"The image {image.content_hash} has no bytes to upload.", field="images")
        extension = "png" if image.mime_type == "image/png" else "jpg"
        body = await self.client.result(
            "POST",
            "/api/v2/media_space/upload_image",
            files={"image": (f"{image.content_hash[:16]}.{extension}", image.data, image.mime_type)},
            data={"scene": "normal"},
            shop=False,
        )
        image_id = (body.get("image_info") or {}).get("image_id")
        if not image_id:
            failed: dict[str, Any] = next(iter(body.get("image_info_list") or []), {})
            raise Rejected(failed.get("message") or "Shopee kept none of the image.", code=failed.get("error"))
        return str(image_id)

    def _weight_kg(self, variants: Sequence[VariantDraft]) -> float:
        grams = max(
            (v.weight_grams for v in variants if v.weight_grams > 0), default=self.settings.default_weight_grams
        )
        return round(grams / 1000, 3)

    def _category(self, draft: ListingDraft) -> int:
        if not draft.category:
            return self.settings.category_id
        try:
            return int(draft.category)
        except ValueError as exc:
            raise Rejected(
                f"Shopee needs a numeric category id; {draft.category!r} is not one.", field="category"
            ) from exc

    @staticmethod
    def _options(variants: Sequence[VariantDraft]) -> list[str]:
        """One distinct option name per variant (Shopee refuses a tier with two equal options)."""
        names: list[str] = []
        for variant in variants:
            name = clean_line(variant.name) or variant.sku
            names.append(variant.sku if name in names else name)
        return names

    def _model(self, variant: VariantDraft, index: int) -> dict[str, Any]:
        return {
            "tier_index": [index],
            "original_price": variant.price_vnd,
            "model_sku": variant.sku,
            "seller_stock": [{"stock": variant.stock}],
            "weight": self._weight_kg([variant]),
        }

    async def publish(self, draft: ListingDraft) -> PublishResult:
        if not draft.variants:
            raise Rejected("A Shopee item needs at least one variant.", field="variants")
        uploaded = dict(draft.uploaded_images)
        for image in draft.images[:MAX_IMAGES]:
            if image.content_hash not in uploaded:
                uploaded[image.content_hash] = await self._upload(image)
        images = [uploaded[image.content_hash] for image in draft.images[:MAX_IMAGES]]
        used = {image.content_hash: uploaded[image.content_hash] for image in draft.images[:MAX_IMAGES]}
        title = clean_line(draft.title)
        fields: dict[str, Any] = {
            "item_name": title,
            "description": clean_text(draft.description) or title,
            "weight": self._weight_kg(draft.variants),
            "category_id": self._category(draft),
            "image": {"image_id_list": images},
        }
        if draft.external_item_id is None:
            item_id, sku_ids = await self._create(draft.variants, fields)
        else:
            item_id = _int_id(draft.external_item_id, "item")
            if len(draft.variants) == 1:
                fields["item_sku"] = draft.variants[0].sku
            await self.client.result("POST", "/api/v2/product/update_item", json={"item_id": item_id, **fields})
            sku_ids = await self._sync_models(item_id, draft.variants)
            # Publishing again is how a delisted item comes back (unlisting is not deleting on Shopee).
            await self._unlist(item_id, unlist=False)
        return PublishResult(external_item_id=str(item_id), external_sku_ids=sku_ids, uploaded_images=used)

    async def _create(self, variants: Sequence[VariantDraft], fields: dict[str, Any]) -> tuple[int, dict[str, str]]:
        single = len(variants) == 1
        body = {
            **fields,
            "original_price": min(v.price_vnd for v in variants),
            "seller_stock": [{"stock": variants[0].stock if single else sum(v.stock for v in variants)}],
            "logistic_info": [{"logistic_id": i, "enabled": True} for i in self.settings.logistic_ids],
            "brand": {"brand_id": 0, "original_brand_name": self.settings.brand_name},
            "condition": self.settings.condition,
            "item_status": "NORMAL",
            "pre_order": {"is_pre_order": False, "days_to_ship": self.settings.days_to_ship},
        }
        if single:
            body["item_sku"] = variants[0].sku
        created = await self.client.result("POST", "/api/v2/product/add_item", json=body)
        item_id = int(created["item_id"])
        if single:
            return item_id, {variants[0].sku: NO_VARIATION_MODEL}
        # Shopee's guide: let the new item settle before adding its variations.
        await self._sleep(self.settings.variation_delay_seconds)
        return item_id, await self._init_tiers(item_id, variants)

    async def _init_tiers(self, item_id: int, variants: Sequence[VariantDraft]) -> dict[str, str]:
        options = self._options(variants)
        body = {
            "item_id": item_id,
            "standardise_tier_variation": [self._tier(options)],
            "model": [self._model(v, i) for i, v in enumerate(variants)],
        }
        answer = await self.client.result("POST", "/api/v2/product/init_tier_variation", json=body)
        return self._sku_ids(answer.get("model") or [], variants)

    def _tier(self, options: Sequence[str]) -> dict[str, Any]:
        return {
            "variation_id": 0,
            "variation_group_id": 0,
            "variation_name": self.settings.tier_name,
            "variation_option_list": [{"variation_option_id": 0, "variation_option_name": o} for o in options],
        }

    @staticmethod
    def _sku_ids(models: Sequence[Mapping[str, Any]], variants: Sequence[VariantDraft]) -> dict[str, str]:
        by_sku = {str(m.get("model_sku")): str(m["model_id"]) for m in models if m.get("model_sku")}
        missing = [v.sku for v in variants if v.sku not in by_sku]
        if missing:
            raise Retryable(f"Shopee did not say which model holds {', '.join(missing)}; publishing again will.")
        return {v.sku: by_sku[v.sku] for v in variants}

    async def _sync_models(self, item_id: int, variants: Sequence[VariantDraft]) -> dict[str, str]:
        """Keep every model Shopee already has (its id is what stock and price updates name); add the new SKUs."""
        current = await self.client.result("GET", "/api/v2/product/get_model_list", params={"item_id": item_id})
        models = current.get("model") or []
        tiers = current.get("standardise_tier_variation") or current.get("tier_variation") or []
        if not models:
            if len(variants) == 1:
                return {variants[0].sku: NO_VARIATION_MODEL}
            return await self._init_tiers(item_id, variants)
        have = {str(m.get("model_sku")) for m in models}
        new = [v for v in variants if v.sku not in have]
        if new:
            if len(tiers) != 1:
                raise Rejected(
                    "This Shopee item has variations in two tiers; add the new variant on Shopee itself.",
                    field="variants",
                )
            tier = tiers[0]
            options = [
                str(o.get("variation_option_name") or o.get("option") or "")
                for o in tier.get("variation_option_list") or tier.get("option_list") or []
            ]
            start = len(options)
            for name in self._options(new):
                options.append(name if name not in options else f"{name} ({len(options) + 1})")
            await self.client.result(
                "POST",
                "/api/v2/product/update_tier_variation",
                json={"item_id": item_id, "standardise_tier_variation": [self._tier(options)]},
            )
            added = await self.client.result(
                "POST",
                "/api/v2/product/add_model",
                json={"item_id": item_id, "model_list": [self._model(v, start + i) for i, v in enumerate(new)]},
            )
            models = [*models, *(added.get("model") or [])]
        return self._sku_ids(models, variants)

    async def _unlist(self, item_id: int, *, unlist: bool) -> None:
        answer = await self.client.result(
            "POST", "/api/v2/product/unlist_item", json={"item_list": [{"item_id": item_id, "unlist": unlist}]}
        )
        failed = next((f for f in answer.get("failure_list") or [] if int(f.get("item_id", 0)) == item_id), None)
        if failed is not None:
            reason = str(failed.get("failed_reason") or "Shopee refused to change the item's listing.")
            if "not exist" in reason.lower() or "not found" in reason.lower():
                raise ChannelNotFound(reason, code="item_not_found")
            raise Rejected(reason, code="unlist_failed")

    async def delist(self, external_item_id: str) -> None:
        await self._unlist(_int_id(external_item_id, "item"), unlist=True)

    # -- stock and price ---------------------------------------------------------------------------------------

    async def _per_item(
        self,
        updates: Sequence[StockUpdate] | Sequence[PriceUpdate],
        path: str,
        list_key: str,
        entry: Callable[[Any], dict[str, Any]],
    ) -> BatchResult:
        """One call per item and per 50 models (Shopee's ``update_stock``/``update_price`` take one item_id); a
        model in ``failure_list`` (HTTP 200) and an item refused whole become failures of their SKUs."""
        groups: OrderedDict[str, list[Any]] = OrderedDict()
        for update in updates:
            groups.setdefault(update.external_item_id, []).append(update)
        failures: list[EntryFailure] = []
        for external_item_id, group in groups.items():
            for chunk in _chunks(group, BATCH):
                try:
                    item_id = _int_id(external_item_id, "item")
                    answer = await self.client.result(
                        "POST", path, json={"item_id": item_id, list_key: [entry(u) for u in chunk]}
                    )
                except (Rejected, ChannelNotFound) as exc:
                    failures.extend(EntryFailure(u.sku, exc) for u in chunk)
                    continue
                by_model: dict[str, list[str]] = {}
                for update in chunk:
                    by_model.setdefault(str(int(update.external_sku_id or 0)), []).append(update.sku)
                for failed in answer.get("failure_list") or []:
                    reason = str(failed.get("failed_reason") or "Shopee refused this model.")
                    for sku in by_model.get(str(failed.get("model_id", 0)), []):
                        failures.append(EntryFailure(sku, Rejected(reason, code="model_failed")))
        return BatchResult(failures)

    async def set_stock(self, updates: Sequence[StockUpdate]) -> BatchResult:
        return await self._per_item(
            updates,
            "/api/v2/product/update_stock",
            "stock_list",
            lambda u: {"model_id": int(u.external_sku_id or 0), "seller_stock": [{"stock": u.quantity}]},
        )

    async def set_prices(self, updates: Sequence[PriceUpdate]) -> BatchResult:
        return await self._per_item(
            updates,
            "/api/v2/product/update_price",
            "price_list",
            lambda u: {"model_id": int(u.external_sku_id or 0), "original_price": u.price_vnd},
        )

    # -- orders --------------------------------------------------------------------------------------------------

    async def list_orders(self, *, since: datetime, until: datetime, cursor: str | None = None) -> OrderPage:
        """[since, until) cut into windows of at most 15 days (Shopee's limit; its bounds are inclusive, so a
        window ends one second before the next begins). The cursor is ``"<window start>:<Shopee's cursor>"``.
        Empty windows are skipped within one call, so a page is empty only at the very end."""
        start = math.floor(since.timestamp())
        end = math.ceil(until.timestamp())
        window_from, shopee_cursor = decode_cursor(cursor) if cursor else (start, "")
        while window_from < end:
            window_to = min(window_from + WINDOW_SECONDS, end) - 1
            answer = await self.client.result(
                "GET",
                "/api/v2/order/get_order_list",
                params={
                    "time_range_field": "update_time",
                    "time_from": window_from,
                    "time_to": window_to,
                    "page_size": PAGE_SIZE,
                    "cursor": shopee_cursor,
                    "response_optional_fields": "order_status",
                },
            )
            refs = [OrderRef(str(o["order_sn"])) for o in answer.get("order_list") or [] if o.get("order_sn")]
            if answer.get("more") and answer.get("next_cursor"):
                return OrderPage(refs, encode_cursor(window_from, str(answer["next_cursor"])))
            window_from, shopee_cursor = window_to + 1, ""
            if refs:
                return OrderPage(refs, encode_cursor(window_from, "") if window_from < end else None)
        return OrderPage([], None)

    async def get_orders(self, external_ids: Sequence[str]) -> Sequence[ChannelOrder]:
        wanted = list(dict.fromkeys(external_ids))

        async def detail(chunk: Sequence[str]) -> list[ChannelOrder]:
            answer = await self.client.result(
                "GET",
                "/api/v2/order/get_order_detail",
                params={"order_sn_list": ",".join(chunk), "response_optional_fields": DETAIL_FIELDS},
            )
            return [channel_order(order) for order in answer.get("order_list") or []]

        # A burst's 50-order calls at once, within the shop's burst of 10 calls.
        answers = await bounded_gather(
            [functools.partial(detail, chunk) for chunk in _chunks(wanted, BATCH)], ORDER_CALLS_AT_ONCE
        )
        return [order for found in answers for order in found]

    async def ship(self, external_order_id: str, shipment: Shipment) -> None:
        """Arrange shipment as ``get_shipping_parameter`` says the order allows: pickup at the shop's pickup
        address and first slot, or dropoff (with the tracking number given, when Shopee needs one)."""
        params = await self.client.result(
            "GET", "/api/v2/logistics/get_shipping_parameter", params={"order_sn": external_order_id}
        )
        info: Mapping[str, Sequence[str]] = params.get("info_needed") or {}
        method = self.settings.ship_method
        if method == "auto":
            if shipment.tracking_number and "dropoff" in info:
                method = "dropoff"
            elif "pickup" in info:
                method = "pickup"
            elif "dropoff" in info:
                method = "dropoff"
        if method not in info and "non_integrated" in info:
            method = "non_integrated"  # type: ignore[assignment]
        if method not in info:
            raise Rejected(f"Shopee does not offer {method} for this order.", code="ship_method_unavailable")
        needed = set(info[method] or [])
        detail: dict[str, Any] = {}
        if method == "pickup":
            addresses = (params.get("pickup") or {}).get("address_list") or []
            address = next(
                (a for a in addresses if "pickup_address" in (a.get("address_flag") or [])),
                addresses[0] if addresses else None,
            )
            if address is None:
                raise Rejected("The shop has no pickup address on Shopee.", code="pickup_address_missing")
            if "address_id" in needed:
                detail["address_id"] = address["address_id"]
            if "pickup_time_id" in needed:
                slots = address.get("time_slot_list") or []
                if not slots:
                    raise Rejected("Shopee offers no pickup time for this order.", code="pickup_time_missing")
                detail["pickup_time_id"] = slots[0]["pickup_time_id"]
        else:
            if "branch_id" in needed:
                branches = (params.get("dropoff") or {}).get("branch_list") or []
                if not branches:
                    raise Rejected("Shopee lists no dropoff branch for this order.", code="branch_missing")
                detail["branch_id"] = branches[0]["branch_id"]
            if "sender_real_name" in needed:
                if not self.settings.sender_real_name:
                    raise Rejected("Shopee needs the sender's name for a dropoff.", field="sender_real_name")
                detail["sender_real_name"] = self.settings.sender_real_name
            if needed & {"tracking_number", "tracking_no"}:
                if not shipment.tracking_number:
                    raise Rejected("Shopee needs the tracking number for this shipment.", field="tracking_number")
                detail["tracking_number"] = shipment.tracking_number
        await self.client.result(
            "POST", "/api/v2/logistics/ship_order", json={"order_sn": external_order_id, method: detail}
        )

    async def cancel(self, external_order_id: str, reason: str) -> None:
        code = cancel_reason(reason)
        body: dict[str, Any] = {"order_sn": external_order_id, "cancel_reason": code}
        if code == "OUT_OF_STOCK":  # Shopee wants the models that ran out
            orders = await self.get_orders([external_order_id])
            if not orders:
                raise ChannelNotFound(f"Shopee has no order {external_order_id}.", code="order_not_found")
            body["item_list"] = [
                {"item_id": int(line.external_item_id or 0), "model_id": int(line.external_sku_id or 0)}
                for line in orders[0].lines
            ]
        await self.client.result("POST", "/api/v2/order/cancel_order", json=body)

    # -- what Shopee shows -----------------------------------------------------------------------------------------

    async def read_stock(self, refs: Sequence[StockRef]) -> Mapping[StockRef, int]:
        """The seller stock Shopee shows (what ``update_stock`` sets): ``get_model_list`` per item with variations,
        ``get_item_base_info`` (up to 50 items a call) for items without, whose one model is 0."""
        wanted = list(dict.fromkeys(refs))
        found: dict[StockRef, int] = {}
        single = list(dict.fromkeys(item for item, sku in wanted if sku == NO_VARIATION_MODEL))
        for chunk in _chunks(single, BATCH):
            answer = await self.client.result(
                "GET",
                "/api/v2/product/get_item_base_info",
                params={"item_id_list": ",".join(str(_int_id(i, "item")) for i in chunk)},
            )
            for item in answer.get("item_list") or []:
                stock = _seller_stock(item.get("stock_info_v2"))
                if stock is not None:
                    found[(str(item["item_id"]), NO_VARIATION_MODEL)] = stock
        models_of: OrderedDict[str, set[str]] = OrderedDict()
        for item, sku in wanted:
            if sku != NO_VARIATION_MODEL:
                models_of.setdefault(item, set()).add(sku)
        for item, skus in models_of.items():
            try:
                answer = await self.client.result(
                    "GET", "/api/v2/product/get_model_list", params={"item_id": _int_id(item, "item")}
                )
            except ChannelNotFound:
                continue  # the item is gone: its SKUs are left out
            for model in answer.get("model") or []:
                model_id = str(model.get("model_id"))
                stock = _seller_stock(model.get("stock_info_v2"))
                if model_id in skus and stock is not None:
                    found[(item, model_id)] = stock
        return found

    # -- pushes and tokens ---------------------------------------------------------------------------------------

    @property
    def lost_push_key(self) -> str:
        # Never raises (an isinstance check reads it): unreadable credentials fail on the call itself.
        return f"shopee:{self._creds.partner_id}" if self._creds is not None else "shopee"

    async def lost_pushes(self) -> LostPushBatch:
        """``get_lost_push_message``: the app's undelivered pushes of the last 3 days, at most 100 a call, every
        shop's (each names its ``shop_id``). A message that cannot be read is skipped, and confirmed with the rest:
        asking again would give it again."""
        answer = await self.client.result("GET", "/api/v2/push/get_lost_push_message", shop=False)
        events: list[LostPush] = []
        for message in answer.get("push_message_list") or []:
            body = webhooks.lost_push_body(message)
            shop_id = message.get("shop_id")
            try:
                event = webhooks.read(body, None)
            except MalformedEvent as exc:
                log.warning("shopee_lost_push_unreadable", error=exc.message)
                continue
            events.append(LostPush(str(shop_id) if shop_id is not None else None, event, body))
        last = answer.get("last_message_id")
        return LostPushBatch(
            events=events,
            last_message_id=str(last) if last not in (None, "", 0, "0") else None,
            more=bool(answer.get("has_next_page")),
        )

    async def confirm_lost_pushes(self, last_message_id: str) -> None:
        await self.client.result(
            "POST",
            "/api/v2/push/confirm_consumed_lost_push_message",
            json={"last_message_id": _int_id(last_message_id, "message")},
            shop=False,
        )

    def parse_webhook(self, *, url: str, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        if self._creds is None:
            raise InvalidSignature("The shop has no Shopee partner key to verify with.", code="no_key")
        return webhooks.parse(self._creds.partner_key, self._creds.shop_id, url=url, headers=headers, body=body)

    async def refresh_credentials(self) -> Mapping[str, Any]:
        """A new access token *and* a new refresh token (Shopee's are single-use): store both. A refused refresh
        is :class:`AuthExpired`; only a platform fault is worth retrying."""
        client = self.client
        assert self._creds is not None
        try:
            answer = await client.call(
                "POST",
                "/api/v2/auth/access_token/get",
                json={
                    "refresh_token": self._creds.refresh_token,
                    "partner_id": self._creds.partner_id,
                    "shop_id": self._creds.shop_id,
                },
                shop=False,
            )
        except Retryable:
            raise
        except ChannelError as exc:
            raise AuthExpired(f"Shopee refused to refresh the shop's token: {exc.message}", code=exc.code) from exc
        if not answer.get("access_token") or not answer.get("refresh_token"):
            raise AuthExpired("Shopee's refresh gave no new tokens.", code="refresh_empty")
        fresh = self._creds.model_copy(
            update={
                "access_token": str(answer["access_token"]),
                "refresh_token": str(answer["refresh_token"]),
                "access_expires_at": expires_at(self._clock(), answer.get("expire_in")),
            }
        )
        self._creds = fresh
        self._credentials = fresh.model_dump()
        client.access_token = fresh.access_token
        return dict(self._credentials)
