"""The Lazada adapter: the channel port spoken to the Lazada Open Platform for one seller."""

from __future__ import annotations

import asyncio
import functools
import html
import json
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

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
from agrimarket.channels.errors import (
    AuthExpired,
    ChannelError,
    ChannelNotFound,
    InvalidSignature,
    MalformedEvent,
    Rejected,
    Retryable,
)
from agrimarket.channels.lazada import webhooks
from agrimarket.channels.lazada.client import LazadaClient, error_for
from agrimarket.channels.lazada.orders import channel_order, lazada_time
from agrimarket.channels.lazada.schemas import LazadaCredentials, LazadaSettings
from agrimarket.channels.lazada.signing import Clock
from agrimarket.kit.concurrency import bounded_gather
from agrimarket.kit.text import clean_line, clean_text, fold

ORDERS_PAGE = 100  # GetOrders' documented maximum ``limit``
HEADER_CONCURRENCY = 4  # /order/get calls at once: under the 5-call burst the plugin declares
ORDER_ITEMS_BATCH = 50  # ids per /orders/items/get: not published (UNCONFIRMED); 50 keeps the query short
# From this many orders at once, their headers are read from GetOrders pages (100 a call) by update time instead
# of one /order/get each: a burst of sales costs a few calls, not one per order, under Lazada's 10 calls/s.
LISTED_HEADERS_FROM = 8
# Headers read from GetOrders pages are kept per shop in this process for the next bursts (the shop's next drain's
# too: a drain hands its worker slot on every half second under load): under a flash sale a second holds hundreds of
# orders, and each burst's window would read the same pages again.
HEADERS_KEPT = 5_000
SHOPS_KEPT = 64  # shops whose headers are kept; the longest unused forgotten first
_LISTED: OrderedDict[uuid.UUID, OrderedDict[str, dict[str, Any]]] = OrderedDict()


def _listed_of(connection_id: uuid.UUID) -> OrderedDict[str, dict[str, Any]]:
    """The shop's kept headers (order id → header, as a page listed it), shared by its adapters in this process."""
    listed = _LISTED.get(connection_id)
    if listed is None:
        listed = _LISTED[connection_id] = OrderedDict()
    _LISTED.move_to_end(connection_id)
    while len(_LISTED) > SHOPS_KEPT:
        _LISTED.popitem(last=False)
    return listed


PACKABLE = frozenset({"pending", "repacked", "topack"})  # pack.json: only pending/repacked items can be packed
CANCELLABLE = frozenset({"unpaid", "pending", "topack", "repacked", "packed"})


def token_credentials(
    answer: Mapping[str, Any], *, app_key: str, app_secret: str, now: float, seller_id: str | None = None
) -> dict[str, Any]:
    """Credentials from a /auth/token/create or /auth/token/refresh answer (its fields sit beside ``code``)."""
    body = answer.get("data") if isinstance(answer.get("data"), dict) else answer
    assert isinstance(body, Mapping)
    country = str(body.get("country") or "vn")
    if seller_id is None:
        users = [u for u in body.get("country_user_info") or [] if isinstance(u, Mapping)]
        user = next((u for u in users if str(u.get("country")) == country), users[0] if users else None)
        seller_id = str(user["seller_id"]) if user and user.get("seller_id") else None
    if not body.get("access_token") or not body.get("refresh_token") or not seller_id:
        raise Rejected(
            "Lazada's token answer lacks the access token, refresh token or seller id.", code="token_invalid"
        )

    def at(seconds: Any) -> datetime | None:
        return datetime.fromtimestamp(now + float(seconds), UTC) if seconds is not None else None

    return LazadaCredentials(
        app_key=app_key,
        app_secret=app_secret,
        access_token=str(body["access_token"]),
        refresh_token=str(body["refresh_token"]),
        seller_id=seller_id,
        country=country,
        access_expires_at=at(body.get("expires_in")),
        refresh_expires_at=at(body.get("refresh_expires_in")),
    ).model_dump(mode="json")


