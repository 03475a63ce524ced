"""A TikTok Shop Partner API (202309+) sandbox: an ASGI app over :class:`~agrimarket.sandbox.core.Marketplace` that
speaks TikTok's paths, common parameters, signature, envelopes ``{code, message, request_id, data}``, limits and
codes (marketplaces.md §3), so the TikTok adapter, written against the real platform, runs against it unchanged.

One app serves TikTok's three hosts; give the adapter (``TikTokSettings``) these addresses:

- ``<base>``: the Partner API (``api_url``): ``/product/202309/…``, ``/order/202309/…``, ``/fulfillment/…``,
  ``/return_refund/…``, ``/logistics/…``, ``/authorization/202309/shops``;
- ``<base>/auth``: the token host (``auth_url``): ``/api/v2/token/get`` and ``/api/v2/token/refresh``;
- ``<base>/services``: the seller's authorisation page (``services_url``): ``/open/authorize``;
- ``/sandbox/images/{id}``, ``/sandbox/shops/{shop_id}`` (the shop's page, with a form to buy).

Mounted under a prefix (``app.mount("/sandbox/tiktok", sandbox.app)``) the signature is checked over the path
below the mount, as the adapter signs the path below its ``api_url``.

Documented and enforced: the signature (code 106001), ``app_key`` (36009004), the access token in
``x-tts-access-token`` (expired: 105002), ``shop_cipher`` on shop APIs, 50 QPS (HTTP 429, code 36009002), ≤ 9 main
images, ≤ 100 SKUs per product, titles of 25-255 characters, descriptions ≤ 10,000, prices as strings in VND,
``inventory[{warehouse_id, quantity}]``, ``idempotency_key`` ≤ 128, order pages ≤ 100, ≤ 50 ids per order detail,
one-time 30-minute authorisation codes, 7-day access tokens, pushes signed ``HMAC(app_secret, app_key + body)``.

Choices where TikTok publishes nothing (UNCONFIRMED in marketplaces.md), the sandbox's own:

- codes: a timestamp outside [now − 300 s, now + 30 s] is 36009006; a missing or malformed parameter 36009003; a
  wrong ``shop_cipher`` 36009005; an invalid (not expired) access token 105001; a bad authorisation code or
  refresh token 36004004; an unknown product 12052048, SKU 12052049, order 21011001; other refusals of the data
  12052000 with a message saying what is wrong; an injected server error HTTP 503 (36009001), an injected timeout
  HTTP 504 (36009007) after ``SandboxConfig.timeout_seconds``. Throttling sends no ``Retry-After``; refusals of
  the app key, signature or token answer HTTP 401, every other refusal HTTP 200 (the code decides);
- the rate limit is per shop across its APIs (TikTok counts per API: the sandbox is stricter), by default 50/s;
- a created or edited product passes its audit at once (ACTIVATE; an edited one keeps its status); a seller SKU
  is unique in the shop; stock may be 0 at creation (update-inventory allows it; create says 1-99,999);
  prices are whole dong; inventory and price updates need an ACTIVATE product (as documented) and refuse the whole
  call for an unknown SKU id; activate/deactivate take ≤ 20 ids and list refused ones in ``data.errors``;
- ``GET /order/202309/orders`` leaves unknown ids out; search answers the same order objects as detail; one line
  item per unit bought; a paid order is AWAITING_SHIPMENT (the ON_HOLD window is skipped) with one package; a
  cancellation is of the whole order (``skus`` ignored), put back on sale; the refresh token rotates and the old
  one stops working (TikTok may keep it; the adapter stores whatever comes back); refresh tokens live 30 days;
- pushes: type 1 on every order status change (``CANCEL`` for a cancelled order, as the push doc spells it) and
  type 27 when a buyer takes a SKU's last unit; a push that fails is not retried (TikTok retries after 2 min).
- Operation names for :meth:`Marketplace.inject` are the API paths with ids as ``{…}``:
  ``/product/202309/products/{product_id}/inventory/update``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import io
import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import httpx
from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from agrimarket.channels.tiktok.signing import ACCESS_TOKEN_HEADER, sign, webhook_signature
from agrimarket.kit.text import clean_line, clean_text
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
    own_base_url,
    shop_page,
)

SANDBOX_APP_KEY = "6a1b2sandboxvn"
SANDBOX_APP_SECRET = "sandbox-tiktok-app-secret"  # noqa: S105 - the sandbox's own app, public by design
SANDBOX_SERVICE_ID = "7100000000000000001"
ACCESS_TTL = 7 * 86_400
REFRESH_TTL = 30 * 86_400
CODE_TTL = 30 * 60
TIMESTAMP_PAST, TIMESTAMP_FUTURE = 300, 30
MAX_IMAGES = 9
MAX_SKUS = 100
MAX_PAGE = 100
MAX_ORDER_IDS = 50
MAX_PRODUCT_IDS = 20
MAX_QUANTITY = 99_999
MAX_IMAGE_BYTES = 10 * 1024 * 1024
TITLE_MIN, TITLE_MAX = 25, 255
DESCRIPTION_MAX = 10_000
IMAGE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp"}

OK = 0
SERVER_ERROR = 36009001
TOO_MANY_REQUESTS = 36009002
INVALID_PARAM = 36009003
INVALID_CREDENTIALS = 36009004
INVALID_CIPHER = 36009005
INVALID_TIMESTAMP = 36009006
GATEWAY_TIMEOUT = 36009007
FILE_TOO_LARGE = 36009021
WRONG_CONTENT_TYPE = 36009022
INVALID_TOKEN = 105001
TOKEN_EXPIRED = 105002
INVALID_SIGN = 106001
INVALID_GRANT = 36004004
PRODUCT_REFUSED = 12052000
PRODUCT_NOT_FOUND = 12052048
SKU_NOT_FOUND = 12052049
ORDER_NOT_FOUND = 21011001
ORDER_REFUSED = 21011002

ORDER_STATUSES = (
    "UNPAID",
    "ON_HOLD",
    "AWAITING_SHIPMENT",
    "PARTIALLY_SHIPPING",
    "AWAITING_COLLECTION",
    "IN_TRANSIT",
    "DELIVERED",
    "COMPLETED",
    "CANCELLED",
)
PACKAGE_STATUS = {
    "AWAITING_SHIPMENT": "TO_FULFILL",
    "AWAITING_COLLECTION": "PROCESSING",
    "IN_TRANSIT": "FULFILLING",
    "DELIVERED": "COMPLETED",
    "COMPLETED": "COMPLETED",
    "CANCELLED": "CANCELLED",
}
CANCEL_REASONS_UNPAID = frozenset(
    {
        "seller_cancel_unpaid_reason_out_of_stock",
        "seller_cancel_unpaid_reason_buyer_hasnt_paid_within_time_allowed",
        "seller_cancel_unpaid_reason_buyer_requested_cancellation",
        "seller_cancel_unpaid_reason_wrong_price",
    }
)
CANCEL_REASONS_PAID = frozenset(
    {
        "seller_cancel_reason_out_of_stock",
        "seller_cancel_paid_reason_address_not_deliver",
        "seller_cancel_paid_reason_buyer_requested_cancellation",
        "seller_cancel_reason_wrong_price",
    }
)


class TikTokError(Exception):
    """An answer in TikTok's envelope with a non-zero ``code``."""

    def __init__(self, code: int, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _param(message: str) -> TikTokError:
    return TikTokError(INVALID_PARAM, f"Invalid parameter: {message}")


def _refused(message: str) -> TikTokError:
    return TikTokError(PRODUCT_REFUSED, message)


def _amount(price: Any, name: str) -> int:
    """``{amount: "165000", currency: "VND"}`` as whole dong."""
    if not isinstance(price, Mapping):
        raise _param(f"{name} must be an object with amount and currency")
    if price.get("currency") != "VND":
        raise _refused(f"{name}.currency must be VND for a Vietnamese shop.")
    amount = price.get("amount")
    if not isinstance(amount, str):
        raise _param(f"{name}.amount must be a string")
    try:
        value = Decimal(amount)
    except InvalidOperation as exc:
        raise _param(f"{name}.amount {amount!r} is not a number") from exc
    if value != value.to_integral_value() or value <= 0:
        raise _refused(f"{name}.amount must be a positive whole number of dong.")
    return int(value)


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise _param(f"{name} must be an integer")
    try:
        number = int(str(value))
    except (TypeError, ValueError) as exc:
        raise _param(f"{name} must be an integer") from exc
    return number


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _offset(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        return int(json.loads(base64.urlsafe_b64decode(padded))["o"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _param("page_token is not one this API gave") from exc


Handler = Callable[[Request, dict[str, Any], Shop | None], Awaitable[dict[str, Any]]]


class TikTokSandbox:
    """A TikTok Shop stand-in. ``app`` is the ASGI app; ``market`` its shops, products, orders, calls and pushes.

    ``app_key``/``app_secret`` are the one app it knows (a shop's credentials carry them); ``service_id`` and
    ``redirect_url`` are that app's service and its redirect URL as registered in the Partner Center. Pushes go to
    a shop's callback URL (:meth:`set_callback`), sent with ``http`` (tests pass one on an ``ASGITransport``)."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Clock = time.time,
        app_key: str = SANDBOX_APP_KEY,
        app_secret: str = SANDBOX_APP_SECRET,
        http: httpx.AsyncClient | None = None,
        service_id: str = SANDBOX_SERVICE_ID,
        redirect_url: str | None = None,
    ) -> None:
        config = config or SandboxConfig(rate_calls=50, rate_per_seconds=1.0, burst=50, rate_documented=True)
        self.market = Marketplace("tiktok", config, clock=clock, http=http)
        self.app_key = app_key
        self.app_secret = app_secret
        self.service_id = service_id
        self.redirect_url = redirect_url
        self.codes: dict[str, tuple[str, float]] = {}  # one-time authorisation codes → (shop id, expiry)
        self.idempotency: dict[str, int] = {}  # "<shop id>:<idempotency_key>" → product id
        self.app = Starlette(routes=self._routes())
        self.app.state.sandbox = self

    # -- the façade --------------------------------------------------------------------------------------------

    def add_shop(self, name: str) -> dict[str, Any]:
        """A new authorised shop; its credentials as the TikTok adapter stores them."""
        shop_id = f"749{self.market.new_id():016d}"
        self.market.add_shop(shop_id, clean_line(name), access_ttl=ACCESS_TTL, refresh_ttl=REFRESH_TTL)
        return self.credentials(shop_id)

    def credentials(self, shop_id: str) -> dict[str, Any]:
        """The shop's current credentials (after a refresh too)."""
        shop = self.market.shops[str(shop_id)]
        return {
            "app_key": self.app_key,
            "app_secret": self.app_secret,
            "access_token": shop.access_token,
            "refresh_token": shop.refresh_token,
            "shop_id": shop.shop_id,
            "shop_cipher": self.cipher(shop.shop_id),
            "warehouse_id": self.warehouse_id(shop.shop_id),
            "access_expires_at": math.floor(shop.access_expires_at),
            "refresh_expires_at": math.floor(shop.refresh_expires_at),
            "seller_name": shop.name,
        }

    def cipher(self, shop_id: str) -> str:
        """The shop's ``shop_cipher`` (stable: derived from the shop id under the app secret)."""
        digest = hmac.new(self.app_secret.encode(), shop_id.encode(), hashlib.sha256).digest()
        return "ROW_" + base64.urlsafe_b64encode(digest[:18]).decode()

    @staticmethod
    def warehouse_id(shop_id: str) -> str:
        """The shop's one sales warehouse."""
        return f"72{shop_id[-16:]}"

    def set_callback(self, shop_id: str, url: str | None) -> None:
        """Where the shop's pushes go (the app's webhook URL in the Partner Center)."""
        self.market.shops[str(shop_id)].callback_url = url

    def set_redirect_url(self, url: str | None) -> None:
        """The app's redirect URL, where the authorisation page sends the seller back."""
        self.redirect_url = url

    def shop(self, shop_id: str) -> Shop:
        return self.market.shops[str(shop_id)]

    def item(self, shop_id: str, product_id: str | int) -> Item:
        return self.shop(shop_id).items[int(product_id)]

    def snapshot(self) -> bytes:
        """Shops, products, orders, images and idempotency keys, to :meth:`restore` after a restart."""
        return json.dumps(
            {
                "market": json.loads(self.market.snapshot()),
                "idempotency": self.idempotency,
                "redirect_url": self.redirect_url,
            }
        ).encode()

    def restore(self, data: bytes) -> None:
        saved = json.loads(data)
        self.market.restore(json.dumps(saved["market"]).encode())
        self.idempotency = {str(k): int(v) for k, v in (saved.get("idempotency") or {}).items()}
        self.redirect_url = saved.get("redirect_url") or self.redirect_url

    async def place_order(
        self,
        shop_id: str,
        lines: Sequence[tuple[str, int]],
        *,
        paid: bool = True,
        buyer_name: str = "Trần Văn Minh",
        shipping_fee_vnd: int = 0,
    ) -> str:
        """A buyer orders ``[(seller_sku, quantity)]``: TikTok's stock goes down (never below zero), one line item per
        unit, the order is AWAITING_SHIPMENT with one package (or UNPAID), and a signed type-1 push goes to the
        callback URL (a type-27 one too for a SKU sold out). Returns the order id."""
        shop = self.shop(shop_id)
        if not lines or any(quantity < 1 for _, quantity in lines):
            raise ValueError("an order has at least one line, each of at least one unit")
        status = "AWAITING_SHIPMENT" if paid else "UNPAID"
        order_lines: list[OrderLine] = []
        sold_out: list[tuple[Item, Sku]] = []
        for seller_sku, quantity in lines:
            item, sku = self.market.take_stock(shop, seller_sku, quantity)
            if item is None or sku is None:
                raise KeyError(f"shop {shop.shop_id} sells no SKU {seller_sku!r}")
            if sku.stock == 0:
                sold_out.append((item, sku))
            order_lines.extend(
                OrderLine(self.market.new_id(), item.item_id, sku.sku_id, sku.seller_sku, item.name, 1, sku.price_vnd)
                for _ in range(quantity)
            )
        now = self.market.now()
        order = Order(f"576{self.market.new_id():015d}", status, now, now, order_lines, clean_line(buyer_name))
        order.shipping_fee_vnd = shipping_fee_vnd
        order.history.append((now, status))
        if paid:
            self._package(order)
        shop.orders[order.order_id] = order
        self._push_status(shop, order)
        for item, sku in sold_out:
            self._push_inventory(shop, item, sku)
        return order.order_id

    async def set_order_status(self, shop_id: str, order_id: str, status: str) -> None:
        """Move an order on (the buyer paid, the carrier collected or delivered it…) and push type 1."""
        if status not in ORDER_STATUSES:
            raise ValueError(f"{status!r} is not a TikTok Shop order status")
        shop = self.shop(shop_id)
        order = shop.orders[order_id]
        if status == "AWAITING_SHIPMENT":
            self._package(order)
        self.market.set_status(order, status)
        self._push_status(shop, order)

    def _package(self, order: Order) -> None:
        if not any(line.package_id for line in order.lines):
            package_id = f"115{self.market.new_id():016d}"
            for line in order.lines:
                line.package_id = package_id

    # -- pushes ------------------------------------------------------------------------------------------------

    def push_body(self, shop: Shop, push_type: int, data: Mapping[str, Any]) -> bytes:
        payload = {
            "type": push_type,
            "tts_notification_id": f"73{self.market.new_id():017d}",
            "shop_id": shop.shop_id,
            "timestamp": int(self.market.now()),
            "data": dict(data),
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    def send_push(self, shop: Shop, push_type: int, data: Mapping[str, Any]) -> None:
        body = self.push_body(shop, push_type, data)
        headers = {
            "Content-Type": "application/json",
            "Authorization": webhook_signature(self.app_key, self.app_secret, body),
        }
        self.market.push(shop.callback_url, headers, body, event=f"type_{push_type}")

    def _push_status(self, shop: Shop, order: Order) -> None:
        status = "CANCEL" if order.status == "CANCELLED" else order.status
        data = {
            "order_id": order.order_id,
            "order_status": status,
            "is_on_hold_order": False,
            "update_time": int(order.updated_at),
        }
        self.send_push(shop, 1, data)

    def _push_inventory(self, shop: Shop, item: Item, sku: Sku) -> None:
        data = {
            "product_id": str(item.item_id),
            "sku_id": str(sku.sku_id),
            "current_inventory_status": "OUT_OF_STOCK",
            "inventory_distribution": [{"warehouse_id": self.warehouse_id(shop.shop_id), "quantity": 0}],
            "update_time": int(self.market.now()),
        }
        self.send_push(shop, 27, data)

    # -- the front door ----------------------------------------------------------------------------------------

    def _check(self, request: Request, raw: bytes, *, cipher: bool) -> Shop:
        """Common parameters, signature, access token and shop cipher, in TikTok's order and with its codes."""
        query = {key: value for key, value in request.query_params.items()}
        if not query.get("app_key"):
            raise TikTokError(INVALID_CREDENTIALS, "Missing app_key.", 401)
        if query["app_key"] != self.app_key:
            raise TikTokError(INVALID_CREDENTIALS, "Invalid credentials or app_key.", 401)
        if not query.get("timestamp") or not query.get("sign"):
            raise _param("timestamp and sign are required")
        try:
            timestamp = int(query["timestamp"])
        except ValueError as exc:
            raise _param("timestamp must be Unix seconds") from exc
        now = self.market.now()
        if not now - TIMESTAMP_PAST <= timestamp <= now + TIMESTAMP_FUTURE:
            raise TikTokError(INVALID_TIMESTAMP, "Invalid timestamp: it must be within [now - 300 s, now + 30 s].")
        root = request.scope.get("root_path", "")
        path = request.scope["path"]
        api_path = path[len(root) :] if root and path.startswith(root) else path
        multipart = request.headers.get("content-type", "").lower().startswith("multipart/form-data")
        expected = sign(self.app_secret, api_path, query, b"" if multipart else raw)
        if not hmac.compare_digest(query["sign"].encode(), expected.encode()):
            raise TikTokError(INVALID_SIGN, "Invalid sign.", 401)
        token = request.headers.get(ACCESS_TOKEN_HEADER) or query.get("access_token")
        if not token:
            raise TikTokError(INVALID_CREDENTIALS, "Missing access token (x-tts-access-token).", 401)
        shop = self.market.shop_for_token(token)
        if shop is None:
            raise TikTokError(INVALID_TOKEN, "Invalid access token.", 401)
        if shop.access_expires_at <= now:
            raise TikTokError(TOKEN_EXPIRED, "Access token is expired, please refresh it.", 401)
        if cipher:
            given = query.get("shop_cipher")
            if not given:
                raise _param("shop_cipher is required")
            if not hmac.compare_digest(given.encode(), self.cipher(shop.shop_id).encode()):
                raise TikTokError(INVALID_CIPHER, "Invalid shop_cipher: it names no shop this token opens.")
        return shop

    @staticmethod
    def _envelope(code: int, message: str, data: Any, status: int = 200) -> JSONResponse:
        body = {"code": code, "message": message, "request_id": secrets.token_hex(16).upper(), "data": data}
        return JSONResponse(body, status_code=status)

    def _endpoint(self, op: str, handler: Handler, *, cipher: bool = True) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = time.monotonic()
            shop: Shop | None = None
            size = 1
            try:
                raw = await request.body()
                shop = self._check(request, raw, cipher=cipher)
                try:
                    await self.market.door(op, shop)
                except Refused as refused:
                    raise self._refusal(refused) from refused
                body: dict[str, Any] = {}
                if raw and "json" in request.headers.get("content-type", ""):
                    try:
                        loaded = json.loads(raw)
                    except ValueError as exc:
                        raise _param("the body is not JSON") from exc
                    if not isinstance(loaded, dict):
                        raise _param("the body is not a JSON object")
                    body = loaded
                elif (
                    raw
                    and request.method in {"POST", "PUT"}
                    and "multipart" not in request.headers.get("content-type", "")
                ):
                    raise TikTokError(WRONG_CONTENT_TYPE, "Content-Type must be application/json.")
                size = max((len(v) for v in body.values() if isinstance(v, list)), default=1)
                data = await handler(request, body, shop)
            except TikTokError as error:
                self.market.record(op, shop, size, started, str(error.code))
                return self._envelope(error.code, error.message, None, error.status)
            self.market.record(op, shop, size, started, "ok")
            return self._envelope(OK, "Success", data)

        return endpoint

    @staticmethod
    def _refusal(refused: Refused) -> TikTokError:
        if refused.fault is Fault.throttle:
            return TikTokError(TOO_MANY_REQUESTS, "Too many requests.", 429)
        if refused.fault is Fault.timeout:
            return TikTokError(GATEWAY_TIMEOUT, "Request timeout.", 504)
        return TikTokError(SERVER_ERROR, "Service is temporarily unavailable (server protection).", 503)

    def _routes(self) -> list[Route]:
        products = "/product/202309/products"
        api: list[tuple[str, str, Handler, bool]] = [
            ("GET", "/authorization/202309/shops", self._shops, False),
            ("POST", "/product/202309/images/upload", self._upload_image, False),
            ("POST", f"{products}/activate", self._activate, True),
            ("POST", f"{products}/deactivate", self._deactivate, True),
            ("POST", products, self._create_product, True),
            ("GET", f"{products}/{{product_id}}", self._get_product, True),
            ("PUT", f"{products}/{{product_id}}", self._edit_product, True),
            ("POST", f"{products}/{{product_id}}/inventory/update", self._update_inventory, True),
            ("POST", f"{products}/{{product_id}}/prices/update", self._update_prices, True),
            ("GET", "/logistics/202309/warehouses", self._warehouses, True),
            ("POST", "/order/202309/orders/search", self._search_orders, True),
            ("GET", "/order/202309/orders", self._order_detail, True),
            ("POST", "/fulfillment/202309/packages/{package_id}/ship", self._ship_package, True),
            ("POST", "/return_refund/202309/cancellations", self._cancel_order, True),
        ]
        routes = [
            Route(path, self._endpoint(path, handler, cipher=cipher), methods=[method])
            for method, path, handler, cipher in api
        ]
        routes += [
            Route("/auth/api/v2/token/get", self._token_get, methods=["GET"]),
            Route("/auth/api/v2/token/refresh", self._token_refresh, methods=["GET"]),
            Route("/services/open/authorize", self._authorize, methods=["GET"]),
            Route("/sandbox/images/{image_id}", self._image, methods=["GET"]),
            Route("/sandbox/shops/{shop_id}", self._shop_page, methods=["GET"]),
            Route("/sandbox/shops/{shop_id}/orders", self._order_form, methods=["POST"]),
        ]
        return routes

    # -- shops, warehouses, images -------------------------------------------------------------------------------

    async def _shops(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        entry = {
            "id": shop.shop_id,
            "name": shop.name,
            "region": "VN",
            "seller_type": "LOCAL",
            "cipher": self.cipher(shop.shop_id),
            "code": f"VNLC{shop.shop_id[-6:]}",
        }
        return {"shops": [entry]}

    async def _warehouses(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        address = {"region": "Vietnam", "city": "Hà Nội", "full_address": "Hà Nội, Việt Nam"}
        return {
            "warehouses": [
                {
                    "id": self.warehouse_id(shop.shop_id),
                    "name": f"Kho {shop.name}",
                    "effect_status": "ENABLED",
                    "type": "SALES_WAREHOUSE",
                    "sub_type": "DOMESTIC_WAREHOUSE",
                    "is_default": True,
                    "address": address,
                },
                {
                    "id": f"73{shop.shop_id[-16:]}",
                    "name": "Kho trả hàng",
                    "effect_status": "ENABLED",
                    "type": "RETURN_WAREHOUSE",
                    "sub_type": "DOMESTIC_WAREHOUSE",
                    "is_default": True,
                    "address": address,
                },
            ]
        }

    @staticmethod
    def _uri(image_id: str) -> str:
        return f"tos-alisg-i-sandbox-vn/{image_id}"

    async def _upload_image(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise TikTokError(WRONG_CONTENT_TYPE, "Content-Type must be multipart/form-data.")
        async with request.form() as form:
            upload = form.get("data")
            use_case = str(form.get("use_case") or "MAIN_IMAGE")
            data = await upload.read() if isinstance(upload, UploadFile) else None
        if data is None:
            raise _param("data (the image file) is required")
        if use_case not in {
            "MAIN_IMAGE",
            "ATTRIBUTE_IMAGE",
            "DESCRIPTION_IMAGE",
            "CERTIFICATION_IMAGE",
            "SIZE_CHART_IMAGE",
        }:
            raise _param(f"use_case {use_case!r} is not one of TikTok's")
        if len(data) > MAX_IMAGE_BYTES:
            raise TikTokError(FILE_TOO_LARGE, "The file is too large: at most 10 MB.")
        try:
            with PILImage.open(io.BytesIO(data)) as picture:
                kind, (width, height) = str(picture.format), picture.size
        except (UnidentifiedImageError, OSError) as exc:
            raise _refused("The image must be JPG, JPEG, PNG, WEBP, HEIC or BMP.") from exc
        if kind not in IMAGE_FORMATS:
            raise _refused("The image must be JPG, JPEG, PNG, WEBP, HEIC or BMP.")
        low, high = (300, 4000) if use_case == "MAIN_IMAGE" else (100, 20000)
        if min(width, height) < low or max(width, height) > high:
            raise _refused(f"Each side of a {use_case} must be between {low} and {high} px.")
        base = own_base_url(request)
        image = self.market.store_image(data, IMAGE_FORMATS[kind], lambda i: f"{base}sandbox/images/{i}")
        return {
            "uri": self._uri(image.image_id),
            "url": image.url,
            "width": width,
            "height": height,
            "use_case": use_case,
        }

    def _image_id(self, uri: Any) -> str:
        image_id = str(uri or "").rsplit("/", 1)[-1]
        if image_id not in self.market.images:
            raise _refused(f"The image uri {uri!r} was not uploaded to TikTok Shop.")
        return image_id

    async def _image(self, request: Request) -> Response:
        return image_response(self.market, request.path_params["image_id"], cache_control="public, max-age=86400")

    # -- products ----------------------------------------------------------------------------------------------

    @staticmethod
    def _product(shop: Shop, product_id: Any) -> Item:
        try:
            item = shop.items.get(int(str(product_id)))
        except ValueError:
            item = None
        if item is None or item.status == "DELETED":
            raise TikTokError(PRODUCT_NOT_FOUND, f"Product {product_id} does not exist.")
        return item

    def _content(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Title, description, category, images and weight of a create or edit, checked."""
        title = clean_line(str(body.get("title") or ""))
        if not TITLE_MIN <= len(title) <= TITLE_MAX:
            raise _refused(f"The title must be {TITLE_MIN}-{TITLE_MAX} characters long (it is {len(title)}).")
        description = clean_text(str(body.get("description") or ""))
        if not description:
            raise _param("description is required")
        if len(description) > DESCRIPTION_MAX:
            raise _refused(f"The description must be at most {DESCRIPTION_MAX} characters.")
        category = str(body.get("category_id") or "")
        if not category.isdigit():
            raise _param("category_id must be a leaf category id")
        images = body.get("main_images")
        if not isinstance(images, list) or not images:
            raise _param("main_images is required")
        if len(images) > MAX_IMAGES:
            raise _refused(f"At most {MAX_IMAGES} main images.")
        image_ids = [self._image_id(i.get("uri") if isinstance(i, Mapping) else None) for i in images]
        weight = body.get("package_weight")
        if not isinstance(weight, Mapping) or weight.get("unit") not in {"KILOGRAM", "POUND"}:
            raise _param("package_weight {value, unit: KILOGRAM|POUND} is required")
        try:
            if Decimal(str(weight.get("value"))) <= 0:
                raise _refused("package_weight.value must be positive.")
        except InvalidOperation as exc:
            raise _param("package_weight.value must be a number string") from exc
        return {
            "title": title,
            "description": description,
            "category": category,
            "image_ids": image_ids,
            "attributes": {"package_weight": dict(weight), "brand_id": body.get("brand_id")},
        }

    def _inventory(self, shop: Shop, inventory: Any) -> int:
        if not isinstance(inventory, list) or not inventory:
            raise _param("inventory [{warehouse_id, quantity}] is required")
        total = 0
        for entry in inventory:
            if not isinstance(entry, Mapping) or str(entry.get("warehouse_id")) != self.warehouse_id(shop.shop_id):
                raise _refused(
                    f"Warehouse {entry.get('warehouse_id') if isinstance(entry, Mapping) else entry} does not exist."
                )
            quantity = _int(entry.get("quantity"), "inventory.quantity")
            if not 0 <= quantity <= MAX_QUANTITY:
                raise _refused(f"inventory.quantity must be between 0 and {MAX_QUANTITY}.")
            total += quantity
        return total

    @staticmethod
    def _attribute_value(raw: Mapping[str, Any]) -> str | None:
        attributes = raw.get("sales_attributes") or []
        if not isinstance(attributes, list):
            raise _param("sales_attributes must be a list")
        if len(attributes) > 3:
            raise _refused("At most 3 sales attributes.")
        values: list[str] = []
        for attribute in attributes:
            if not isinstance(attribute, Mapping):
                raise _param("a sales attribute must be an object")
            name = clean_line(str(attribute.get("name") or attribute.get("id") or ""))
            value = clean_line(str(attribute.get("value_name") or attribute.get("value_id") or ""))
            if not name or not value:
                raise _param("a sales attribute needs an id or name and a value_id or value_name")
            if len(name) > 20 or len(value) > 50:
                raise _refused("A sales attribute name is at most 20 characters, its value at most 50.")
            values.append(value)
        return " / ".join(values) if values else None

    def _plan_skus(self, shop: Shop, item: Item | None, raw_skus: Any) -> list[tuple[Sku | None, dict[str, Any]]]:
        """Every SKU of a create or edit checked before anything changes: (existing SKU or None, new values)."""
        if not isinstance(raw_skus, list) or not raw_skus:
            raise _param("skus is required")
        if len(raw_skus) > MAX_SKUS:
            raise _refused(f"At most {MAX_SKUS} SKUs per product.")
        plan: list[tuple[Sku | None, dict[str, Any]]] = []
        seen_skus: set[str] = set()
        seen_values: set[str | None] = set()
        for raw in raw_skus:
            if not isinstance(raw, Mapping):
                raise _param("a SKU must be an object")
            existing: Sku | None = None
            if raw.get("id"):
                if item is None:
                    raise _param("a new product's SKUs have no id")
                existing = item.skus.get(_int(raw["id"], "skus.id"))
                if existing is None:
                    raise TikTokError(SKU_NOT_FOUND, f"SKU {raw['id']} does not belong to product {item.item_id}.")
            seller_sku = clean_line(str(raw.get("seller_sku") or (existing.seller_sku if existing else "")))
            if not 1 <= len(seller_sku) <= 50 or " " in seller_sku:
                raise _refused("seller_sku must be 1-50 characters without spaces.")
            if seller_sku in seen_skus:
                raise _refused(f"seller_sku {seller_sku} appears twice.")
            seen_skus.add(seller_sku)
            owner = shop.by_seller_sku(seller_sku)
            if owner is not None and (item is None or owner[0].item_id != item.item_id):
                raise _refused(f"seller_sku {seller_sku} is already used by product {owner[0].item_id}.")
            value = self._attribute_value(raw)
            if value in seen_values:
                raise _refused("Each SKU of a product needs its own sales attribute values.")
            seen_values.add(value)
            values: dict[str, Any] = {"seller_sku": seller_sku, "value": value}
            if raw.get("price") is not None or existing is None:
                values["price"] = _amount(raw.get("price"), "price")
            if raw.get("inventory") is not None or existing is None:
                values["stock"] = self._inventory(shop, raw.get("inventory"))
            plan.append((existing, values))
        if len(plan) > 1 and None in seen_values:
            raise _refused("A product with several SKUs needs sales attributes on every SKU.")
        return plan

    @staticmethod
    def _sku_answer(item: Item) -> list[dict[str, Any]]:
        return [{"id": str(s.sku_id), "seller_sku": s.seller_sku, "sales_attributes": []} for s in item.skus.values()]

    def _apply(self, item: Item, plan: list[tuple[Sku | None, dict[str, Any]]]) -> None:
        keep: set[int] = set()
        for existing, values in plan:
            if existing is None:
                existing = Sku(self.market.new_id(), values["seller_sku"], "", values["price"], values["stock"])
                item.skus[existing.sku_id] = existing
            existing.seller_sku = values["seller_sku"]
            existing.name = values["value"] or ""
            existing.price_vnd = values.get("price", existing.price_vnd)
            existing.stock = values.get("stock", existing.stock)
            keep.add(existing.sku_id)
        for sku_id in [i for i in item.skus if i not in keep]:  # Edit Product: SKUs left out are deleted
            del item.skus[sku_id]

    async def _create_product(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        key = body.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 128):
            raise _param("idempotency_key must be 1-128 characters")
        known = self.idempotency.get(f"{shop.shop_id}:{key}") if key else None
        if known is not None and known in shop.items:
            item = shop.items[known]
            return {"product_id": str(item.item_id), "skus": self._sku_answer(item), "warnings": []}
        content = self._content(body)
        plan = self._plan_skus(shop, None, body.get("skus"))
        now = self.market.now()
        item = Item(
            self.market.new_id(),
            content["title"],
            content["description"],
            content["category"],
            "ACTIVATE",  # the sandbox's audit passes at once
            content["image_ids"],
            attributes=content["attributes"],
            created_at=now,
            updated_at=now,
        )
        self._apply(item, plan)
        shop.items[item.item_id] = item
        if key:
            self.idempotency[f"{shop.shop_id}:{key}"] = item.item_id
        return {"product_id": str(item.item_id), "skus": self._sku_answer(item), "warnings": []}

    async def _edit_product(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        item = self._product(shop, request.path_params["product_id"])
        if item.status == "FREEZE":
            raise _refused("A frozen product cannot be edited.")
        content = self._content(body)
        plan = self._plan_skus(shop, item, body.get("skus"))
        item.name, item.description, item.category_id = content["title"], content["description"], content["category"]
        item.image_ids = content["image_ids"]
        item.attributes.update(content["attributes"])
        self._apply(item, plan)
        item.updated_at = self.market.now()
        return {"product_id": str(item.item_id), "skus": self._sku_answer(item), "warnings": []}

    async def _get_product(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        item = self._product(shop, request.path_params["product_id"])
        warehouse = self.warehouse_id(shop.shop_id)
        return {
            "id": str(item.item_id),
            "status": item.status,
            "title": item.name,
            "description": item.description,
            "category_chains": [{"id": item.category_id, "is_leaf": True}],
            "main_images": [
                {"uri": self._uri(i), "urls": [self.market.images[i].url]}
                for i in item.image_ids
                if i in self.market.images
            ],
            "package_weight": item.attributes.get("package_weight"),
            "skus": [
                {
                    "id": str(s.sku_id),
                    "seller_sku": s.seller_sku,
                    "price": {"amount": str(s.price_vnd), "currency": "VND", "sale_price": str(s.price_vnd)},
                    "inventory": [{"warehouse_id": warehouse, "quantity": s.stock}],
                    "sales_attributes": [{"name": "Quy cách", "value_name": s.name}] if s.name else [],
                }
                for s in item.skus.values()
            ],
            "create_time": int(item.created_at),
            "update_time": int(item.updated_at),
        }

    def _set_status(self, shop: Shop, body: Mapping[str, Any], status: str, allowed: set[str]) -> dict[str, Any]:
        ids = body.get("product_ids")
        if not isinstance(ids, list) or not ids:
            raise _param("product_ids is required")
        if len(ids) > MAX_PRODUCT_IDS:
            raise _param(f"at most {MAX_PRODUCT_IDS} product_ids per call")
        errors: list[dict[str, Any]] = []
        for product_id in ids:
            try:
                item = self._product(shop, product_id)
                if item.status not in allowed | {status}:
                    raise _refused(f"A product in status {item.status} cannot become {status}.")
            except TikTokError as error:
                errors.append({"code": error.code, "message": error.message, "detail": {"product_id": str(product_id)}})
                continue
            item.status = status
            item.updated_at = self.market.now()
        return {"errors": errors} if errors else {}

    async def _activate(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        return self._set_status(shop, body, "ACTIVATE", {"SELLER_DEACTIVATED"})

    async def _deactivate(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        return self._set_status(shop, body, "SELLER_DEACTIVATED", {"ACTIVATE"})

    def _sku_updates(
        self, request: Request, body: Mapping[str, Any], shop: Shop
    ) -> list[tuple[Sku, Mapping[str, Any]]]:
        item = self._product(shop, request.path_params["product_id"])
        if item.status != "ACTIVATE":
            raise _refused(f"The product is {item.status}: only an ACTIVATE product can be updated.")
        skus = body.get("skus")
        if not isinstance(skus, list) or not skus:
            raise _param("skus is required")
        if len(skus) > MAX_SKUS:
            raise _param(f"at most {MAX_SKUS} skus per call")
        found: list[tuple[Sku, Mapping[str, Any]]] = []
        for raw in skus:
            if not isinstance(raw, Mapping) or not raw.get("id"):
                raise _param("each sku needs its id")
            sku = item.skus.get(_int(raw["id"], "skus.id"))
            if sku is None:
                raise TikTokError(SKU_NOT_FOUND, f"SKU {raw['id']} does not belong to product {item.item_id}.")
            found.append((sku, raw))
        item.updated_at = self.market.now()
        return found

    async def _update_inventory(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        planned = [
            (sku, self._inventory(shop, raw.get("inventory"))) for sku, raw in self._sku_updates(request, body, shop)
        ]
        for sku, quantity in planned:
            sku.stock = quantity
        return {}

    async def _update_prices(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        planned = [(sku, _amount(raw.get("price"), "price")) for sku, raw in self._sku_updates(request, body, shop)]
        for sku, price in planned:
            sku.price_vnd = price
        return {}

    # -- orders ------------------------------------------------------------------------------------------------

    def _order_view(self, shop: Shop, order: Order) -> dict[str, Any]:
        subtotal = sum(line.quantity * line.unit_price_vnd for line in order.lines)
        packages = list(dict.fromkeys(line.package_id for line in order.lines if line.package_id))
        line_items = []
        for line in order.lines:
            found = shop.sku(line.sku_id) if line.sku_id is not None else None
            entry: dict[str, Any] = {
                "id": str(line.line_id),
                "sku_id": str(line.sku_id),
                "product_id": str(line.item_id),
                "seller_sku": line.seller_sku,
                "product_name": line.name,
                "sku_name": found[1].name if found else "",
                "original_price": str(line.unit_price_vnd),
                "sale_price": str(line.unit_price_vnd),
                "platform_discount": "0",
                "seller_discount": "0",
                "currency": "VND",
                "display_status": order.status,
                "package_id": line.package_id or "",
                "package_status": PACKAGE_STATUS.get(order.status, ""),
            }
            if order.tracking_number:
                entry["tracking_number"] = order.tracking_number
            if order.cancel_reason:
                entry["cancel_reason"] = order.cancel_reason
            line_items.append(entry)
        view: dict[str, Any] = {
            "id": order.order_id,
            "status": order.status,
            "create_time": int(order.created_at),
            "update_time": int(order.updated_at),
            "shipping_type": "TIKTOK",
            "user_id": f"70{int(hashlib.sha256(order.buyer_name.encode()).hexdigest()[:12], 16):016d}",
            "buyer_email": f"buyer{order.order_id[-6:]}@chat.seller.tiktok.com",
            "recipient_address": {"name": order.buyer_name, "region_code": "VN", "full_address": "Hà Nội, Việt Nam"},
            "payment": {
                "currency": "VND",
                "sub_total": str(subtotal),
                "shipping_fee": str(order.shipping_fee_vnd),
                "seller_discount": "0",
                "platform_discount": "0",
                "original_total_product_price": str(subtotal),
                "original_shipping_fee": str(order.shipping_fee_vnd),
                "total_amount": str(order.total_vnd),
            },
            "line_items": line_items,
            "packages": [{"id": package} for package in packages],
            "is_cod": False,
        }
        if order.cancel_reason:
            view["cancel_reason"] = order.cancel_reason
            view["cancellation_initiator"] = "SELLER"
        if order.tracking_number:
            view["tracking_number"] = order.tracking_number
        return view

    async def _search_orders(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        query = request.query_params
        if not query.get("page_size"):
            raise _param("page_size is required")
        page_size = _int(query["page_size"], "page_size")
        if not 1 <= page_size <= MAX_PAGE:
            raise _param(f"page_size must be between 1 and {MAX_PAGE}")
        sort_field = query.get("sort_field", "create_time")
        if sort_field not in {"create_time", "update_time"}:
            raise _param("sort_field must be create_time or update_time")
        sort_order = query.get("sort_order", "DESC")
        if sort_order not in {"ASC", "DESC"}:
            raise _param("sort_order must be ASC or DESC")
        bounds = {
            name: _int(body[name], name)
            for name in ("create_time_ge", "create_time_lt", "update_time_ge", "update_time_lt")
            if body.get(name) is not None
        }
        status = body.get("order_status")

        def within(value: float, field: str) -> bool:
            low, high = bounds.get(f"{field}_ge"), bounds.get(f"{field}_lt")
            return (low is None or value >= low) and (high is None or value < high)

        matching = [
            o
            for o in shop.orders.values()
            if within(o.created_at, "create_time")
            and within(o.updated_at, "update_time")
            and (not status or o.status == status)
        ]
        matching.sort(
            key=lambda o: (getattr(o, "updated_at" if sort_field == "update_time" else "created_at"), o.order_id),
            reverse=sort_order == "DESC",
        )
        offset = _offset(query["page_token"]) if query.get("page_token") else 0
        page = matching[offset : offset + page_size]
        after = offset + len(page)
        return {
            "orders": [self._order_view(shop, o) for o in page],
            "next_page_token": _token(after) if after < len(matching) else "",
            "total_count": len(matching),
        }

    async def _order_detail(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        ids = [i for i in (request.query_params.get("ids") or "").split(",") if i]
        if not ids:
            raise _param("ids is required")
        if len(ids) > MAX_ORDER_IDS:
            raise _param(f"at most {MAX_ORDER_IDS} ids per call")
        return {"orders": [self._order_view(shop, shop.orders[i]) for i in dict.fromkeys(ids) if i in shop.orders]}

    def _order(self, shop: Shop, order_id: Any) -> Order:
        order = shop.orders.get(str(order_id or ""))
        if order is None:
            raise TikTokError(ORDER_NOT_FOUND, f"Order {order_id} does not exist.")
        return order

    async def _ship_package(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        package_id = request.path_params["package_id"]
        order = next((o for o in shop.orders.values() if any(line.package_id == package_id for line in o.lines)), None)
        if order is None:
            raise TikTokError(ORDER_NOT_FOUND, f"Package {package_id} does not exist.")
        if order.status != "AWAITING_SHIPMENT":
            raise TikTokError(ORDER_REFUSED, f"The package cannot be shipped: its order is {order.status}.")
        self_shipment = body.get("self_shipment")
        if self_shipment is not None:
            if (
                not isinstance(self_shipment, Mapping)
                or not self_shipment.get("tracking_number")
                or not self_shipment.get("shipping_provider_id")
            ):
                raise _param("self_shipment needs tracking_number and shipping_provider_id")
            order.tracking_number = str(self_shipment["tracking_number"])
        else:
            if body.get("handover_method", "PICKUP") not in {"PICKUP", "DROP_OFF"}:
                raise _param("handover_method must be PICKUP or DROP_OFF")
            order.tracking_number = f"TTVN{self.market.new_id():010d}"
        self.market.set_status(order, "AWAITING_COLLECTION")
        self._push_status(shop, order)
        return {}

    async def _cancel_order(self, request: Request, body: dict[str, Any], shop: Shop | None) -> dict[str, Any]:
        assert shop is not None
        order = self._order(shop, body.get("order_id"))
        reason = str(body.get("cancel_reason") or "")
        if order.status == "UNPAID":
            allowed = CANCEL_REASONS_UNPAID
        elif order.status in {"ON_HOLD", "AWAITING_SHIPMENT"}:
            allowed = CANCEL_REASONS_PAID
        else:
            raise TikTokError(ORDER_REFUSED, f"The seller cannot cancel an order that is {order.status}.")
        if reason not in allowed:
            raise _param(f"cancel_reason {reason!r} is not allowed for an order that is {order.status}")
        for line in order.lines:
            if line.sku_id is not None and (found := shop.sku(line.sku_id)) is not None:
                found[1].stock += line.quantity  # a cancelled unit is on sale again
        order.cancel_reason = reason
        self.market.set_status(order, "CANCELLED")
        self._push_status(shop, order)
        return {"cancel_id": f"578{self.market.new_id():015d}", "cancel_status": "CANCELLATION_REQUEST_COMPLETE"}

    # -- tokens and the authorisation page ---------------------------------------------------------------------

    def _token_data(self, shop: Shop) -> dict[str, Any]:
        return {
            "access_token": shop.access_token,
            "access_token_expire_in": math.floor(shop.access_expires_at),
            "refresh_token": shop.refresh_token,
            "refresh_token_expire_in": math.floor(shop.refresh_expires_at),
            "open_id": f"open-{shop.shop_id}",
            "seller_name": shop.name,
            "seller_base_region": "VN",
            "user_type": 0,
            "granted_scopes": ["seller.product.basic", "seller.order.info", "seller.fulfillment.basic"],
        }

    def _check_app(self, request: Request, grant_type: str) -> dict[str, str]:
        query = dict(request.query_params)
        if query.get("app_key") != self.app_key or not hmac.compare_digest(
            (query.get("app_secret") or "").encode(), self.app_secret.encode()
        ):
            raise TikTokError(INVALID_CREDENTIALS, "Invalid credentials or app_key.", 401)
        if query.get("grant_type") != grant_type:
            raise _param(f"grant_type must be {grant_type}")
        return query

    async def _token_get(self, request: Request) -> Response:
        try:
            query = self._check_app(request, "authorized_code")
            found = self.codes.pop(query.get("auth_code") or "", None)
            if found is None or found[1] <= self.market.now() or found[0] not in self.market.shops:
                raise TikTokError(INVALID_GRANT, "The auth_code is invalid, used or expired.")
            shop = self.market.shops[found[0]]
            self.market.issue_tokens(shop, access_ttl=ACCESS_TTL, refresh_ttl=REFRESH_TTL)
        except TikTokError as error:
            return self._envelope(error.code, error.message, None, error.status)
        return self._envelope(OK, "success", self._token_data(shop))

    async def _token_refresh(self, request: Request) -> Response:
        try:
            query = self._check_app(request, "refresh_token")
            token = query.get("refresh_token") or ""
            shop = next(
                (s for s in self.market.shops.values() if token and secrets.compare_digest(s.refresh_token, token)),
                None,
            )
            if shop is None or shop.refresh_expires_at <= self.market.now():
                raise TikTokError(INVALID_GRANT, "The refresh_token is invalid or expired.")
            shop.used_refresh_tokens.add(token)
            self.market.issue_tokens(shop, access_ttl=ACCESS_TTL, refresh_ttl=REFRESH_TTL)
        except TikTokError as error:
            return self._envelope(error.code, error.message, None, error.status)
        return self._envelope(OK, "success", self._token_data(shop))

    async def _authorize(self, request: Request) -> Response:
        """The seller's consent page: pick a shop (or name a new one), go back to the app's redirect URL with a
        one-time code and the ``state`` given."""
        query = request.query_params
        if query.get("service_id") != self.service_id:
            return HTMLResponse("<p>Unknown service_id.</p>", status_code=400)
        if not self.redirect_url:
            return HTMLResponse("<p>The app has no redirect URL registered.</p>", status_code=400)
        shop_id = query.get("shop_id")
        if query.get("shop_name"):
            shop_id = self.add_shop(query["shop_name"])["shop_id"]
        state = {"state": query["state"]} if query.get("state") else {}
        if query.get("deny"):
            return RedirectResponse(self._back(self.redirect_url, {"error": "auth_denied", **state}), status_code=302)
        if shop_id in self.market.shops:
            code = secrets.token_urlsafe(24)
            self.codes[code] = (shop_id, self.market.now() + CODE_TTL)
            return RedirectResponse(self._back(self.redirect_url, {"code": code, **state}), status_code=302)
        esc = html.escape
        hidden = "".join(
            f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
            for k, v in query.multi_items()
            if k not in {"shop_id", "shop_name"}
        )
        choices = "".join(
            f'<label><input type="radio" name="shop_id" value="{esc(s.shop_id)}"> {esc(s.name)}</label><br>'
            for s in self.market.shops.values()
        )
        return HTMLResponse(
            "<!doctype html><html lang=vi><meta charset=utf-8><title>TikTok Shop sandbox · authorise</title>"
            f"<h1>Authorise service {esc(self.service_id)}</h1><form method=get>{hidden}{choices}"
            "<p>or a new shop: <input name=shop_name placeholder='Vườn bưởi Tân Triều'></p>"
            "<button type=submit>Authorise</button></form></html>"
        )

    @staticmethod
    def _back(url: str, extra: Mapping[str, str]) -> str:
        return f"{url}{'&' if '?' in url else '?'}{urlencode(extra)}"

    # -- the shop's page ---------------------------------------------------------------------------------------

    def _links(self, request: Request, shop: Shop) -> PageLinks:
        base = own_base_url(request)
        return PageLinks(
            image_url=lambda image_id: f"{base}sandbox/images/{image_id}",
            order_form_action=f"{base}sandbox/shops/{shop.shop_id}/orders",
        )

    async def _shop_page(self, request: Request) -> Response:
        shop = self.market.shops.get(request.path_params["shop_id"])
        if shop is None:
            return HTMLResponse("<p>No such shop in this sandbox.</p>", status_code=404)
        page = shop_page(self.market, shop, self._links(request, shop), title="TikTok Shop", accent="#fe2c55")
        return HTMLResponse(page)

    async def _order_form(self, request: Request) -> Response:
        """The page's "buy 1" button: a paid order, exactly as :meth:`place_order` makes one, push included."""
        shop = self.market.shops.get(request.path_params["shop_id"])
        if shop is None:
            return HTMLResponse("<p>No such shop in this sandbox.</p>", status_code=404)
        async with request.form() as form:
            seller_sku = str(form.get("seller_sku") or "")
        try:
            await self.place_order(shop.shop_id, [(seller_sku, 1)])
        except KeyError:
            return HTMLResponse("<p>This shop does not sell that SKU.</p>", status_code=404)
        return RedirectResponse(f"{own_base_url(request)}sandbox/shops/{shop.shop_id}", status_code=303)
