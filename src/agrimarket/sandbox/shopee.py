"""A Shopee Open Platform v2 sandbox: an ASGI app over :class:`~agrimarket.sandbox.core.Marketplace` that speaks
Shopee's paths, common parameters, signatures, limits and envelopes (marketplaces.md §1), so the Shopee adapter,
written against the real platform, runs against it unchanged.

Mount it anywhere (``app.mount("/sandbox/shopee", sandbox.app)``) and give the adapter that address as its
``base_url``: signatures are checked over the path relative to the mount (``scope["root_path"]``), as the adapter
signs the path relative to its base URL.

Choices where Shopee documents nothing (UNCONFIRMED in marketplaces.md):

- HTTP status: business errors answer 200 with ``error`` set (as Shopee does in practice); gateway refusals of the
  common parameters (``error_param`` for a missing/stale timestamp, ``error_sign``, ``error_auth``,
  ``invalid_access_token``) answer 403; ``error_rate_limit`` answers **429** with ``Retry-After`` (whole seconds);
  an injected server error answers 500 ``error_server``, an injected timeout 504 ``error_server`` after
  ``SandboxConfig.timeout_seconds``.
- Rate limit: ``SandboxConfig``'s (default 10 calls/s per shop, burst 10); calls without a shop share one bucket.
- ``get_order_detail`` leaves unknown order numbers out of the answer; ``init_tier_variation`` does not enforce the
  guide's 5 s wait after ``add_item``; a reused or unknown refresh token is ``error_shop_refresh_token``; a bad
  authorisation code is ``error_param``. The 5× price ratio between models is not enforced.
- Operation names for :meth:`Marketplace.inject` are the path after ``/api/v2/`` with dots: ``product.update_stock``.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import math
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from agrimarket.sandbox.core import (
    Clock,
    Fault,
    Item,
    Marketplace,
    Order,
    OrderLine,
    PageLinks,
    Refused,
    SandboxConfig,
    Shop,
    Sku,
    image_response,
    shop_page,
)

ACCESS_TTL = 4 * 3600
REFRESH_TTL = 30 * 24 * 3600
CODE_TTL = 10 * 60
TIMESTAMP_TOLERANCE = 5 * 60
MAX_WINDOW = 15 * 24 * 3600
LOST_PUSH_KEEP = 3 * 24 * 3600
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_STOCK = 999_999
ITEM_NAME_MAX = 120
DEFAULT_PARTNER_ID = 2001887
DEFAULT_PARTNER_KEY = "sandbox_partner_key"

CANCELLABLE = {"UNPAID", "READY_TO_SHIP", "RETRY_SHIP"}
SHIPPABLE = {"READY_TO_SHIP", "RETRY_SHIP"}
CANCEL_REASONS = {"OUT_OF_STOCK", "CUSTOMER_REQUEST", "COD_NOT_SUPPORTED"}  # UNDELIVERABLE_AREA: TW/MY only
ORDER_STATUSES = {
    "UNPAID",
    "READY_TO_SHIP",
    "PROCESSED",
    "RETRY_SHIP",
    "SHIPPED",
    "TO_CONFIRM_RECEIVE",
    "IN_CANCEL",
    "CANCELLED",
    "TO_RETURN",
    "COMPLETED",
}


class ShopeeError(Exception):
    def __init__(self, error: str, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.status = status


def _param(message: str) -> ShopeeError:
    return ShopeeError("error_param", message)


def _html(value: str) -> str:
    return html.escape(value, quote=True)


def _base(request: Request) -> str:
    """The sandbox's own address, mount prefix included (Starlette's ``base_url`` leaves a Mount's path out)."""
    base = str(request.base_url)
    root = str(request.scope.get("root_path", "")).rstrip("/")
    if root and not urlsplit(base).path.rstrip("/").endswith(root):
        base = base.rstrip("/") + root + "/"
    return base


def _sign(key: str, base: str) -> str:
    return hmac.new(key.encode(), base.encode(), hashlib.sha256).hexdigest()


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise _param(f"Wrong parameters, detail: {name} should be an integer.")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise _param(f"Wrong parameters, detail: {name} should be an integer.") from exc


def _required(body: Mapping[str, Any], name: str) -> Any:
    value = body.get(name)
    if value is None or value == "" or value == []:
        raise _param(f"Wrong parameters, detail: {name} is required.")
    return value