def _iso(moment: datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat(timespec="seconds")


def _payload(product: Mapping[str, Any]) -> str:
    return json.dumps({"Request": {"Product": product}}, ensure_ascii=False)


def _description_html(text: str) -> str:
    """Lazada's description is HTML: our plain text, escaped, one paragraph per line."""
    paragraphs = [line.strip() for line in clean_text(text).split("\n") if line.strip()]
    return "".join(f"<p>{html.escape(line)}</p>" for line in paragraphs)


class LazadaAdapter:
    def __init__(
        self, capabilities: Capabilities, connection: ConnectionInfo, http: httpx.AsyncClient, *, clock: Clock
    ) -> None:
        self._capabilities = capabilities
        self._http = http
        self._clock = clock
        self.settings = LazadaSettings.model_validate(connection.settings or {})
        try:
            # Unreadable credentials are a shop to connect again, said on the first call, not a crash here.
            self._credentials: LazadaCredentials | None = LazadaCredentials.model_validate(connection.credentials)
        except ValidationError:
            self._credentials = None
        self.seller_id = connection.external_shop_id or (self._credentials.seller_id if self._credentials else None)
        self._listed = _listed_of(connection.connection_id)

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def credentials(self) -> Mapping[str, Any]:
        """What this adapter calls with: as connected, or as its last refresh left them."""
        return self._credentials.model_dump(mode="json") if self._credentials else {}

    def _creds(self) -> LazadaCredentials:
        if self._credentials is None:
            raise AuthExpired("The shop's Lazada credentials are incomplete: connect it again.", code="credentials")
        return self._credentials

    def _api(self) -> LazadaClient:
        creds = self._creds()
        return LazadaClient(
            self._http,
            base_url=self.settings.api_url,
            app_key=creds.app_key,
            app_secret=creds.app_secret,
            access_token=creds.access_token,
            clock=self._clock,
        )

    # -- listings ------------------------------------------------------------------------------------------

    async def _upload(self, api: LazadaClient, image: ImageRef) -> str:
        extension = "png" if image.mime_type == "image/png" else "jpg"
        answer = await api.call(
            "/image/upload", files={"image": (f"{image.content_hash}.{extension}", image.data, image.mime_type)}
        )
        try:
            return str(answer["data"]["image"]["url"])
        except (KeyError, TypeError) as exc:
            raise Retryable("Lazada accepted an image but gave no URL for it.", code="image_url") from exc

    def _sku(self, variant: VariantDraft, *, multiple: bool) -> dict[str, Any]:
        settings = self.settings
        weight = round(variant.weight_grams / 1000, 2) if variant.weight_grams > 0 else settings.package_weight_kg
        sku: dict[str, Any] = {
            "SellerSku": variant.sku,
            "price": variant.price_vnd,
            "quantity": variant.stock,
            "package_length": settings.package_length_cm,
            "package_width": settings.package_width_cm,
            "package_height": settings.package_height_cm,
            "package_weight": max(weight, 0.01),
            "Status": "active",
        }
        if multiple:
            sku["saleProp"] = {settings.variation_name: clean_line(variant.name) or variant.sku}
        return sku

    def _attributes(self, draft: ListingDraft) -> dict[str, Any]:
        attributes: dict[str, Any] = {clean_line(k): clean_line(v) for k, v in draft.attributes.items()}
        attributes["name"] = clean_line(draft.title)
        attributes["description"] = _description_html(draft.description)
        if self.settings.brand_id:
            attributes["brand_id"] = self.settings.brand_id
        else:
            attributes.setdefault("brand", self.settings.brand)
        return attributes

    async def _item_skus(self, api: LazadaClient, item_id: str) -> dict[str, str]:
        answer = await api.call("/product/item/get", {"item_id": item_id}, method="GET")
        skus = (answer.get("data") or {}).get("skus") or []
        return {str(s["SellerSku"]): str(s["SkuId"]) for s in skus if s.get("SellerSku") and s.get("SkuId")}

    async def publish(self, draft: ListingDraft) -> PublishResult:
        """Images Lazada lacks go up first (each once: ``draft.uploaded_images`` holds the URLs it already has), then
        ``/product/create``, or ``/product/update`` for an existing item: it changes the SKUs it names by SkuId,
        adds the new ones and sets every SKU active again (how a delisted item comes back on sale)."""
        api = self._api()
        category = draft.category or (str(self.settings.primary_category) if self.settings.primary_category else None)
        if category is None and draft.external_item_id is None:
            raise Rejected("Choose a Lazada category for this product.", code="category_missing", field="category")
        uploaded: dict[str, str] = {}
        urls: list[str] = []
        for image in list(draft.images)[: self._capabilities.limits.images_max]:
            url = draft.uploaded_images.get(image.content_hash) or uploaded.get(image.content_hash)
            if url is None:
                url = uploaded[image.content_hash] = await self._upload(api, image)
            if url not in urls:
                urls.append(url)
        multiple = len(draft.variants) > 1
        skus = [self._sku(variant, multiple=multiple) for variant in draft.variants]
        product: dict[str, Any] = {"Attributes": self._attributes(draft), "Skus": {"Sku": skus}}
        if urls:
            product["Images"] = {"Image": urls}
        if category is not None:
            product["PrimaryCategory"] = category
        if draft.external_item_id is None:
            answer = await api.call("/product/create", {"payload": _payload(product)})
            data = answer.get("data") or {}
            if not data.get("item_id"):
                raise Retryable("Lazada created the product but gave no item id.", code="item_id")
            item_id = str(data["item_id"])
            sku_ids = {str(s["seller_sku"]): str(s["sku_id"]) for s in data.get("sku_list") or []}
        else:
            item_id = draft.external_item_id
            known = {v.sku: v.external_sku_id for v in draft.variants if v.external_sku_id}
            if len(known) < len(draft.variants):
                known = {**await self._item_skus(api, item_id), **known}
            for sku in skus:
                if sku["SellerSku"] in known:
                    sku["SkuId"] = known[sku["SellerSku"]]
            product["ItemId"] = item_id
            await api.call("/product/update", {"payload": _payload(product)})
            sku_ids = await self._item_skus(api, item_id)
        missing = [v.sku for v in draft.variants if v.sku not in sku_ids]
        if missing:
            raise Retryable(f"Lazada did not return the SKU ids of {', '.join(missing)}.", code="sku_ids")
        return PublishResult(
            external_item_id=item_id,
            external_sku_ids={v.sku: sku_ids[v.sku] for v in draft.variants},
            uploaded_images=uploaded,
        )

    async def _skus_call(self, api_path: str, updates: Sequence[StockUpdate | PriceUpdate]) -> BatchResult:
        if not updates:
            return BatchResult()
        skus: list[dict[str, Any]] = []
        for update in updates:
            entry: dict[str, Any] = {
                "ItemId": update.external_item_id,
                "SkuId": update.external_sku_id,
                "SellerSku": update.sku,
            }
            if isinstance(update, StockUpdate):
                entry["SellableQuantity"] = update.quantity
            else:
                entry["Price"] = update.price_vnd
            skus.append(entry)
        answer = await self._api().call(api_path, {"payload": _payload({"Skus": {"Sku": skus}})}, check=False)
        failures = self._entry_failures(answer.get("detail"), updates)
        error = error_for(answer)
        if error is not None and not (failures and isinstance(error, Rejected)):
            raise error
        return BatchResult(failures)

    @staticmethod
    def _entry_failures(detail: Any, updates: Sequence[StockUpdate | PriceUpdate]) -> list[EntryFailure]:
        """Lazada lists the SKUs it refused in ``detail`` ([{seller_sku, sku_id?, code?, message}]) and applies the
        rest."""
        if not isinstance(detail, list):
            return []
        by_sku_id = {update.external_sku_id: update.sku for update in updates}
        ours = {update.sku for update in updates}
        failures: list[EntryFailure] = []
        for entry in detail:
            if not isinstance(entry, Mapping):
                continue
            sku = str(entry.get("seller_sku") or entry.get("SellerSku") or "")
            if sku not in ours:
                sku = by_sku_id.get(str(entry.get("sku_id") or entry.get("SkuId") or ""), "")
            if not sku:
                continue
            message = str(entry.get("message") or "Lazada refused this SKU.")
            failures.append(EntryFailure(sku, Rejected(message, code=str(entry.get("code") or "") or None)))
        return failures

    async def set_stock(self, updates: Sequence[StockUpdate]) -> BatchResult:
        """Absolute sellable quantity (``/product/stock/sellable/update``), at most 50 SKUs per call."""
        return await self._skus_call("/product/stock/sellable/update", updates)

    async def set_prices(self, updates: Sequence[PriceUpdate]) -> BatchResult:
        return await self._skus_call("/product/price_quantity/update", updates)

    async def delist(self, external_item_id: str) -> None:
        """``/product/deactivate`` takes the whole item off sale; :meth:`publish` sets it active again. Its body goes
        in ``apiRequestBody`` (DeactivateProduct's parameter, where the other product calls take ``payload``)."""
        body = json.dumps({"Request": {"Product": {"ItemId": external_item_id}}})
        await self._api().call("/product/deactivate", {"apiRequestBody": body})

    async def read_stock(self, refs: Sequence[StockRef]) -> Mapping[StockRef, int]:
        """What each SKU shows as sellable, from ``/product/item/get`` (one item per call): ``sellableQuantity``
        where Lazada gives it, else ``quantity``."""
        api = self._api()
        wanted: dict[str, set[str]] = {}
        for item, sku in refs:
            wanted.setdefault(item, set()).add(sku)
        found: dict[StockRef, int] = {}
        for item, skus in wanted.items():
            try:
                answer = await api.call("/product/item/get", {"item_id": item}, method="GET")
            except ChannelNotFound:
                continue  # the item is gone: its SKUs are left out
            for sku in (answer.get("data") or {}).get("skus") or []:
                sku_id = str(sku.get("SkuId") or "")
                quantity = sku.get("sellableQuantity", sku.get("quantity"))
                if sku_id in skus and quantity is not None:
                    found[(item, sku_id)] = int(quantity)
        return found

    # -- orders --------------------------------------------------------------------------------------------

    async def list_orders(self, *, since: datetime, until: datetime, cursor: str | None = None) -> OrderPage:
        """GetOrders by update time, oldest first; the cursor is the offset. Lazada's times are whole seconds, so
        the window is widened to them (``since`` down, ``until`` up) and ``update_before`` is inclusive: an order
        updated at the edge may come twice, which is harmless (orders are re-fetched), where a narrower window
        would miss it."""
        offset = int(cursor) if cursor else 0
        start = since.replace(microsecond=0)
        end = until if until.microsecond == 0 else until.replace(microsecond=0) + timedelta(seconds=1)
        answer = await self._api().call(
            "/orders/get",
            {
                "update_after": _iso(start),
                "update_before": _iso(end),
                "sort_by": "updated_at",
                "sort_direction": "ASC",
                "offset": offset,
                "limit": ORDERS_PAGE,
            },
            method="GET",
        )
        data = answer.get("data") or {}
        orders = data.get("orders") or []
        refs = [
            OrderRef(str(o["order_id"]), lazada_time(o["updated_at"]) if o.get("updated_at") else None) for o in orders
        ]
        after = offset + len(orders)
        total = data.get("countTotal")
        more = len(orders) == ORDERS_PAGE and (total is None or after < int(total))
        return OrderPage(refs, str(after) if more else None)

    async def get_orders(self, external_ids: Sequence[str]) -> Sequence[ChannelOrder]:
        """Items of up to 50 orders per ``/orders/items/get`` (``HEADER_CONCURRENCY`` calls at once), then their
        headers. Lazada has no call for many headers by id: for a few orders, ``/order/get`` each,
        ``HEADER_CONCURRENCY`` at a time (within the burst Lazada allows a shop); from ``LISTED_HEADERS_FROM``
        orders, GetOrders pages by update time over the window of every asked order's latest item update (an order
        is updated when its items are; one window for the whole burst, so no page is read twice), then
        ``/order/get`` for any the pages did not show (updated again while paging, or listed past the page
        budget)."""
        api = self._api()
        ids = list(dict.fromkeys(external_ids))

        async def items_of(batch: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
            answer = await api.call(
                "/orders/items/get",
                {"order_ids": json.dumps([int(i) if i.isdigit() else i for i in batch])},
                method="GET",
            )
            return {str(entry["order_id"]): entry.get("order_items") or [] for entry in answer.get("data") or []}

        batches = [ids[start : start + ORDER_ITEMS_BATCH] for start in range(0, len(ids), ORDER_ITEMS_BATCH)]
        items: dict[str, list[dict[str, Any]]] = {}
        for answer in await bounded_gather([functools.partial(items_of, b) for b in batches], HEADER_CONCURRENCY):
            items.update(answer)
        known = [order_id for order_id in ids if order_id in items]
        headers: dict[str, dict[str, Any]] = {}
        if len(known) >= LISTED_HEADERS_FROM:
            headers = await self._listed_headers(api, {order_id: items[order_id] for order_id in known})
        headers.update(await self._headers(api, [order_id for order_id in known if order_id not in headers]))
        return [channel_order(headers[order_id], items[order_id]) for order_id in known if order_id in headers]

    def _remember(self, headers: Sequence[Mapping[str, Any]]) -> None:
        for header in headers:
            if header.get("order_id") is None:
                continue
            key = str(header["order_id"])
            self._listed[key] = dict(header)
            self._listed.move_to_end(key)
        while len(self._listed) > HEADERS_KEPT:
            self._listed.popitem(last=False)

    def _kept_header(
        self, order_id: str, latest: datetime, items: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any] | None:
        """A header an earlier page listed, if it is at least as new as the order's items (to the second, as Lazada
        gives times). Its statuses are taken from the items just read, not from the page: a change within that same
        second would not show in the times."""
        kept = self._listed.get(order_id)
        if kept is None:
            return None
        try:
            if lazada_time(kept.get("updated_at")) < latest:
                return None
        except MalformedEvent:
            return None
        return {**kept, "statuses": list(dict.fromkeys(str(item.get("status", "")) for item in items))}

    async def _headers(self, api: LazadaClient, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each order's header from ``/order/get``, ``HEADER_CONCURRENCY`` at a time; an order Lazada does not know
        is left out."""
        gate = asyncio.Semaphore(HEADER_CONCURRENCY)

        async def header_of(order_id: str) -> dict[str, Any] | None:
            async with gate:
                try:
                    answer = await api.call("/order/get", {"order_id": order_id}, method="GET")
                except ChannelNotFound:
                    return None
            data: dict[str, Any] = answer.get("data") or {}
            return data

        answers = await asyncio.gather(*(header_of(order_id) for order_id in order_ids), return_exceptions=True)
        for failed in answers:
            if isinstance(failed, BaseException):
                raise failed  # the first in order; the others were let finish
        return {
            order_id: header
            for order_id, header in zip(order_ids, answers, strict=True)
            if header is not None and not isinstance(header, BaseException)
        }

    async def _listed_headers(
        self, api: LazadaClient, items: Mapping[str, Sequence[Mapping[str, Any]]]
    ) -> dict[str, dict[str, Any]]:
        """The headers of ``items``' orders as GetOrders lists them: the orders updated between the oldest and the
        newest of their latest item updates (to whole seconds, as Lazada's times are). The first page tells
        how many orders that window holds; the other pages are read (``HEADER_CONCURRENCY`` at a time) only when
        they are fewer calls than the headers still missing would be one by one."""
        latest_of: dict[str, datetime] = {}
        for order_id, order_items in items.items():
            try:
                times = [lazada_time(item["updated_at"]) for item in order_items if item.get("updated_at")]
            except MalformedEvent:
                times = []
            if not times:
                return {}  # no update time to place the order by: ask for each header
            latest_of[order_id] = max(times)
        headers: dict[str, dict[str, Any]] = {}
        for order_id, latest_time in latest_of.items():
            kept = self._kept_header(order_id, latest_time, items[order_id])
            if kept is not None:
                headers[order_id] = kept
        if len(items) - len(headers) < LISTED_HEADERS_FROM:
            return headers  # the few left are asked for one by one
        latest = [time for order_id, time in latest_of.items() if order_id not in headers]
        # Both bounds are inclusive (GetOrders: "updated after or on the specified date"); the times shown are cut
        # to the second, so the window ends a second after the newest shown (as in list_orders).
        window: dict[str, str | int] = {
            "update_after": _iso(min(latest).replace(microsecond=0)),
            "update_before": _iso(max(latest).replace(microsecond=0) + timedelta(seconds=1)),
            "sort_by": "updated_at",
            "sort_direction": "ASC",
            "limit": ORDERS_PAGE,
        }

        async def page(offset: int) -> int | None:
            answer = await api.call("/orders/get", {**window, "offset": offset}, method="GET")
            data = answer.get("data") or {}
            listed = [header for header in data.get("orders") or [] if isinstance(header, dict)]
            self._remember(listed)
            for header in listed:
                if str(header.get("order_id")) in items:
                    headers[str(header["order_id"])] = header
            total = data.get("countTotal")
            return int(total) if total is not None else None

        total = await page(0)
        pages = -(-(total or 0) // ORDERS_PAGE) - 1
        if 0 < pages < len(items) - len(headers):
            gate = asyncio.Semaphore(HEADER_CONCURRENCY)

            async def gated(offset: int) -> None:
                async with gate:
                    await page(offset)

            await asyncio.gather(*(gated(n * ORDERS_PAGE) for n in range(1, pages + 1)))
        return headers

    async def _order_items(self, api: LazadaClient, order_id: str) -> list[dict[str, Any]]:
        answer = await api.call("/order/items/get", {"order_id": order_id}, method="GET")
        return [item for item in answer.get("data") or [] if isinstance(item, dict)]

    async def ship(self, external_order_id: str, shipment: Shipment) -> None:
        """Pack the order's pending items (dropship, Lazada's own carrier: it issues the tracking number, so
        ``shipment`` is not sent), then mark their packages ready to ship. Items already packed are only marked
        ready, so a repeated call after a lost answer finishes the job instead of failing."""
        api = self._api()
        items = await self._order_items(api, external_order_id)
        if items and all(str(i.get("status")) in {"canceled", "returned", "failed", "lost"} for i in items):
            raise Rejected("The order is cancelled on Lazada: there is nothing to ship.", code="order_cancelled")
        to_pack = [int(i["order_item_id"]) for i in items if str(i.get("status")) in PACKABLE]
        packages = {str(i["package_id"]) for i in items if str(i.get("status")) == "packed" and i.get("package_id")}
        if to_pack:
            request = {
                "pack_order_list": [{"order_id": int(external_order_id), "order_item_list": to_pack}],
                "delivery_type": "dropship",
                "shipping_allocate_type": "TFS",
            }
            answer = await api.call("/order/fulfill/pack", {"packReq": json.dumps(request)})
            for order in self._result_data(answer, "pack").get("pack_order_list") or []:
                for entry in order.get("order_item_list") or []:
                    if entry.get("item_err_code") not in (None, "", "0"):
                        raise Rejected(str(entry.get("msg") or entry.get("item_err_code")), code="pack")
                    if entry.get("package_id"):
                        packages.add(str(entry["package_id"]))
        if not packages:
            return
        request_rts = {"packages": [{"package_id": package} for package in sorted(packages)]}
        answer = await api.call("/order/package/rts", {"readyToShipReq": json.dumps(request_rts)})
        for entry in self._result_data(answer, "rts").get("packages") or []:
            if entry.get("item_err_code") not in (None, "", "0"):
                raise Rejected(str(entry.get("msg") or entry.get("item_err_code")), code="rts")

    @staticmethod
    def _result_data(answer: Mapping[str, Any], step: str) -> Mapping[str, Any]:
        """The fulfilment APIs wrap their answer in ``result {success, error_code, error_msg, data}``."""
        result = answer.get("result") or {}
        if result.get("success") is False:
            message = str(result.get("error_msg") or f"Lazada refused the {step} step.")
            raise Rejected(message, code=str(result.get("error_code") or step))
        data = result.get("data") or {}
        return data if isinstance(data, Mapping) else {}

    async def cancel(self, external_order_id: str, reason: str) -> None:
        """Validate first (it answers the reasons this order may be cancelled for), pick the one closest to
        ``reason`` (else the first offered), then cancel every item still cancellable."""
        api = self._api()
        items = await self._order_items(api, external_order_id)
        ids = [int(i["order_item_id"]) for i in items if str(i.get("status")) in CANCELLABLE]
        if not ids:
            if items and all(str(i.get("status")) == "canceled" for i in items):
                return
            raise Rejected("Lazada no longer lets the seller cancel this order.", code="not_cancellable")
        params = {"order_id": external_order_id, "order_item_id_list": json.dumps(ids)}
        answer = await api.call("/order/reverse/cancel/validate", params, method="GET")
        options = [o for o in (answer.get("data") or {}).get("reason_options") or [] if o.get("reason_id")]
        if not options:
            raise Rejected("Lazada offers no reason to cancel this order for.", code="no_reason")
        wanted = fold(reason)
        chosen = next(
            (
                o
                for o in options
                if wanted
                and (fold(str(o.get("reason_name", ""))) in wanted or wanted in fold(str(o.get("reason_name", ""))))
            ),
            options[0],
        )
        await api.call("/order/reverse/cancel/create", {**params, "reason_id": str(chosen["reason_id"])})

    # -- pushes and tokens ---------------------------------------------------------------------------------

    def parse_webhook(self, *, url: str, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        creds = self._credentials
        if creds is None:
            raise InvalidSignature("The shop's credentials are incomplete.", code="credentials")
        return webhooks.parse(
            headers, body, app_key=creds.app_key, app_secret=creds.app_secret, seller_id=self.seller_id
        )

    async def refresh_credentials(self) -> Mapping[str, Any]:
        """``/auth/token/refresh`` on the auth host. A refused refresh means the seller must authorise again
        (AuthExpired); a transport failure or 5xx stays retryable."""
        creds = self._creds()
        client = LazadaClient(
            self._http,
            base_url=self.settings.auth_url.rstrip("/") + "/rest",
            app_key=creds.app_key,
            app_secret=creds.app_secret,
            clock=self._clock,
        )
        try:
            answer = await client.call("/auth/token/refresh", {"refresh_token": creds.refresh_token})
            fresh = token_credentials(
                answer, app_key=creds.app_key, app_secret=creds.app_secret, now=self._clock(), seller_id=creds.seller_id
            )
        except Retryable:
            raise
        except ChannelError as exc:
            raise AuthExpired(f"Lazada refused to refresh the token: {exc.message}", code=exc.code) from exc
        self._credentials = LazadaCredentials.model_validate(fresh)
        return fresh
