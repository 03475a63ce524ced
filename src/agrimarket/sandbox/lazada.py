"""A faithful stand-in for the Lazada Open Platform: its gateway's paths, parameters, signature checks, envelopes,
limits and error codes, its authorisation host, and signed push messages, over a :class:`~.core.Marketplace`.

One ASGI app serves both hosts:

- ``/rest/...``: the API gateway (give the adapter ``api_url = <base>/rest``);
- ``/auth/oauth/authorize`` and ``/auth/rest/auth/token/create|refresh``: the auth host (``auth_url = <base>/auth``);
- ``/images/{id}``: uploaded images; ``/sandbox/shops/{seller_id}``: the shop's page, with a form to buy.

Mounted under a prefix (``app.mount("/sandbox/lazada", sandbox.app)``) the signature is checked over the path below
the mount, as the adapter signs it below its ``api_url``.

Where the platform's behaviour is not published (UNCONFIRMED in ``marketplaces.md``) the sandbox chooses:

- every error, throttling included, is an HTTP 200 carrying Lazada's error envelope (the gateway's habit); only an
  injected fault answers 500 (``InternalError``, type SYSTEM) or 504 (``ServiceTimeout``);
- a wrong signature is ``IncompleteSignature``; a timestamp more than 7,200 s off is ``InvalidTimestamp``; an unknown
  app key ``InvalidAppKey``; a bad or missing parameter ``MissingParameter`` / ``InvalidParameter``; an unknown
  item ``ITEM_NOT_FOUND``, an unknown SKU ``SKU_NOT_FOUND``; an unknown order ``16`` ("E016: Invalid Order ID");
- images: at most 1 MB (the UploadImage page's figure, stricter than the guide's 3 MB), JPEG or PNG, 330-5,000 px;
- payloads are JSON only (the platform takes XML too); ``/orders/items/get`` takes at most 50 order ids;
- per-SKU refusals in the stock and price updates come back in ``detail`` beside ``code: "0"``; the others apply;
- authorisation codes are one-time and live 30 minutes; a refresh token is single-use (it rotates);
- one order item per unit bought, as on Lazada; a seller may cancel items not yet ready to ship.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import io
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
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

from agrimarket.channels.lazada.signing import push_signature, sign
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
    buy_from_page,
    image_response,
    own_base_url,
    shop_page,
)

SANDBOX_APP_KEY = "100001"
SANDBOX_APP_SECRET = "sandbox-lazada-app-secret"  # noqa: S105 - the sandbox's own app, public by design
ACCESS_TTL = 30 * 86_400  # an online app's token lives 30 days, its refresh token 180 (articleId=121098)
REFRESH_TTL = 180 * 86_400
CODE_TTL = 30 * 60
TIMESTAMP_SKEW_MS = 7_200_000
MAX_SKUS = 50
MAX_ORDERS_PAGE = 100
MAX_ORDER_IDS = 50
MAX_PACK = 20
MAX_IMAGES = 8
MAX_IMAGE_BYTES = 1024 * 1024
VN = timezone(timedelta(hours=7))
LIVE_ITEM = frozenset({"unpaid", "pending", "topack", "repacked", "packed", "ready_to_ship", "shipped"})
SELLER_CANCELLABLE = frozenset({"unpaid", "pending", "topack", "repacked", "packed"})
CANCEL_REASONS = (
    {"reason_id": "10000", "reason_name": "Out of stock"},
    {"reason_id": "10001", "reason_name": "Wrong price"},
)


class LazadaError(Exception):
    """An answer in Lazada's error envelope."""

    def __init__(self, code: str, message: str, *, type_: str = "ISV", status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.type = type_
        self.status = status


def _missing(name: str) -> LazadaError:
    return LazadaError(
        "MissingParameter",
        f'The input parameter "{name}" that is mandatory for processing this request is not supplied.',
    )


def _invalid(name: str, why: str) -> LazadaError:
    return LazadaError("InvalidParameter", f'The specified parameter "{name}" is not valid: {why}')


def _money(vnd: int) -> str:
    return f"{vnd}.00"


def _lazada_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, VN).strftime("%Y-%m-%d %H:%M:%S %z")


def _iso_param(params: Mapping[str, str], name: str) -> float | None:
    value = params.get(name)
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _invalid(name, "expected ISO 8601, e.g. 2024-05-01T09:30:00+07:00") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=VN)).timestamp()


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise _invalid(name, "expected a whole number")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise _invalid(name, "expected a number") from exc
    if number != int(number):
        raise _invalid(name, "expected a whole number")
    return int(number)


def _json_param(params: Mapping[str, str], name: str) -> Any:
    if not params.get(name):
        raise _missing(name)
    try:
        return json.loads(params[name])
    except ValueError as exc:
        raise _invalid(name, "it is not valid JSON") from exc


def _product(params: Mapping[str, str], name: str = "payload") -> dict[str, Any]:
    body = _json_param(params, name)
    product = body.get("Request", {}).get("Product") if isinstance(body, dict) else None
    if not isinstance(product, dict):
        raise _invalid(name, "expected {'Request': {'Product': {...}}}")
    return product


def _listed(container: Any, key: str) -> list[Any]:
    """``{"Sku": [...]}`` or ``{"Sku": {...}}``: Lazada's payloads, translated from XML, take one or many."""
    if not isinstance(container, dict):
        return []
    value = container.get(key)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


@dataclass
class _Code:
    seller_id: str
    expires_at: float