def _price(value: Any, name: str = "original_price") -> int:
    """VN prices are whole đồng: Shopee rounds or refuses decimals outside SG/MY/BR/MX/PL/ES/AR (§1.7)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _param(f"Wrong parameters, detail: {name} should be a number.")
    if value <= 0:
        raise _param(f"Wrong parameters, detail: {name} should be greater than 0.")
    if value != int(value):
        raise _param(f"Wrong parameters, detail: {name} must be an integer in this region.")
    return int(value)


def _stock(entries: Any) -> int:
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise _param("Wrong parameters, detail: seller_stock is required.")
    stock = entries[0].get("stock")
    if isinstance(stock, bool) or not isinstance(stock, int) or not 0 <= stock <= MAX_STOCK:
        raise _param(f"Wrong parameters, detail: stock should be between 0 and {MAX_STOCK}.")
    return stock


def _with_query(url: str, extra: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    return urlunsplit(
        parts._replace(query=urlencode([*parse_qsl(parts.query, keep_blank_values=True), *extra.items()]))
    )


@dataclass
class ItemExtra:
    """What Shopee keeps on an item beyond the shared core: its tiers and shipping facts."""

    tier_names: list[str] = field(default_factory=list)
    options: list[list[str]] = field(default_factory=list)  # per tier
    tier_index: dict[int, list[int]] = field(default_factory=dict)  # model_id → tier_index
    weight: float = 0.0
    logistic_info: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LostPush:
    message_id: int
    shop_id: int | None
    code: int
    timestamp: int
    data: dict[str, Any]


_EXTRAS = TypeAdapter(dict[int, ItemExtra])

Handler = Callable[[Request, dict[str, Any], Shop | None], Awaitable[dict[str, Any]]]


class ShopeeSandbox:
    """A Shopee stand-in. ``app`` is the ASGI app; ``market`` holds its shops, items, orders, calls and pushes.

    ``partner_id``/``partner_key`` are the one app it knows (the adapter's credentials carry them). Shops get
    credentials from :meth:`add_shop` (or through the ``auth_partner`` page and ``token/get``, as a seller
    would). Pushes go to the shop's callback URL (:meth:`set_callback`) or the app's (``set_app_push_config``),
    sent with ``http`` (default: a real client; tests pass one on an ``ASGITransport``)."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Clock = time.time,
        partner_id: int = DEFAULT_PARTNER_ID,
        partner_key: str = DEFAULT_PARTNER_KEY,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.market = Marketplace("shopee", config, clock=clock, http=http)
        self.partner_id = partner_id
        self.partner_key = partner_key
        self.app_callback_url: str | None = None
        self.extras: dict[int, ItemExtra] = {}
        self.codes: dict[str, tuple[str, float]] = {}  # one-time authorisation codes → (shop id, expiry)
        self.lost_pushes: list[LostPush] = []
        # What get_shipping_parameter asks for; tests change it to exercise other paths.
        self.info_needed: dict[str, list[str]] = {
            "pickup": ["address_id", "pickup_time_id"],
            "dropoff": ["tracking_number"],
        }
        self._message_ids = 0
        self.app = Starlette(routes=self._routes())
        self.app.state.sandbox = self

    # -- the façade ------------------------------------------------------------------------------------------

    def add_shop(self, name: str) -> dict[str, Any]:
        """A new authorised shop; its credentials as the Shopee adapter stores them."""
        shop = self.market.add_shop(str(self.market.new_id()), name, access_ttl=ACCESS_TTL, refresh_ttl=REFRESH_TTL)
        return self.credentials(shop.shop_id)

    def credentials(self, shop_id: str | int) -> dict[str, Any]:
        shop = self.market.shops[str(shop_id)]
        return {
            "partner_id": self.partner_id,
            "partner_key": self.partner_key,
            "shop_id": int(shop.shop_id),
            "access_token": shop.access_token,
            "refresh_token": shop.refresh_token,
            "access_expires_at": math.floor(shop.access_expires_at),
        }

    def snapshot(self) -> bytes:
        """Shops, items, orders, images and Shopee's own item facts (tiers), to :meth:`restore` after a restart."""
        return json.dumps(
            {
                "market": json.loads(self.market.snapshot()),
                "extras": _EXTRAS.dump_python(self.extras, mode="json"),
                "app_callback_url": self.app_callback_url,
            }
        ).encode()

    def restore(self, data: bytes) -> None:
        saved = json.loads(data)
        self.market.restore(json.dumps(saved["market"]).encode())
        self.extras = _EXTRAS.validate_python(saved.get("extras") or {})
        self.app_callback_url = saved.get("app_callback_url")

    def set_callback(self, shop_id: str | int, url: str | None) -> None:
        """Where this shop's pushes go (else the app's callback URL)."""
        self.market.shops[str(shop_id)].callback_url = url

    def shop(self, shop_id: str | int) -> Shop:
        return self.market.shops[str(shop_id)]

    def item(self, shop_id: str | int, item_id: str | int) -> Item:
        return self.shop(shop_id).items[int(item_id)]

    def _order_sn(self) -> str:
        day = datetime.fromtimestamp(self.market.now(), UTC).strftime("%y%m%d")
        alphabet = string.ascii_uppercase + string.digits
        return day + "".join(secrets.choice(alphabet) for _ in range(8))

    async def place_order(
        self,
        shop_id: str | int,
        lines: Sequence[tuple[str, int]],
        *,
        paid: bool = True,
        buyer: str = "nguoimua_vn",
        shipping_fee_vnd: int = 0,
    ) -> str:
        """A buyer orders ``(seller SKU, quantity)`` lines: Shopee's stock goes down (never below zero), the order
        is READY_TO_SHIP (or UNPAID) and a signed code-3 push goes to the callback URL. Returns the order_sn."""
        shop = self.shop(shop_id)
        if not lines or any(quantity < 1 for _, quantity in lines):
            raise ValueError("an order has at least one line, each of at least one unit")
        order_lines: list[OrderLine] = []
        for seller_sku, quantity in lines:
            item, sku = self.market.take_stock(shop, seller_sku, quantity)
            if item is None or sku is None:
                raise KeyError(f"shop {shop.shop_id} sells no SKU {seller_sku!r}")
            order_lines.append(
                OrderLine(
                    line_id=self.market.new_id(),
                    item_id=item.item_id,
                    sku_id=sku.sku_id,
                    seller_sku=seller_sku,
                    name=item.name if not sku.name else f"{item.name} · {sku.name}",
                    quantity=quantity,
                    unit_price_vnd=sku.price_vnd,
                )
            )
        now = self.market.now()
        order = Order(
            order_id=self._order_sn(),
            status="READY_TO_SHIP" if paid else "UNPAID",
            created_at=now,
            updated_at=now,
            lines=order_lines,
            buyer_name=buyer,
            shipping_fee_vnd=shipping_fee_vnd,
        )
        order.history.append((now, order.status))
        shop.orders[order.order_id] = order
        self._push_status(shop, order)
        return order.order_id

    async def set_order_status(self, shop_id: str | int, order_sn: str, status: str) -> None:
        """Move an order on (the buyer paid, the carrier delivered…) and push code 3."""
        if status not in ORDER_STATUSES:
            raise ValueError(f"{status!r} is not a Shopee order status")
        shop = self.shop(shop_id)
        order = shop.orders[order_sn]
        self.market.set_status(order, status)
        self._push_status(shop, order)

    def push_body(self, shop: Shop | None, code: int, data: Mapping[str, Any]) -> bytes:
        payload: dict[str, Any] = {"data": dict(data), "code": code, "timestamp": int(self.market.now())}
        if shop is not None:
            payload["shop_id"] = int(shop.shop_id)
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    def send_push(self, shop: Shop | None, code: int, data: Mapping[str, Any]) -> None:
        """Sign ``callback_url|body`` with the partner key and send it; a lost push waits for get_lost_push_message."""
        url = (shop.callback_url if shop is not None else None) or self.app_callback_url
        body = self.push_body(shop, code, data)
        signature = hmac.new(self.partner_key.encode(), (url or "").encode() + b"|" + body, hashlib.sha256)
        headers = {"Authorization": signature.hexdigest(), "Content-Type": "application/json"}
        sent = self.market.push(url, headers, body, event=f"code_{code}")
        if sent is not None and sent.lost:
            self._message_ids += 1
            payload = json.loads(body)
            self.lost_pushes.append(
                LostPush(self._message_ids, payload.get("shop_id"), code, payload["timestamp"], payload["data"])
            )

    def _push_status(self, shop: Shop, order: Order) -> None:
        self.send_push(
            shop,
            3,
            {
                "items": [],
                "ordersn": order.order_id,
                "status": order.status,
                "completed_scenario": "",
                "update_time": int(order.updated_at),
            },
        )

    # -- the front door ----------------------------------------------------------------------------------------

    def _check_common(self, request: Request, *, shop_level: bool) -> Shop | None:
        query = request.query_params
        root = request.scope.get("root_path", "")
        path = request.scope["path"]
        api_path = path[len(root) :] if root and path.startswith(root) else path
        if not query.get("partner_id"):
            raise ShopeeError("error_param", "There is no partner_id in query.", 403)
        if not query.get("timestamp"):
            raise ShopeeError("error_param", "no timestamp", 403)
        if not query.get("sign"):
            raise ShopeeError("error_param", "There is no sign in query.", 403)
        try:
            partner_id, timestamp = int(query["partner_id"]), int(query["timestamp"])
        except ValueError as exc:
            raise ShopeeError("error_param", "Invalid timestamp", 403) from exc
        if partner_id != self.partner_id:
            raise ShopeeError("error_auth", "partner_id is invalid", 403)
        if abs(self.market.now() - timestamp) > TIMESTAMP_TOLERANCE:
            raise ShopeeError("error_param", "Timestamp is expired.", 403)
        base = f"{partner_id}{api_path}{timestamp}"
        shop: Shop | None = None
        if shop_level:
            token, shop_id = query.get("access_token"), query.get("shop_id")
            if not token or not shop_id:
                raise ShopeeError("error_param", "There is no access_token or shop_id in query.", 403)
            base += f"{token}{shop_id}"
        if not hmac.compare_digest(query["sign"], _sign(self.partner_key, base)):
            raise ShopeeError("error_sign", "Wrong sign.", 403)
        if shop_level:
            shop = self.market.shops.get(query["shop_id"])
            if shop is None or not hmac.compare_digest(shop.access_token, query["access_token"]):
                raise ShopeeError("error_auth", "Invalid access_token.", 403)
            if shop.access_expires_at <= self.market.now():
                raise ShopeeError("invalid_access_token", "Invalid access_token.", 403)
        return shop

    def _endpoint(
        self, op: str, handler: Handler, *, shop_level: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = time.monotonic()
            shop: Shop | None = None
            headers: dict[str, str] = {}
            size = 1
            try:
                shop = self._check_common(request, shop_level=shop_level)
                await self.market.door(op, shop)
                body: dict[str, Any] = {}
                if request.method == "POST" and "json" in request.headers.get("content-type", ""):
                    try:
                        loaded = json.loads(await request.body() or b"{}")
                    except ValueError as exc:
                        raise _param("Wrong parameters, detail: the body is not JSON.") from exc
                    if not isinstance(loaded, dict):
                        raise _param("Wrong parameters, detail: the body is not a JSON object.")
                    body = loaded
                size = max((len(v) for v in body.values() if isinstance(v, list)), default=1)
                answer = await handler(request, body, shop)
                status, error, message = 200, "", ""
            except Refused as refused:
                answer = {}
                if refused.fault is Fault.throttle:
                    status, error = 429, "error_rate_limit"
                    message = "Too many requests. You have reached the rate limit. Please try again later."
                    headers["Retry-After"] = str(max(1, math.ceil(refused.retry_after or 1)))
                elif refused.fault is Fault.timeout:
                    status, error, message = 504, "error_server", "Gateway timeout. Please try later."
                else:
                    status, error, message = 500, "error_server", "Something wrong. Please try later."
            except ShopeeError as exc:
                answer, status, error, message = {}, exc.status, exc.error, exc.message
            self.market.record(op, shop, size, started, error or "ok")
            envelope: dict[str, Any] = {"request_id": secrets.token_hex(16), "error": error, "message": message}
            if op.startswith("auth."):
                envelope |= answer  # the auth APIs answer at the top level
            elif not error:
                envelope["response"] = answer
            return JSONResponse(envelope, status_code=status, headers=headers)

        return endpoint

    def _routes(self) -> list[Route]:
        api: list[tuple[str, str, Handler, bool]] = [
            ("POST", "media_space/upload_image", self._upload_image, False),
            ("POST", "product/add_item", self._add_item, True),
            ("POST", "product/init_tier_variation", self._init_tier_variation, True),
            ("POST", "product/update_tier_variation", self._update_tier_variation, True),
            ("POST", "product/add_model", self._add_model, True),
            ("POST", "product/update_item", self._update_item, True),
            ("GET", "product/get_model_list", self._get_model_list, True),
            ("GET", "product/get_item_base_info", self._get_item_base_info, True),
            ("POST", "product/unlist_item", self._unlist_item, True),
            ("POST", "product/update_stock", self._update_stock, True),
            ("POST", "product/update_price", self._update_price, True),
            ("GET", "order/get_order_list", self._get_order_list, True),
            ("GET", "order/get_order_detail", self._get_order_detail, True),
            ("POST", "order/cancel_order", self._cancel_order, True),
            ("GET", "logistics/get_shipping_parameter", self._get_shipping_parameter, True),
            ("POST", "logistics/ship_order", self._ship_order, True),
            ("POST", "auth/token/get", self._token_get, False),
            ("POST", "auth/access_token/get", self._access_token_get, False),
            ("POST", "push/set_app_push_config", self._set_app_push_config, False),
            ("GET", "push/get_app_push_config", self._get_app_push_config, False),
            ("GET", "push/get_lost_push_message", self._get_lost_push_message, False),
            ("POST", "push/confirm_consumed_lost_push_message", self._confirm_lost_push, False),
        ]
        routes = [
            Route(
                f"/api/v2/{path}", self._endpoint(path.replace("/", "."), handler, shop_level=shop_level), methods=[m]
            )
            for m, path, handler, shop_level in api
        ]
        routes += [
            Route("/api/v2/shop/auth_partner", self._auth_partner, methods=["GET"]),
            Route("/sandbox/images/{image_id}", self._image, methods=["GET"]),
            Route("/sandbox/shops/{shop_id}", self._shop_page, methods=["GET"]),
            Route("/sandbox/shops/{shop_id}/orders", self._order_form, methods=["POST"]),
        ]
        return routes

    # -- products ----------------------------------------------------------------------------------------------

    def _item(self, shop: Shop | None, item_id: Any) -> Item:
        assert shop is not None
        item = shop.items.get(_int(item_id, "item_id"))
        if item is None:
            raise ShopeeError("error_item_not_found", f"Item {item_id} not found.")
        return item

    async def _upload_image(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        form = await request.form()
        files = [f for f in form.getlist("image") if isinstance(f, UploadFile)]
        if not files:
            raise _param("Wrong parameters, detail: image is required.")
        if len(files) > 8:
            raise _param("Wrong parameters, detail: upload less than 9 images at a time.")
        base = _base(request)
        results: list[dict[str, Any]] = []
        for index, upload in enumerate(files):
            data = await upload.read()
            if len(data) > MAX_IMAGE_BYTES:
                results.append({"id": index, "error": "error_param", "message": "Image size exceeds 10.0 MB."})
                continue
            if data[:3] == b"\xff\xd8\xff":
                content_type = "image/jpeg"
            elif data[:8] == b"\x89PNG\r\n\x1a\n":
                content_type = "image/png"
            else:
                results.append(
                    {"id": index, "error": "error_param", "message": "Only JPG, JPEG and PNG are supported."}
                )
                continue
            image = self.market.store_image(data, content_type, lambda image_id: f"{base}sandbox/images/{image_id}")
            info = {"image_id": image.image_id, "image_url_list": [{"image_url_region": "VN", "image_url": image.url}]}
            results.append({"id": index, "error": "", "message": "", "image_info": info})
        good = [r for r in results if not r["error"]]
        if not good:
            raise ShopeeError(results[0]["error"], results[0]["message"])
        return {"image_info": good[0]["image_info"], "image_info_list": results}

    def _image_ids(self, body: Mapping[str, Any]) -> list[str]:
        ids = (body.get("image") or {}).get("image_id_list") or []
        if not ids:
            raise _param("Wrong parameters, detail: image.image_id_list is required.")
        if len(ids) > 9:
            raise _param("Wrong parameters, detail: image_id_list should contain at most 9 images.")
        unknown = [i for i in ids if i not in self.market.images]
        if unknown:
            raise _param(f"Wrong parameters, detail: image_id {unknown[0]} is invalid.")
        return [str(i) for i in ids]

    @staticmethod
    def _name(body: Mapping[str, Any]) -> str:
        name = str(_required(body, "item_name")).strip()
        if len(name) > ITEM_NAME_MAX:
            raise _param(f"Wrong parameters, detail: item_name should be at most {ITEM_NAME_MAX} characters.")
        return name

    async def _add_item(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        name = self._name(body)
        description = str(_required(body, "description"))
        price = _price(_required(body, "original_price"))
        weight = float(_required(body, "weight"))
        category = _int(_required(body, "category_id"), "category_id")
        logistics = _required(body, "logistic_info")
        images = self._image_ids(body)
        stock = _stock(body.get("seller_stock")) if body.get("seller_stock") else 0
        now = self.market.now()
        item = Item(
            item_id=self.market.new_id(),
            name=name,
            description=description,
            category_id=str(category),
            status=str(body.get("item_status") or "NORMAL"),
            image_ids=images,
            created_at=now,
            updated_at=now,
        )
        item.skus[0] = Sku(0, str(body.get("item_sku") or ""), "", price, stock)
        self.extras[item.item_id] = ItemExtra(weight=weight, logistic_info=list(logistics))
        shop.items[item.item_id] = item
        return {
            "item_id": item.item_id,
            "item_name": name,
            "item_status": item.status,
            "price_info": [{"original_price": price}],
        }

    def _tiers(self, body: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
        tiers = body.get("standardise_tier_variation") or body.get("tier_variation") or []
        if not isinstance(tiers, list) or not 1 <= len(tiers) <= 2:
            raise _param("Wrong parameters, detail: an item has one or two tier variations.")
        names: list[str] = []
        options: list[list[str]] = []
        for tier in tiers:
            names.append(str(tier.get("variation_name") or tier.get("name") or "").strip())
            raw = tier.get("variation_option_list") or tier.get("option_list") or []
            values = [str(o.get("variation_option_name") or o.get("option") or "").strip() for o in raw]
            if not names[-1] or not values or any(not v for v in values):
                raise _param("Wrong parameters, detail: a tier needs a name and named options.")
            if len(set(values)) != len(values):
                raise _param("Wrong parameters, detail: tier variation options should be unique.")
            options.append(values)
        return names, options

    def _new_models(self, item: Item, extra: ItemExtra, models: Any) -> list[dict[str, Any]]:
        if not isinstance(models, list) or not models:
            raise _param("Wrong parameters, detail: model is required.")
        taken = {tuple(index) for index in extra.tier_index.values()}
        skus = {s.seller_sku for s in item.skus.values() if s.seller_sku}
        made: list[dict[str, Any]] = []
        for model in models:
            index = model.get("tier_index")
            if (
                not isinstance(index, list)
                or len(index) != len(extra.options)
                or any(not isinstance(i, int) or not 0 <= i < len(extra.options[t]) for t, i in enumerate(index))
            ):
                raise _param(f"Wrong parameters, detail: tier_index {index} is invalid.")
            if tuple(index) in taken:
                raise _param(f"Wrong parameters, detail: a model with tier_index {index} already exists.")
            model_sku = str(model.get("model_sku") or "")
            if model_sku and model_sku in skus:
                raise _param(f"Wrong parameters, detail: model_sku {model_sku} is duplicated.")
            taken.add(tuple(index))
            skus.add(model_sku)
            sku = Sku(
                self.market.new_id(),
                model_sku,
                " · ".join(extra.options[t][i] for t, i in enumerate(index)),
                _price(model.get("original_price")),
                _stock(model.get("seller_stock")),
            )
            item.skus[sku.sku_id] = sku
            extra.tier_index[sku.sku_id] = list(index)
            made.append({"model_id": sku.sku_id, "model_sku": model_sku, "tier_index": list(index)})
        if len(item.skus) > 50:
            raise _param("Wrong parameters, detail: an item has at most 50 models.")
        item.updated_at = self.market.now()
        return made

    async def _init_tier_variation(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        item = self._item(shop, _required(body, "item_id"))
        extra = self.extras.setdefault(item.item_id, ItemExtra())
        if extra.options:
            raise _param("Wrong parameters, detail: the item already has tier variations; use update_tier_variation.")
        names, options = self._tiers(body)
        models = body.get("model")
        if not isinstance(models, list) or len(models) > 50:
            raise _param("Wrong parameters, detail: model should hold 1 to 50 models.")
        previous = dict(item.skus)
        item.skus.clear()
        extra.tier_names, extra.options = names, options
        try:
            made = self._new_models(item, extra, models)
        except ShopeeError:
            item.skus, extra.tier_names, extra.options, extra.tier_index = previous, [], [], {}
            raise
        return {"item_id": item.item_id, "model": made}

    async def _update_tier_variation(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        item = self._item(shop, _required(body, "item_id"))
        extra = self.extras.setdefault(item.item_id, ItemExtra())
        if not extra.options:
            raise _param("Wrong parameters, detail: the item has no tier variation; use init_tier_variation.")
        names, options = self._tiers(body)
        if len(options) != len(extra.options) or any(
            len(n) < len(o) for n, o in zip(options, extra.options, strict=True)
        ):
            raise _param("Wrong parameters, detail: options of models that exist cannot be removed.")
        extra.tier_names, extra.options = names, options
        for model_id, index in extra.tier_index.items():  # renamed options rename their models
            item.skus[model_id].name = " · ".join(options[t][i] for t, i in enumerate(index))
        return {"item_id": item.item_id}

    async def _add_model(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        item = self._item(shop, _required(body, "item_id"))
        extra = self.extras.setdefault(item.item_id, ItemExtra())
        if not extra.options:
            raise _param("Wrong parameters, detail: the item has no tier variation.")
        return {"item_id": item.item_id, "model": self._new_models(item, extra, body.get("model_list"))}

    async def _update_item(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        item = self._item(shop, _required(body, "item_id"))
        extra = self.extras.setdefault(item.item_id, ItemExtra())
        if "item_name" in body:
            item.name = self._name(body)
        if "description" in body:
            item.description = str(_required(body, "description"))
        if "image" in body:
            item.image_ids = self._image_ids(body)
        if "category_id" in body:
            item.category_id = str(_int(body["category_id"], "category_id"))
        if "weight" in body:
            extra.weight = float(body["weight"])
        if "item_status" in body:
            item.status = str(body["item_status"])
        if "item_sku" in body and not extra.options and 0 in item.skus:
            item.skus[0].seller_sku = str(body["item_sku"])
        if "original_price" in body and not extra.options and 0 in item.skus:
            item.skus[0].price_vnd = _price(body["original_price"])
        item.updated_at = self.market.now()
        return {"item_id": item.item_id, "item_name": item.name, "item_status": item.status}

    def _model_view(self, item: Item, sku: Sku, extra: ItemExtra) -> dict[str, Any]:
        return {
            "model_id": sku.sku_id,
            "model_sku": sku.seller_sku,
            "model_name": sku.name,
            "tier_index": extra.tier_index.get(sku.sku_id, []),
            "price_info": [{"original_price": float(sku.price_vnd), "current_price": float(sku.price_vnd)}],
            "stock_info_v2": {
                "summary_info": {"total_reserved_stock": 0, "total_available_stock": sku.stock},
                "seller_stock": [{"location_id": "VNZ", "stock": sku.stock}],
            },
        }

    async def _get_model_list(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        item = self._item(shop, request.query_params.get("item_id"))
        extra = self.extras.setdefault(item.item_id, ItemExtra())
        return {
            "tier_variation": [
                {"name": n, "option_list": [{"option": o} for o in opts]}
                for n, opts in zip(extra.tier_names, extra.options, strict=True)
            ],
            "standardise_tier_variation": [
                {
                    "variation_id": 0,
                    "variation_name": n,
                    "variation_option_list": [{"variation_option_id": 0, "variation_option_name": o} for o in opts],
                }
                for n, opts in zip(extra.tier_names, extra.options, strict=True)
            ],
            # An item without variations has no models to list (its one model is model_id 0).
            "model": [self._model_view(item, s, extra) for s in item.skus.values()] if extra.options else [],
        }

    async def _get_item_base_info(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        raw = request.query_params.get("item_id_list") or ""
        ids = [i for i in raw.split(",") if i]
        if not 1 <= len(ids) <= 50:
            raise _param("Wrong parameters, detail: item_id_list should hold 1 to 50 ids.")
        found: list[dict[str, Any]] = []
        for item_id in ids:
            item = shop.items.get(_int(item_id, "item_id_list"))
            if item is None:
                continue
            extra = self.extras.setdefault(item.item_id, ItemExtra())
            view: dict[str, Any] = {
                "item_id": item.item_id,
                "item_name": item.name,
                "description": item.description,
                "item_status": item.status,
                "category_id": int(item.category_id or 0),
                "create_time": int(item.created_at),
                "update_time": int(item.updated_at),
                "weight": str(extra.weight),
                "has_model": bool(extra.options),
                "image": {
                    "image_id_list": item.image_ids,
                    "image_url_list": [self.market.images[i].url for i in item.image_ids if i in self.market.images],
                },
                "logistic_info": extra.logistic_info,
            }
            if not extra.options and 0 in item.skus:
                single = self._model_view(item, item.skus[0], extra)
                view |= {"item_sku": item.skus[0].seller_sku, **{k: single[k] for k in ("price_info", "stock_info_v2")}}
            found.append(view)
        return {"item_list": found}

    async def _unlist_item(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        entries = body.get("item_list")
        if not isinstance(entries, list) or not 1 <= len(entries) <= 48:
            raise _param("Wrong parameters, detail: item_list should hold 1 to 48 items.")
        failures: list[dict[str, Any]] = []
        successes: list[dict[str, Any]] = []
        for entry in entries:
            item_id = _int(entry.get("item_id"), "item_id")
            item = shop.items.get(item_id)
            if item is None:
                failures.append({"item_id": item_id, "failed_reason": "Item not exist."})
                continue
            unlist = bool(entry.get("unlist"))
            item.status = "UNLIST" if unlist else "NORMAL"
            item.updated_at = self.market.now()
            successes.append({"item_id": item_id, "unlist": unlist})
        return {"failure_list": failures, "success_list": successes}

    @staticmethod
    def _batch(body: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
        entries = body.get(key)
        if not isinstance(entries, list) or not 1 <= len(entries) <= 50:
            raise _param(f"Wrong parameters, detail: {key} should hold 1 to 50 models.")
        return [e for e in entries if isinstance(e, dict)]

    async def _update_stock(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        def apply(sku: Sku, entry: dict[str, Any]) -> dict[str, Any]:
            sku.stock = _stock(entry.get("seller_stock"))
            return {"seller_stock": [{"stock": sku.stock}]}

        return self._update_models(shop, body, "stock_list", apply)

    async def _update_price(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        def apply(sku: Sku, entry: dict[str, Any]) -> dict[str, Any]:
            sku.price_vnd = _price(entry.get("original_price"))
            return {"original_price": float(sku.price_vnd)}

        return self._update_models(shop, body, "price_list", apply)

    def _update_models(
        self,
        shop: Shop | None,
        body: dict[str, Any],
        key: str,
        apply: Callable[[Sku, dict[str, Any]], dict[str, Any]],
    ) -> dict[str, Any]:
        """One item's ``key`` list of ``{model_id, ...}``: ``apply`` sets each model (a ShopeeError it raises, before
        it changes the model, fails that model alone); the answer lists failures and successes per model."""
        item = self._item(shop, _required(body, "item_id"))
        entries = self._batch(body, key)
        failures: list[dict[str, Any]] = []
        successes: list[dict[str, Any]] = []
        for entry in entries:
            model_id = entry.get("model_id", 0)
            sku = item.skus.get(model_id) if isinstance(model_id, int) else None
            if sku is None:
                failures.append({"model_id": model_id, "failed_reason": f"Model {model_id} does not exist."})
                continue
            try:
                done = apply(sku, entry)
            except ShopeeError as exc:
                failures.append({"model_id": model_id, "failed_reason": exc.message})
                continue
            successes.append({"model_id": model_id, **done})
        item.updated_at = self.market.now()
        return {"failure_list": failures, "success_list": successes}

    # -- orders and logistics ----------------------------------------------------------------------------------

    def _order(self, shop: Shop | None, order_sn: Any) -> Order:
        assert shop is not None
        order = shop.orders.get(str(order_sn or ""))
        if order is None:
            raise ShopeeError("error_not_found", f"Order {order_sn} not found.")
        return order

    async def _get_order_list(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        query = request.query_params
        field_name = query.get("time_range_field")
        if field_name not in ("create_time", "update_time"):
            raise _param("Wrong parameters, detail: time_range_field should be create_time or update_time.")
        time_from = _int(query.get("time_from"), "time_from")
        time_to = _int(query.get("time_to"), "time_to")
        if time_from > time_to:
            raise _param("Wrong parameters, detail: time_from should be earlier than time_to.")
        if time_to - time_from > MAX_WINDOW:
            raise _param("Wrong parameters, detail: the time range should be no longer than 15 days.")
        page_size = _int(query.get("page_size"), "page_size")
        if not 1 <= page_size <= 100:
            raise _param("Wrong parameters, detail: page_size should be between 1 and 100.")
        offset = _int(query.get("cursor") or 0, "cursor")
        wanted_status = query.get("order_status")
        attr = "created_at" if field_name == "create_time" else "updated_at"
        matching = sorted(
            (
                o
                for o in shop.orders.values()
                if time_from <= int(getattr(o, attr)) <= time_to and (not wanted_status or o.status == wanted_status)
            ),
            key=lambda o: (int(getattr(o, attr)), o.order_id),
        )
        page = matching[offset : offset + page_size]
        more = offset + page_size < len(matching)
        with_status = "order_status" in (query.get("response_optional_fields") or "")
        return {
            "more": more,
            "next_cursor": str(offset + page_size) if more else "",
            "order_list": [
                {"order_sn": o.order_id, **({"order_status": o.status} if with_status else {})} for o in page
            ],
        }

    def _order_view(self, shop: Shop, order: Order, optional: set[str]) -> dict[str, Any]:
        view: dict[str, Any] = {
            "order_sn": order.order_id,
            "region": "VN",
            "currency": "VND",
            "cod": False,
            "order_status": order.status,
            "create_time": int(order.created_at),
            "update_time": int(order.updated_at),
            "days_to_ship": 2,
            "ship_by_date": int(order.created_at) + 2 * 86400,
        }
        if "buyer_username" in optional:
            view["buyer_username"] = order.buyer_name
        if "total_amount" in optional:
            view["total_amount"] = float(order.total_vnd)
        if "estimated_shipping_fee" in optional:
            view["estimated_shipping_fee"] = float(order.shipping_fee_vnd)
        if "actual_shipping_fee" in optional:
            view["actual_shipping_fee"] = float(order.shipping_fee_vnd) if order.tracking_number else 0.0
        if "pay_time" in optional and order.status != "UNPAID":
            view["pay_time"] = int(order.created_at)
        if "package_list" in optional:
            view["package_list"] = [{"package_number": f"OFG{order.order_id}", "logistics_status": "LOGISTICS_READY"}]
        if "item_list" in optional:
            items: list[dict[str, Any]] = []
            for line in order.lines:
                item = shop.items.get(line.item_id or 0)
                sku = item.skus.get(line.sku_id or 0) if item is not None else None
                items.append(
                    {
                        "item_id": line.item_id,
                        "item_name": item.name if item is not None else line.name,
                        "item_sku": item.skus[0].seller_sku if item is not None and 0 in item.skus else "",
                        "model_id": line.sku_id or 0,
                        "model_name": sku.name if sku is not None else "",
                        "model_sku": line.seller_sku if (line.sku_id or 0) else "",
                        "model_quantity_purchased": line.quantity,
                        "model_original_price": float(line.unit_price_vnd),
                        "model_discounted_price": float(line.unit_price_vnd),
                    }
                )
            view["item_list"] = items
        return view

    async def _get_order_detail(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        query = request.query_params
        numbers = [n for n in (query.get("order_sn_list") or "").split(",") if n]
        if not 1 <= len(numbers) <= 50:
            raise _param("Wrong parameters, detail: order_sn_list should hold 1 to 50 order numbers.")
        optional = {f.strip() for f in (query.get("response_optional_fields") or "").split(",") if f.strip()}
        return {"order_list": [self._order_view(shop, shop.orders[n], optional) for n in numbers if n in shop.orders]}

    def _pickup_address(self, order: Order) -> dict[str, Any]:
        slot_day = math.floor(self.market.now() / 86400) * 86400 + 86400
        return {
            "address_id": 7001,
            "region": "VN",
            "state": "Bình Phước",
            "city": "Đồng Xoài",
            "district": "Tân Phú",
            "town": "",
            "address": "Số 1, đường Phú Riềng Đỏ",
            "zipcode": "",
            "address_flag": ["default_address", "pickup_address"],
            "time_slot_list": [{"date": slot_day, "time_text": "Sáng mai", "pickup_time_id": str(slot_day)}],
        }

    async def _get_shipping_parameter(
        self, request: Request, body: dict[str, Any], shop: Shop | None
    ) -> dict[str, Any]:
        order = self._order(shop, request.query_params.get("order_sn"))
        if order.status not in SHIPPABLE:
            raise ShopeeError("logistics.order_status_error", f"Order status {order.status} cannot be shipped.")
        return {
            "info_needed": self.info_needed,
            "dropoff": {"branch_list": [{"branch_id": 3001, "region": "VN", "address": "Bưu cục Đồng Xoài"}]},
            "pickup": {"address_list": [self._pickup_address(order)]},
        }

    async def _ship_order(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        order = self._order(shop, _required(body, "order_sn"))
        if order.status not in SHIPPABLE:
            raise ShopeeError("logistics.order_status_error", f"Order status {order.status} cannot be shipped.")
        methods = [m for m in ("pickup", "dropoff", "non_integrated") if m in body]
        if len(methods) != 1 or methods[0] not in self.info_needed:
            raise _param("Wrong parameters, detail: give exactly one of the methods info_needed offers.")
        method = methods[0]
        detail = body[method] or {}
        missing = [f for f in self.info_needed[method] if not detail.get(f)]
        if missing:
            raise _param(f"Wrong parameters, detail: {method}.{missing[0]} is required.")
        if method == "pickup":
            address = self._pickup_address(order)
            slots = {s["pickup_time_id"] for s in address["time_slot_list"]}
            if detail.get("address_id") != address["address_id"] or detail.get("pickup_time_id") not in slots:
                raise _param("Wrong parameters, detail: address_id or pickup_time_id is invalid.")
            tracking = f"SPXVN{self.market.new_id():010d}"
        else:
            tracking = str(detail.get("tracking_number") or f"VN{self.market.new_id():010d}")
        order.tracking_number = tracking
        self.market.set_status(order, "PROCESSED")
        self._push_status(shop, order)
        self.send_push(
            shop, 4, {"ordersn": order.order_id, "package_number": f"OFG{order.order_id}", "tracking_no": tracking}
        )
        return {}

    async def _cancel_order(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        order = self._order(shop, _required(body, "order_sn"))
        reason = _required(body, "cancel_reason")
        if reason not in CANCEL_REASONS:
            raise _param(f"Wrong parameters, detail: cancel_reason {reason} is not allowed in this region.")
        if order.status not in CANCELLABLE:
            raise ShopeeError("error_order_status", f"Order status {order.status} cannot be cancelled.")
        if reason == "OUT_OF_STOCK":
            entries = body.get("item_list")
            ordered = {(line.item_id, line.sku_id or 0) for line in order.lines}
            if not isinstance(entries, list) or not entries:
                raise _param("Wrong parameters, detail: item_list is required when cancel_reason is OUT_OF_STOCK.")
            if any((e.get("item_id"), e.get("model_id", 0)) not in ordered for e in entries):
                raise _param("Wrong parameters, detail: item_list names an item the order does not hold.")
        for line in order.lines:  # the buyer's units go back on sale
            item = shop.items.get(line.item_id or 0)
            if item is not None and (line.sku_id or 0) in item.skus:
                item.skus[line.sku_id or 0].stock += line.quantity
        order.cancel_reason = str(reason)
        self.market.set_status(order, "CANCELLED")
        self._push_status(shop, order)
        return {"update_time": int(order.updated_at)}

    # -- authorisation -----------------------------------------------------------------------------------------

    def _issue(self, shop: Shop) -> dict[str, Any]:
        self.market.issue_tokens(shop, access_ttl=ACCESS_TTL, refresh_ttl=REFRESH_TTL)
        return {
            "partner_id": self.partner_id,
            "shop_id": int(shop.shop_id),
            "access_token": shop.access_token,
            "refresh_token": shop.refresh_token,
            "expire_in": ACCESS_TTL,
        }

    async def _token_get(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        code = str(_required(body, "code"))
        shop_id = str(_int(_required(body, "shop_id"), "shop_id"))
        if _int(_required(body, "partner_id"), "partner_id") != self.partner_id:
            raise ShopeeError("error_auth", "partner_id is invalid")
        held = self.codes.pop(code, None)  # one-time: gone whether it works or not
        if held is None or held[0] != shop_id or held[1] < self.market.now():
            raise _param("Invalid code.")
        tokens = self._issue(self.market.shops[shop_id])
        return {**tokens, "shop_id_list": [int(shop_id)], "merchant_id_list": []}

    async def _access_token_get(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        refresh_token = str(_required(body, "refresh_token"))
        shop_id = str(_int(_required(body, "shop_id"), "shop_id"))
        if _int(_required(body, "partner_id"), "partner_id") != self.partner_id:
            raise ShopeeError("error_auth", "partner_id is invalid")
        target = self.market.shops.get(shop_id)
        if target is None:
            raise ShopeeError("shop_no_linked", "Partner and shop has no linked.")
        if refresh_token in target.used_refresh_tokens or not hmac.compare_digest(target.refresh_token, refresh_token):
            raise ShopeeError(
                "error_shop_refresh_token", "Your refresh token is error ,please check refresh token or shopid."
            )
        if target.refresh_expires_at <= self.market.now():
            raise ShopeeError("refresh_token_expired", "Your refresh_token expired.")
        target.used_refresh_tokens.add(refresh_token)
        return self._issue(target)

    async def _auth_partner(self, request: Request) -> Response:
        """The seller's authorisation page: pick a shop (or a new one), then back to ``redirect`` with a code."""
        try:
            self._check_common(request, shop_level=False)
        except ShopeeError as exc:
            envelope = {"request_id": secrets.token_hex(16), "error": exc.error, "message": exc.message}
            return JSONResponse(envelope, status_code=exc.status)
        query = request.query_params
        redirect = query.get("redirect") or ""
        if not redirect.startswith(("http://", "https://")):
            return JSONResponse({"error": "error_param", "message": "redirect is invalid"}, status_code=400)
        chosen = query.get("shop_id")
        if chosen:
            shop = self.market.shops.get(chosen)
            if shop is None:  # "a new shop" on the page
                shop = self.market.shops[str(self.add_shop(f"Shop {len(self.market.shops) + 1}")["shop_id"])]
            code = secrets.token_hex(16)
            self.codes[code] = (shop.shop_id, self.market.now() + CODE_TTL)
            return RedirectResponse(_with_query(redirect, {"code": code, "shop_id": shop.shop_id}), status_code=302)
        keep = "".join(
            f'<input type="hidden" name="{k}" value="{v}">'
            for k, v in ((k, _html(query[k])) for k in ("partner_id", "timestamp", "sign", "redirect"))
        )
        options = "".join(
            f'<option value="{_html(s.shop_id)}">{_html(s.name)} ({_html(s.shop_id)})</option>'
            for s in self.market.shops.values()
        )
        page = (
            '<!doctype html><html lang="vi"><head><meta charset="utf-8"><title>Shopee sandbox · authorise</title>'
            "</head><body><h1>Shopee SANDBOX: authorise AgriMarket</h1>"
            f'<form method="get">{keep}<select name="shop_id">{options}<option value="new">A new shop</option>'
            '</select> <button type="submit">Authorise</button></form></body></html>'
        )
        return HTMLResponse(page)

    # -- pushes ------------------------------------------------------------------------------------------------

    async def _set_app_push_config(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        url = body.get("callback_url")
        if url is not None:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise _param("Wrong parameters, detail: callback_url is invalid.")
            self.app_callback_url = url
        return {"result": "success"}

    async def _get_app_push_config(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        return {
            "callback_url": self.app_callback_url or "",
            "live_push_status": "Normal",
            "push_config_on_list": [3, 4],
        }

    async def _get_lost_push_message(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        oldest = self.market.now() - LOST_PUSH_KEEP
        kept = [p for p in self.lost_pushes if p.timestamp >= oldest]
        page = kept[:100]
        return {
            "push_message_list": [
                {"shop_id": p.shop_id, "code": p.code, "timestamp": p.timestamp, "data": p.data} for p in page
            ],
            "has_next_page": len(kept) > len(page),
            "last_message_id": page[-1].message_id if page else 0,
        }

    async def _confirm_lost_push(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        last = _int(_required(body, "last_message_id"), "last_message_id")
        self.lost_pushes = [p for p in self.lost_pushes if p.message_id > last]
        return {}

    # -- pages -------------------------------------------------------------------------------------------------

    async def _image(self, request: Request) -> Response:
        return image_response(self.market, request.path_params["image_id"], cache_control="public, max-age=86400")

    def _links(self, request: Request, shop: Shop) -> PageLinks:
        base = _base(request)
        return PageLinks(
            image_url=lambda image_id: f"{base}sandbox/images/{image_id}",
            order_form_action=f"{base}sandbox/shops/{shop.shop_id}/orders",
        )

    async def _shop_page(self, request: Request) -> Response:
        shop = self.market.shops.get(request.path_params["shop_id"])
        if shop is None:
            return HTMLResponse("<p>No such shop in this sandbox.</p>", status_code=404)
        return HTMLResponse(shop_page(self.market, shop, self._links(request, shop), title="Shopee", accent="#ee4d2d"))

    async def _order_form(self, request: Request) -> Response:
        """A buyer's order of one unit from the shop page: the same path as :meth:`place_order`, push included."""
        shop = self.market.shops.get(request.path_params["shop_id"])
        if shop is None:
            return HTMLResponse("<p>No such shop in this sandbox.</p>", status_code=404)
        form = await request.form()
        seller_sku = str(form.get("seller_sku") or "")
        try:
            await self.place_order(shop.shop_id, [(seller_sku, 1)])
        except KeyError:
            return HTMLResponse("<p>This shop does not sell that SKU.</p>", status_code=404)
        return RedirectResponse(f"{_base(request)}sandbox/shops/{shop.shop_id}", status_code=303)