@dataclass
class _Call:
    """One gateway call: its verified parameters, files, shop and the app's base URL (for image addresses)."""

    params: dict[str, str]
    files: dict[str, tuple[bytes, str]]
    shop: Shop | None
    base_url: str
    size: int = 1


Handler = Callable[["LazadaSandbox", _Call], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class _Api:
    handler: Handler
    needs_token: bool = True


class LazadaSandbox:
    """The sandbox and its Python handle. ``app`` is the ASGI app; ``market`` the state under it.

    ``http``: the client pushes are sent with (tests pass one on an ``ASGITransport`` to the app under test).
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Clock = time.time,
        app_key: str = SANDBOX_APP_KEY,
        app_secret: str = SANDBOX_APP_SECRET,
        http: httpx.AsyncClient | None = None,
        access_ttl: float = ACCESS_TTL,
        refresh_ttl: float = REFRESH_TTL,
    ) -> None:
        self.market = Marketplace("lazada", config, clock=clock, http=http)
        self.app_key = app_key
        self.app_secret = app_secret
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._codes: dict[str, _Code] = {}
        self.app = Starlette(
            routes=[
                Route("/rest/{api:path}", self._gateway, methods=["GET", "POST"]),
                Route("/auth/rest/{api:path}", self._gateway, methods=["GET", "POST"]),
                Route("/auth/oauth/authorize", self._authorize, methods=["GET"]),
                Route("/images/{image_id}", self._image, methods=["GET"]),
                Route("/sandbox/shops/{seller_id}", self._shop_page, methods=["GET"]),
                Route("/sandbox/shops/{seller_id}/orders", self._buy, methods=["POST"]),
            ]
        )

    # -- the Python façade ---------------------------------------------------------------------------------

    def add_shop(self, name: str, *, callback_url: str | None = None) -> dict[str, Any]:
        """A new seller, already authorised: the credentials a Lazada connection stores."""
        shop = self.market.add_shop(
            str(self.market.new_id()), clean_line(name), access_ttl=self.access_ttl, refresh_ttl=self.refresh_ttl
        )
        shop.callback_url = callback_url
        return self.credentials(shop.shop_id)

    def credentials(self, seller_id: str) -> dict[str, Any]:
        """The shop's current credentials (after a refresh too)."""
        shop = self.market.shops[seller_id]
        return {
            "app_key": self.app_key,
            "app_secret": self.app_secret,
            "access_token": shop.access_token,
            "refresh_token": shop.refresh_token,
            "seller_id": shop.shop_id,
            "country": "vn",
            "access_expires_at": datetime.fromtimestamp(shop.access_expires_at, VN).isoformat(),
            "refresh_expires_at": datetime.fromtimestamp(shop.refresh_expires_at, VN).isoformat(),
        }

    def snapshot(self) -> bytes:
        """The shops, items, orders and images, to :meth:`restore` after a restart (the demo keeps them)."""
        return self.market.snapshot()

    def restore(self, data: bytes) -> None:
        self.market.restore(data)

    def set_callback(self, seller_id: str, url: str | None) -> None:
        """Where the shop's push messages go (the app's callback URL in the Lazada console)."""
        self.market.shops[seller_id].callback_url = url

    async def place_order(
        self,
        seller_id: str,
        lines: Sequence[tuple[str, int]],
        *,
        paid: bool = True,
        buyer_name: str = "Nguyễn Thị Lan",
        shipping_fee_vnd: int = 0,
    ) -> Order:
        """A buyer orders ``[(seller_sku, quantity)]``: the sandbox's stock goes down (never below zero: Lazada may
        oversell us), one order item per unit, and a message_type 0 push goes to the shop's callback URL."""
        shop = self.market.shops[seller_id]
        status = "pending" if paid else "unpaid"
        order_lines: list[OrderLine] = []
        for seller_sku, quantity in lines:
            if quantity < 1:
                raise ValueError(f"a buyer orders at least one unit of {seller_sku}")
            item, sku = self.market.take_stock(shop, seller_sku, quantity)
            if item is None or sku is None:
                raise KeyError(f"shop {seller_id} sells no SKU {seller_sku!r}")
            name = item.name if len(item.skus) == 1 else f"{item.name} - {sku.name}"
            order_lines.extend(
                OrderLine(
                    self.market.new_id(), item.item_id, sku.sku_id, sku.seller_sku, name, 1, sku.price_vnd, status
                )
                for _ in range(quantity)
            )
        now = self.market.now()
        order = Order(
            str(self.market.new_id()), status, now, now, order_lines, clean_line(buyer_name), shipping_fee_vnd
        )
        order.history.append((now, status))
        shop.orders[order.order_id] = order
        self._push_order(shop, order)
        return order

    def set_order_status(self, seller_id: str, order_id: str, status: str) -> Order:
        """Move every item still live to ``status`` (the buyer paid, the carrier delivered…) and push it."""
        shop = self.market.shops[seller_id]
        order = shop.orders[order_id]
        for line in order.lines:
            if line.status in LIVE_ITEM:
                line.status = status
        self._touch(shop, order)
        return order

    # -- orders and pushes ---------------------------------------------------------------------------------

    def _touch(self, shop: Shop, order: Order) -> None:
        statuses = [line.status for line in order.lines]
        live = [status for status in statuses if status in LIVE_ITEM]
        self.market.set_status(order, (live or statuses or ["canceled"])[0])
        self._push_order(shop, order)

    def _push_order(self, shop: Shop, order: Order) -> None:
        body = {
            "seller_id": shop.shop_id,
            "message_type": 0,
            "data": {
                "order_status": order.status,
                "trade_order_id": order.order_id,
                "trade_order_line_id": str(order.lines[0].line_id) if order.lines else "",
                "status_update_time": int(order.updated_at),
            },
            "timestamp": int(self.market.now() * 1000),
            "site": "lazada_vn",
        }
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "Authorization": push_signature(self.app_key, self.app_secret, raw),
        }
        self.market.push(shop.callback_url, headers, raw, f"order:{order.status}")

    # -- the gateway ---------------------------------------------------------------------------------------

    @staticmethod
    def _answer(request_id: str, error: LazadaError) -> JSONResponse:
        body = {"type": error.type, "code": error.code, "message": error.message, "request_id": request_id}
        return JSONResponse(body, status_code=error.status)

    async def _read(self, request: Request) -> tuple[dict[str, str], dict[str, tuple[bytes, str]]]:
        params = dict(request.query_params)
        files: dict[str, tuple[bytes, str]] = {}
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and content_type.startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            async with request.form() as form:
                for key, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        files[key] = (await value.read(), value.content_type or "")
                    else:
                        params[key] = value
        return params, files

    def _verify(self, api: str, params: dict[str, str]) -> None:
        for name in ("app_key", "timestamp", "sign_method", "sign"):
            if not params.get(name):
                raise _missing(name)
        if params["app_key"] != self.app_key:
            raise LazadaError("InvalidAppKey", "The specified app key is invalid.")
        try:
            stamp = int(params["timestamp"])
        except ValueError as exc:
            raise _invalid("timestamp", "expected milliseconds since 1970") from exc
        if abs(stamp - self.market.now() * 1000) > TIMESTAMP_SKEW_MS:
            raise LazadaError("InvalidTimestamp", "The timestamp is invalid or out of the allowed range (7200 s).")
        if params["sign_method"] != "sha256":
            raise _invalid("sign_method", "only sha256 is supported")
        signed = {key: value for key, value in params.items() if key != "sign"}
        expected = sign(self.app_secret, api, signed)
        if not hmac.compare_digest(params["sign"].upper().encode(), expected.encode()):
            raise LazadaError("IncompleteSignature", "The request signature does not conform to platform standards")

    def _shop_for(self, params: Mapping[str, str]) -> Shop:
        token = params.get("access_token")
        if not token:
            raise _missing("access_token")
        shop = self.market.shop_for_token(token)
        if shop is None or shop.access_expires_at <= self.market.now():
            raise LazadaError("IllegalAccessToken", "The specified access token is invalid or expired")
        return shop

    async def _gateway(self, request: Request) -> Response:
        # The path param is below this app's mount and below /rest (or /auth/rest): what the client signed.
        api = "/" + request.path_params["api"]
        request_id = secrets.token_hex(8)
        started = time.monotonic()
        shop: Shop | None = None
        call: _Call | None = None
        spec = API.get(api)
        try:
            params, files = await self._read(request)
            if spec is None:
                raise LazadaError("InvalidApiPath", f"The specified API path {api} is invalid.", status=200)
            self._verify(api, params)
            if spec.needs_token:
                shop = self._shop_for(params)
            try:
                await self.market.door(api, shop)
            except Refused as refused:
                raise self._refusal(refused) from refused
            call = _Call(params, files, shop, own_base_url(request))
            data = await spec.handler(self, call)
        except LazadaError as error:
            self.market.record(api, shop, call.size if call else 0, started, error.code)
            return self._answer(request_id, error)
        self.market.record(api, shop, call.size, started, "ok")
        return JSONResponse({"code": "0", **data, "request_id": request_id})

    @staticmethod
    def _refusal(refused: Refused) -> LazadaError:
        if refused.fault is Fault.throttle:
            return LazadaError(
                "ApiCallLimit", "Api access frequency exceeds the limit. this ban will last 1 seconds", type_="ISP"
            )
        if refused.fault is Fault.timeout:
            return LazadaError("ServiceTimeout", "The service timed out.", type_="SYSTEM", status=504)
        return LazadaError(
            "InternalError",
            "The request processing has failed due to some unknown error.",
            type_="SYSTEM",
            status=500,
        )

    # -- auth host -----------------------------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        """The seller's consent page: pick a shop (or name a new one) and go back with a one-time code."""
        query = request.query_params
        if query.get("client_id") != self.app_key or query.get("response_type") != "code":
            return HTMLResponse("<p>Invalid client_id or response_type.</p>", status_code=400)
        redirect_uri = query.get("redirect_uri")
        if not redirect_uri:
            return HTMLResponse("<p>redirect_uri is required.</p>", status_code=400)
        seller_id = query.get("seller_id")
        if query.get("shop_name"):
            seller_id = self.add_shop(query["shop_name"])["seller_id"]
        if seller_id in self.market.shops:
            code = secrets.token_hex(16)
            self._codes[code] = _Code(seller_id, self.market.now() + CODE_TTL)
            back = {"code": code, **({"state": query["state"]} if query.get("state") else {})}
            separator = "&" if "?" in redirect_uri else "?"
            return RedirectResponse(f"{redirect_uri}{separator}{urlencode(back)}", status_code=302)
        hidden = "".join(
            f'<input type="hidden" name="{_esc(k)}" value="{_esc(v)}">'
            for k, v in query.multi_items()
            if k not in {"seller_id", "shop_name"}
        )
        choices = "".join(
            f'<label><input type="radio" name="seller_id" value="{_esc(s.shop_id)}"> {_esc(s.name)}</label><br>'
            for s in self.market.shops.values()
        )
        return HTMLResponse(
            f"<!doctype html><html lang=vi><meta charset=utf-8><title>Lazada sandbox · authorise</title>"
            f"<h1>Authorise app {_esc(self.app_key)}</h1><form method=get>{hidden}{choices}"
            f"<p>or a new shop: <input name=shop_name placeholder='Vườn cam Cao Phong'></p>"
            f"<button type=submit>Authorise</button></form></html>"
        )

    def _token_answer(self, shop: Shop) -> dict[str, Any]:
        now = self.market.now()
        return {
            "access_token": shop.access_token,
            "refresh_token": shop.refresh_token,
            "expires_in": int(shop.access_expires_at - now),
            "refresh_expires_in": int(shop.refresh_expires_at - now),
            "country": "vn",
            "account_platform": "seller_center",
            "account": f"{shop.shop_id}@sandbox.lazada.vn",
            "country_user_info": [
                {"country": "vn", "user_id": shop.shop_id, "seller_id": shop.shop_id, "short_code": f"VN{shop.shop_id}"}
            ],
        }

    async def token_create(self, call: _Call) -> dict[str, Any]:
        code = call.params.get("code")
        if not code:
            raise _missing("code")
        found = self._codes.pop(code, None)
        if found is None or found.expires_at <= self.market.now() or found.seller_id not in self.market.shops:
            raise LazadaError("InvalidCode", "Invalid authorization code")
        shop = self.market.shops[found.seller_id]
        self.market.issue_tokens(shop, access_ttl=self.access_ttl, refresh_ttl=self.refresh_ttl)
        return self._token_answer(shop)

    async def token_refresh(self, call: _Call) -> dict[str, Any]:
        token = call.params.get("refresh_token")
        if not token:
            raise _missing("refresh_token")
        shop = next((s for s in self.market.shops.values() if secrets.compare_digest(s.refresh_token, token)), None)
        if shop is None or shop.refresh_expires_at <= self.market.now():
            raise LazadaError("IllegalRefreshToken", "The specified refresh token is invalid or expired")
        shop.used_refresh_tokens.add(token)
        self.market.issue_tokens(shop, access_ttl=self.access_ttl, refresh_ttl=self.refresh_ttl)
        return self._token_answer(shop)

    # -- images --------------------------------------------------------------------------------------------

    async def image_upload(self, call: _Call) -> dict[str, Any]:
        if "image" not in call.files:
            raise _missing("image")
        data, _ = call.files["image"]
        if len(data) > MAX_IMAGE_BYTES:
            raise LazadaError("IMAGE_TOO_LARGE", "The image exceeds the maximum size of 1MB.")
        try:
            with PILImage.open(io.BytesIO(data)) as picture:
                kind, (width, height) = picture.format, picture.size
        except (UnidentifiedImageError, OSError) as exc:
            raise LazadaError("IMAGE_FORMAT_INVALID", "Only jpg and png images are supported.") from exc
        if kind not in {"JPEG", "PNG"}:
            raise LazadaError("IMAGE_FORMAT_INVALID", "Only jpg and png images are supported.")
        if min(width, height) < 330 or max(width, height) > 5000:
            raise LazadaError("IMAGE_SIZE_INVALID", "Each side of the image must be between 330 and 5000 px.")
        mime = "image/jpeg" if kind == "JPEG" else "image/png"
        extension = "jpg" if kind == "JPEG" else "png"
        image = self.market.store_image(data, mime, lambda image_id: f"{call.base_url}images/{image_id}.{extension}")
        return {"data": {"image": {"url": image.url, "hash_code": image.image_id}}}

    async def _image(self, request: Request) -> Response:
        image_id = request.path_params["image_id"].split(".")[0]
        return image_response(self.market, image_id, cache_control="max-age=86400")

    def _image_ids(self, product: Mapping[str, Any]) -> list[str] | None:
        urls = _listed(product.get("Images"), "Image")
        if "Images" not in product:
            return None
        if len(urls) > MAX_IMAGES:
            raise LazadaError("IMAGE_COUNT_EXCEEDED", f"At most {MAX_IMAGES} images are allowed.")
        ids: list[str] = []
        for url in urls:
            image_id = str(url).rsplit("/", 1)[-1].split(".")[0]
            if image_id not in self.market.images:
                raise LazadaError("IMAGE_NOT_LAZADA", f"Only images uploaded to Lazada can be used: {url}")
            ids.append(image_id)
        return ids

    # -- products ------------------------------------------------------------------------------------------

    @staticmethod
    def _attributes(attributes: Any, *, creating: bool) -> dict[str, Any]:
        if not isinstance(attributes, dict):
            if creating:
                raise _missing("Attributes")
            return {}
        cleaned = dict(attributes)
        if "name" in cleaned or creating:
            name = clean_line(str(cleaned.get("name") or ""))
            if not name:
                raise _missing("name")
            if len(name) > 255:
                raise LazadaError("NAME_TOO_LONG", "The product name must be at most 255 characters.")
            cleaned["name"] = name
        if "description" in cleaned:
            cleaned["description"] = clean_text(str(cleaned["description"]))
            if len(cleaned["description"]) > 25_000:
                raise LazadaError("DESCRIPTION_TOO_LONG", "The description must be at most 25000 characters.")
        if creating and not (cleaned.get("brand_id") or cleaned.get("brand")):
            raise _missing("brand_id")
        return cleaned

    @staticmethod
    def _sku_fields(raw: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if "price" in raw or creating:
            price = _int(raw.get("price"), "price") if raw.get("price") is not None else 0
            if price <= 0:
                raise LazadaError("BIZ_CHECK_PRICE_IS_ZERO", "The price must be greater than 0.")
            fields["price"] = price
        if "quantity" in raw or creating:
            quantity = _int(raw.get("quantity", 0), "quantity")
            if quantity < 0:
                raise _invalid("quantity", "must not be negative")
            fields["quantity"] = quantity
        if creating:
            for name in ("package_length", "package_width", "package_height", "package_weight"):
                try:
                    if float(raw.get(name) or 0) <= 0:
                        raise _missing(name)
                except (TypeError, ValueError) as exc:
                    raise _invalid(name, "expected a positive number") from exc
        return fields

    def _new_sku(self, shop: Shop, item: Item, raw: Mapping[str, Any], image_ids: list[str]) -> Sku:
        seller_sku = clean_line(str(raw.get("SellerSku") or ""))
        if not seller_sku:
            raise _missing("SellerSku")
        if shop.by_seller_sku(seller_sku) is not None:
            raise LazadaError("SELLER_SKU_EXISTS", f"The SellerSku {seller_sku} already exists in this shop.")
        fields = self._sku_fields(raw, creating=True)
        props = raw.get("saleProp")
        values = props.values() if isinstance(props, dict) else ()
        name = " / ".join(clean_line(str(v)) for v in values) or item.name
        sku = Sku(self.market.new_id(), seller_sku, name, fields["price"], fields["quantity"], list(image_ids))
        item.skus[sku.sku_id] = sku
        return sku

    async def product_create(self, call: _Call) -> dict[str, Any]:
        assert call.shop is not None
        shop = call.shop
        product = _product(call.params)
        if not product.get("PrimaryCategory"):
            raise _missing("PrimaryCategory")
        attributes = self._attributes(product.get("Attributes"), creating=True)
        image_ids = self._image_ids(product) or []
        skus = _listed(product.get("Skus"), "Sku")
        call.size = len(skus)
        if not skus:
            raise _missing("Skus")
        if len(skus) > MAX_SKUS:
            raise LazadaError("E204", "Too many SKU in one request")
        if len(skus) > 1:
            props = [json.dumps(s.get("saleProp"), sort_keys=True) for s in skus if isinstance(s.get("saleProp"), dict)]
            if len(props) < len(skus) or len(set(props)) < len(props):
                raise LazadaError("SALE_PROP_INVALID", "Each SKU of a product needs its own saleProp value.")
        now = self.market.now()
        item = Item(
            self.market.new_id(),
            attributes["name"],
            str(attributes.get("description", "")),
            str(product["PrimaryCategory"]),
            "active",
            image_ids,
            attributes={k: v for k, v in attributes.items() if k not in {"name", "description"}},
            created_at=now,
            updated_at=now,
        )
        created = [self._new_sku(shop, item, raw, image_ids) for raw in skus]
        shop.items[item.item_id] = item
        return {
            "data": {
                "item_id": item.item_id,
                "sku_list": [
                    {"seller_sku": s.seller_sku, "sku_id": s.sku_id, "shop_sku": f"{item.item_id}_VNAMZ-{s.sku_id}"}
                    for s in created
                ],
            }
        }

    @staticmethod
    def _item(shop: Shop, item_id: Any) -> Item:
        try:
            item = shop.items.get(int(item_id))
        except (TypeError, ValueError):
            item = None
        if item is None:
            raise LazadaError("ITEM_NOT_FOUND", f"Item {item_id} not found.")
        return item

    async def product_update(self, call: _Call) -> dict[str, Any]:
        assert call.shop is not None
        shop = call.shop
        product = _product(call.params)
        if not product.get("ItemId"):
            raise _missing("ItemId")
        item = self._item(shop, product["ItemId"])
        attributes = self._attributes(product.get("Attributes"), creating=False)
        image_ids = self._image_ids(product)
        skus = _listed(product.get("Skus"), "Sku")
        call.size = len(skus)
        if len(skus) > MAX_SKUS:
            raise LazadaError("E204", "Too many SKU in one request")
        # Check every SKU before changing any, so a refused update leaves the item as it was.
        plan: list[tuple[Sku | None, dict[str, Any], Mapping[str, Any]]] = []
        for raw in skus:
            existing: Sku | None = None
            if raw.get("SkuId"):
                existing = item.skus.get(_int(raw["SkuId"], "SkuId"))
                if existing is None:
                    raise LazadaError("SKU_NOT_FOUND", f"SKU {raw['SkuId']} not found in item {item.item_id}.")
            elif raw.get("SellerSku"):
                seller_sku = clean_line(str(raw["SellerSku"]))
                existing = item.sku_by_seller_sku(seller_sku)
                if existing is None and shop.by_seller_sku(seller_sku) is not None:
                    raise LazadaError("SELLER_SKU_EXISTS", f"The SellerSku {seller_sku} already exists in this shop.")
            plan.append((existing, self._sku_fields(raw, creating=existing is None), raw))
        if "name" in attributes:
            item.name = attributes.pop("name")
        if "description" in attributes:
            item.description = attributes.pop("description")
        item.attributes.update(attributes)
        if image_ids is not None:
            item.image_ids = image_ids
        if product.get("PrimaryCategory"):
            item.category_id = str(product["PrimaryCategory"])
        for existing, fields, raw in plan:
            if existing is None:
                self._new_sku(shop, item, raw, item.image_ids)
                continue
            existing.price_vnd = fields.get("price", existing.price_vnd)
            existing.stock = fields.get("quantity", existing.stock)
            props = raw.get("saleProp")
            if isinstance(props, dict):
                existing.name = " / ".join(clean_line(str(v)) for v in props.values()) or existing.name
        if any(str(raw.get("Status", "")).lower() == "active" for raw in skus):
            item.status = "active"
        item.updated_at = self.market.now()
        return {}

    async def product_deactivate(self, call: _Call) -> dict[str, Any]:
        assert call.shop is not None
        product = _product(call.params, "apiRequestBody")
        if not product.get("ItemId"):
            raise _missing("ItemId")
        item = self._item(call.shop, product["ItemId"])
        item.status = "inactive"
        item.updated_at = self.market.now()
        return {}

    async def product_item_get(self, call: _Call) -> dict[str, Any]:
        assert call.shop is not None
        if not call.params.get("item_id"):
            raise _missing("item_id")
        item = self._item(call.shop, call.params["item_id"])
        images = [self.market.images[i].url for i in item.image_ids if i in self.market.images]
        return {
            "data": {
                "item_id": item.item_id,
                "primary_category": item.category_id,
                "status": item.status,
                "images": images,
                "attributes": {"name": item.name, "description": item.description, **item.attributes},
                "skus": [
                    {
                        "SkuId": s.sku_id,
                        "SellerSku": s.seller_sku,
                        "ShopSku": f"{item.item_id}_VNAMZ-{s.sku_id}",
                        "price": s.price_vnd,
                        "quantity": s.stock,
                        "Status": item.status,
                        "Images": [self.market.images[i].url for i in s.image_ids if i in self.market.images],
                    }
                    for s in item.skus.values()
                ],
            }
        }

    def _sku_entries(self, call: _Call) -> list[Mapping[str, Any]]:
        skus = _listed(_product(call.params).get("Skus"), "Sku")
        call.size = len(skus)
        if not skus:
            raise _missing("Skus")
        if len(skus) > MAX_SKUS:
            raise LazadaError("E204", "Too many SKU in one request")
        return skus

    def _resolve(self, shop: Shop, raw: Mapping[str, Any]) -> tuple[Item, Sku]:
        found = None
        if raw.get("SkuId"):
            with contextlib.suppress(ValueError, TypeError):
                found = shop.sku(int(raw["SkuId"]))
        elif raw.get("SellerSku"):
            found = shop.by_seller_sku(str(raw["SellerSku"]))
        if found is None:
            raise LazadaError("SKU_NOT_FOUND", "The SKU does not exist in this shop.")
        return found

    async def _per_sku(self, call: _Call, apply: Callable[[Item, Sku, Mapping[str, Any]], None]) -> dict[str, Any]:
        assert call.shop is not None
        detail: list[dict[str, Any]] = []
        for raw in self._sku_entries(call):
            try:
                item, sku = self._resolve(call.shop, raw)
                apply(item, sku, raw)
                item.updated_at = self.market.now()
            except LazadaError as error:
                detail.append(
                    {
                        "seller_sku": str(raw.get("SellerSku") or ""),
                        "sku_id": str(raw.get("SkuId") or ""),
                        "code": error.code,
                        "message": error.message,
                    }
                )
        return {"detail": detail} if detail else {}

    async def stock_update(self, call: _Call) -> dict[str, Any]:
        def apply(item: Item, sku: Sku, raw: Mapping[str, Any]) -> None:
            if raw.get("SellableQuantity") is None:
                raise _missing("SellableQuantity")
            quantity = _int(raw["SellableQuantity"], "SellableQuantity")
            if quantity < 0:
                raise LazadaError("NEGATIVE_QUANTITY", "Negative value not allowed for SellableQuantity.")
            sku.stock = quantity

        return await self._per_sku(call, apply)

    async def price_update(self, call: _Call) -> dict[str, Any]:
        def apply(item: Item, sku: Sku, raw: Mapping[str, Any]) -> None:
            if raw.get("Price") is not None:
                price = _int(raw["Price"], "Price")
                if price <= 0:
                    raise LazadaError("BIZ_CHECK_PRICE_IS_ZERO", "The price must be greater than 0.")
                sku.price_vnd = price
            if raw.get("Quantity") is not None:
                sku.stock = max(_int(raw["Quantity"], "Quantity"), 0)

        return await self._per_sku(call, apply)

    # -- orders --------------------------------------------------------------------------------------------

    @staticmethod
    def _order(shop: Shop, order_id: Any) -> Order:
        order = shop.orders.get(str(order_id))
        if order is None:
            raise LazadaError("16", f'E016: "{order_id}" Invalid Order ID')
        return order

    def _order_header(self, order: Order) -> dict[str, Any]:
        first, _, last = order.buyer_name.rpartition(" ")
        return {
            "order_id": int(order.order_id),
            "order_number": int(order.order_id),
            "created_at": _lazada_time(order.created_at),
            "updated_at": _lazada_time(order.updated_at),
            "price": _money(sum(line.unit_price_vnd for line in order.lines)),
            "shipping_fee": _money(order.shipping_fee_vnd),
            "voucher": "0.00",
            "items_count": len(order.lines),
            "statuses": list(dict.fromkeys(line.status for line in order.lines)),
            "customer_first_name": first or last,
            "customer_last_name": last if first else "",
            "payment_method": "COD",
            "address_shipping": {"country": "Vietnam", "city": "Hà Nội"},
        }

    def _order_item(self, order: Order, line: OrderLine) -> dict[str, Any]:
        return {
            "order_item_id": line.line_id,
            "order_id": int(order.order_id),
            "sku": line.seller_sku,
            "sku_id": line.sku_id,
            "product_id": line.item_id,
            "shop_sku": f"{line.item_id}_VNAMZ-{line.sku_id}",
            "name": line.name,
            "item_price": _money(line.unit_price_vnd),
            "paid_price": _money(line.unit_price_vnd),
            "status": line.status,
            "package_id": line.package_id or "",
            "tracking_code": f"LZVN{line.package_id[2:]}" if line.package_id else "",
            "shipment_provider": "LEX VN" if line.package_id else "",
            "created_at": _lazada_time(order.created_at),
            "updated_at": _lazada_time(order.updated_at),
        }

    async def orders_get(self, call: _Call) -> dict[str, Any]:
        assert call.shop is not None
        params = call.params
        created_after, update_after = _iso_param(params, "created_after"), _iso_param(params, "update_after")
        if created_after is None and update_after is None:
            raise _missing("created_after")
        created_before, update_before = _iso_param(params, "created_before"), _iso_param(params, "update_before")
        limit = _int(params.get("limit", "10"), "limit")
        offset = _int(params.get("offset", "0"), "offset")
        if not 1 <= limit <= MAX_ORDERS_PAGE:
            raise _invalid("limit", f"must be between 1 and {MAX_ORDERS_PAGE}")
        if offset < 0:
            raise _invalid("offset", "must not be negative")
        status = params.get("status")
        sort_by = params.get("sort_by", "created_at")
        if sort_by not in {"created_at", "updated_at"}:
            raise _invalid("sort_by", "created_at or updated_at")

        def within(ts: float, after: float | None, before: float | None) -> bool:
            return (after is None or ts >= after) and (before is None or ts <= before)

        matching = [
            o
            for o in call.shop.orders.values()
            if within(o.created_at, created_after, created_before)
            and within(o.updated_at, update_after, update_before)
            and (not status or any(line.status == status for line in o.lines))
        ]
        key = "updated_at" if sort_by == "updated_at" else "created_at"
        matching.sort(
            key=lambda o: (getattr(o, key), int(o.order_id)), reverse=params.get("sort_direction", "DESC") == "DESC"
        )
        page = matching[offset : offset + limit]
        call.size = len(page)
        return {
            "data": {
                "count": len(page),
                "countTotal": len(matching),
                "orders": [self._order_header(o) for o in page],
            }
        }

    async def order_get(self, call: _Call) -> dict[str, Any]:
        assert call.shop is not None
        if not call.params.get("order_id"):
            raise _missing("order_id")
        return {"data": self._order_header(self._order(call.shop, call.params["order_id"]))}

    async def order_items_get(self, call: _Call) -> dict[str, Any]:
        assert call.shop is not None
        if not call.params.get("order_id"):
            raise _missing("order_id")
        order = self._order(call.shop, call.params["order_id"])
        return {"data": [self._order_item(order, line) for line in order.lines]}

    async def orders_items_get(self, call: _Call) -> dict[str, Any]:
        assert call.shop is not None
        ids = _json_param(call.params, "order_ids")
        if not isinstance(ids, list) or not ids:
            raise _invalid("order_ids", "expected a JSON list of order ids")
        if len(ids) > MAX_ORDER_IDS:
            raise _invalid("order_ids", f"at most {MAX_ORDER_IDS} order ids per call")
        call.size = len(ids)
        orders = [call.shop.orders[str(i)] for i in ids if str(i) in call.shop.orders]
        return {
            "data": [
                {
                    "order_id": int(o.order_id),
                    "order_number": int(o.order_id),
                    "order_items": [self._order_item(o, line) for line in o.lines],
                }
                for o in orders
            ]
        }

    async def pack(self, call: _Call) -> dict[str, Any]:
        assert call.shop is not None
        request = _json_param(call.params, "packReq")
        orders = request.get("pack_order_list") if isinstance(request, dict) else None
        if not isinstance(orders, list) or not orders:
            raise _missing("pack_order_list")
        if len(orders) > MAX_PACK:
            raise _invalid("pack_order_list", f"at most {MAX_PACK} orders per call")
        if request.get("delivery_type") not in {"dropship", "pickup", "send_to_warehouse"}:
            raise _invalid("delivery_type", "dropship, pickup or send_to_warehouse")
        answer: list[dict[str, Any]] = []
        call.size = 0
        for entry in orders:
            order = self._order(call.shop, entry.get("order_id"))
            wanted = {int(i) for i in entry.get("order_item_list") or []}
            package_id = f"FP{self.market.new_id()}"
            results: list[dict[str, Any]] = []
            for line in order.lines:
                if line.line_id not in wanted:
                    continue
                if line.status not in {"pending", "repacked", "topack"}:
                    results.append(
                        {
                            "order_item_id": line.line_id,
                            "item_err_code": "ITEM_STATUS_INVALID",
                            "msg": f"Item status {line.status} cannot be packed.",
                        }
                    )
                    continue
                line.status, line.package_id = "packed", package_id
                results.append(
                    {
                        "order_item_id": line.line_id,
                        "package_id": package_id,
                        "tracking_number": f"LZVN{package_id[2:]}",
                        "shipment_provider": "LEX VN",
                        "item_err_code": "0",
                        "msg": "",
                    }
                )
            missing = wanted - {line.line_id for line in order.lines}
            results.extend(
                {"order_item_id": i, "item_err_code": "ITEM_NOT_FOUND", "msg": "No such order item."} for i in missing
            )
            call.size += len(results)
            self._touch(call.shop, order)
            answer.append({"order_id": int(order.order_id), "order_item_list": results})
        return {"result": {"success": True, "data": {"pack_order_list": answer}}}

    async def ready_to_ship(self, call: _Call) -> dict[str, Any]:
        assert call.shop is not None
        request = _json_param(call.params, "readyToShipReq")
        packages = request.get("packages") if isinstance(request, dict) else None
        if not isinstance(packages, list) or not packages:
            raise _missing("packages")
        if len(packages) > MAX_PACK:
            raise _invalid("packages", f"at most {MAX_PACK} packages per call")
        call.size = len(packages)
        answer: list[dict[str, Any]] = []
        for entry in packages:
            package_id = str(entry.get("package_id") or "")
            touched = [
                (order, line)
                for order in call.shop.orders.values()
                for line in order.lines
                if package_id and line.package_id == package_id
            ]
            if not touched:
                answer.append(
                    {"package_id": package_id, "item_err_code": "PACKAGE_NOT_FOUND", "msg": "No such package."}
                )
                continue
            for _, line in touched:
                if line.status == "packed":
                    line.status = "ready_to_ship"
            for order in {id(o): o for o, _ in touched}.values():
                self._touch(call.shop, order)
            answer.append({"package_id": package_id, "item_err_code": "0", "msg": ""})
        return {"result": {"success": True, "data": {"packages": answer}}}

    def _cancel_lines(self, call: _Call) -> tuple[Order, list[OrderLine]]:
        assert call.shop is not None
        if not call.params.get("order_id"):
            raise _missing("order_id")
        order = self._order(call.shop, call.params["order_id"])
        ids = _json_param(call.params, "order_item_id_list")
        if not isinstance(ids, list) or not ids:
            raise _invalid("order_item_id_list", "expected a JSON list of order item ids")
        by_id = {line.line_id: line for line in order.lines}
        lines = [by_id.get(_int(i, "order_item_id_list")) for i in ids]
        if any(line is None for line in lines):
            raise _invalid("order_item_id_list", "an order item does not belong to this order")
        chosen = [line for line in lines if line is not None]
        if any(line.status not in SELLER_CANCELLABLE for line in chosen):
            raise LazadaError("REVERSE_NOT_ALLOWED", "These order items can no longer be cancelled by the seller.")
        call.size = len(chosen)
        return order, chosen

    async def cancel_validate(self, call: _Call) -> dict[str, Any]:
        self._cancel_lines(call)
        return {"data": {"tip_type": "", "tip_content": "", "reason_options": list(CANCEL_REASONS)}}

    async def cancel_create(self, call: _Call) -> dict[str, Any]:
        assert call.shop is not None
        order, lines = self._cancel_lines(call)
        if call.params.get("reason_id") not in {r["reason_id"] for r in CANCEL_REASONS}:
            raise _invalid("reason_id", "not one of the reasons the validate call offered")
        for line in lines:
            line.status = "canceled"
            if line.sku_id is not None and (found := call.shop.sku(line.sku_id)) is not None:
                found[1].stock += line.quantity  # a cancelled unit is on sale again
        order.cancel_reason = next(
            r["reason_name"] for r in CANCEL_REASONS if r["reason_id"] == call.params["reason_id"]
        )
        self._touch(call.shop, order)
        return {"data": {"reverse_order_id": self.market.new_id()}}

    # -- the shop's page -----------------------------------------------------------------------------------

    def _links(self, request: Request, seller_id: str) -> PageLinks:
        base = own_base_url(request)
        return PageLinks(
            image_url=lambda image_id: f"{base}images/{image_id}",
            order_form_action=f"{base}sandbox/shops/{seller_id}/orders",
        )

    async def _shop_page(self, request: Request) -> Response:
        shop = self.market.shops.get(request.path_params["seller_id"])
        if shop is None:
            return HTMLResponse("<p>No such shop.</p>", status_code=404)
        page = shop_page(self.market, shop, self._links(request, shop.shop_id), title="Lazada", accent="#0f146d")
        return HTMLResponse(page)

    async def _buy(self, request: Request) -> Response:
        """The page's "buy" button: a paid order, exactly as :meth:`place_order` makes one."""
        return await buy_from_page(
            self.market,
            request,
            request.path_params["seller_id"],
            self.place_order,
            unknown_product="<p>No such product.</p>",
        )


def _esc(value: str) -> str:
    return html.escape(value, quote=True)


API: Mapping[str, _Api] = {
    "/auth/token/create": _Api(LazadaSandbox.token_create, needs_token=False),
    "/auth/token/refresh": _Api(LazadaSandbox.token_refresh, needs_token=False),
    "/image/upload": _Api(LazadaSandbox.image_upload),
    "/product/create": _Api(LazadaSandbox.product_create),
    "/product/update": _Api(LazadaSandbox.product_update),
    "/product/deactivate": _Api(LazadaSandbox.product_deactivate),
    "/product/item/get": _Api(LazadaSandbox.product_item_get),
    "/product/stock/sellable/update": _Api(LazadaSandbox.stock_update),
    "/product/price_quantity/update": _Api(LazadaSandbox.price_update),
    "/orders/get": _Api(LazadaSandbox.orders_get),
    "/order/get": _Api(LazadaSandbox.order_get),
    "/order/items/get": _Api(LazadaSandbox.order_items_get),
    "/orders/items/get": _Api(LazadaSandbox.orders_items_get),
    "/order/fulfill/pack": _Api(LazadaSandbox.pack),
    "/order/package/rts": _Api(LazadaSandbox.ready_to_ship),
    "/order/reverse/cancel/validate": _Api(LazadaSandbox.cancel_validate),
    "/order/reverse/cancel/create": _Api(LazadaSandbox.cancel_create),
}
