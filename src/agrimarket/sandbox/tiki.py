"""A stand-in for Tiki's Open API (marketplaces.md §4) over a :class:`~agrimarket.sandbox.core.Marketplace`: its
OAuth 2 server, Bearer checks, product requests reviewed over time, ``updateSku(s)``, orders, and the pull-based
event queue, so the Tiki adapter, written against the real platform, runs against it unchanged.

One ASGI app serves every host; mount it anywhere (``app.mount("/sandbox/tiki", sandbox.app)``) and give the adapter
``api_url = <base>`` and ``auth_url = <base>/sc/oauth2``:

- ``/sc/oauth2/auth`` (the seller's consent page) and ``/sc/oauth2/token`` (``authorization_code``,
  ``refresh_token``, ``client_credentials``; form-encoded, client authenticated by HTTP Basic or in the body);
- ``/integration/...``: the Open API, every call with ``Authorization: Bearer``;
- ``/images/{id}``: uploaded images; ``/sandbox/shops/{seller_id}``: the shop's page, with a form to buy.

Choices where Tiki documents nothing (UNCONFIRMED in ``marketplaces.md``):

- tokens: an access token lives a day, a refresh token 30 days and rotates (the old one is refused), an
  authorisation code 10 minutes and once; ``client_credentials`` gives the app's own token, no refresh token;
- errors: a bad or expired token is 401 ``{"error": "invalid_token", "error_description"}`` (the OAuth server's
  shape), a token of the wrong kind 403; the Open API refuses with 400/404/422 ``{"code", "message", "errors"}``;
  throttling is 429 with ``Retry-After``; an injected fault 500 ``INTERNAL_ERROR`` or 504 after the timeout;
- product requests: ``POST /integration/v2.1/requests`` answers ``{"track_id", "state": "queuing"}``; the state
  moves one automatic step every ``step_seconds`` (sandbox clock) up to ``awaiting_approve``, where a person decides:
  :meth:`TikiSandbox.approve` / :meth:`TikiSandbox.reject`, or by itself after ``review_seconds`` when that is set
  (0: approved at once). ``GET /integration/v2/tracking/{track_id}`` and ``GET /integration/v2/requests/{id}`` tell
  the state, Tiki's reason, and once approved the products (one per variant, created inactive);
- ``updateSkus`` takes at most 50 entries and answers a state per entry; ``updateSku`` one;
- images: ``POST /integration/v2/media/images`` (multipart ``file``), JPEG or PNG, at most 5 MB, 500-4000 px;
- orders: list by ``updated_from_date``/``updated_to_date`` ("YYYY-MM-DD HH:MM:SS", Vietnam time), ``page``/``limit``
  (≤ 100); detail by code; ``POST /integration/v2/orders/{code}/dropship/confirm-available`` with
  ``confirmation_status`` ``available`` (→ ``ready_to_ship``) or ``unavailable`` (→ ``canceled``, stock back);
- the event queue: queues belong to the app (its ``client_credentials`` token), subscriptions are a seller's (its
  token), pull and ack use the app's token. ``POST /integration/v1/queues/{code}/events/pull`` with
  ``max_messages`` (≤ 100) answers ``{"ack_id", "events"}``; ``POST .../events/ack {"ack_id"}`` forgets them. Events
  pulled and not acknowledged within ``ack_deadline_seconds`` come again, first, in order (at-least-once).
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import httpx
from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

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

SANDBOX_CLIENT_ID = "sandbox-tiki-app"
SANDBOX_CLIENT_SECRET = "sandbox-tiki-app-secret"  # noqa: S105 - the sandbox's own app, public by design
ACCESS_TTL = 86_400.0
REFRESH_TTL = 30 * 86_400.0
CODE_TTL = 600.0
MAX_SKUS = 50
MAX_PULL = 100
MAX_ORDERS_PAGE = 100
MAX_VARIANTS = 20
MAX_IMAGE_BYTES = 5 * 1024 * 1024
WAREHOUSE_ID = 1
VN = timezone(timedelta(hours=7))
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
REVIEW_STEPS = ("queuing", "processing", "md_waiting_approve", "bot_waiting_approve", "awaiting_approve")
APPROVED, REJECTED, DELETED = "approved", "rejected", "deleted"
EVENT_TYPES = frozenset(
    {
        "ORDER_CREATED_SUCCESSFULLY",
        "ORDER_STATUS_UPDATED",
        "PRODUCT_PRICE_UPDATED",
        "PRODUCT_MARKET_PRICE_UPDATED",
        "PRODUCT_INVENTORY_UPDATED",
    }
)
LIVE_ORDER = frozenset({"waiting_payment", "queueing"})


class TikiError(Exception):
    """An answer in Tiki's error shape: ``{"code", "message", "errors"}`` (or the OAuth server's for 401)."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        if self.status == 401:
            body: dict[str, Any] = {"error": self.code, "error_description": self.message}
        else:
            body = {"code": self.code, "message": self.message, "errors": [self.message]}
        headers = {"Retry-After": str(max(1, round(self.retry_after)))} if self.retry_after is not None else None
        return JSONResponse(body, status_code=self.status, headers=headers)


def _bad(message: str, code: str = "INVALID_PARAMETER") -> TikiError:
    return TikiError(400, code, message)


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, VN).strftime(TIME_FORMAT)


def _parse_time(value: str | None, name: str) -> float | None:
    if not value:
        return None
    try:
        moment = datetime.strptime(value, TIME_FORMAT).replace(tzinfo=VN)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise _bad(f"{name} must look like 2024-05-01 09:30:00") from exc
        moment = moment if moment.tzinfo else moment.replace(tzinfo=VN)
    return moment.timestamp()


def _int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool):
        raise _bad(f"{name} must be a whole number")
    try:
        number = int(str(value))
    except (TypeError, ValueError) as exc:
        raise _bad(f"{name} must be a whole number") from exc
    if (low is not None and number < low) or (high is not None and number > high):
        raise _bad(f"{name} must be between {low} and {high}")
    return number


@dataclass
class ProductRequest:
    """A product request as Tiki keeps it: what was sent, where its review is, and the products it made."""

    request_id: str
    track_id: str
    shop_id: str
    body: dict[str, Any]
    created_at: float
    decided: str | None = None  # approved / rejected / deleted, once someone (or the clock) decided
    reason: str | None = None
    decided_at: float | None = None
    product_ids: list[int] = field(default_factory=list)


@dataclass
class InFlight:
    deadline: float
    events: list[dict[str, Any]]


@dataclass
class Queue:
    code: str
    name: str
    client_id: str
    pending: list[dict[str, Any]] = field(default_factory=list)
    in_flight: dict[str, InFlight] = field(default_factory=dict)
    delivered: int = 0


@dataclass
class Subscription:
    code: str
    queue_code: str
    event_type: str
    sid: str
    active: bool = True


@dataclass
class _Code:
    shop_id: str
    redirect_uri: str
    expires_at: float


@dataclass
class _State:
    requests: dict[str, ProductRequest] = field(default_factory=dict)
    queues: dict[str, Queue] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)


_STATE = TypeAdapter(_State)


@dataclass
class _Call:
    """One Open API call: its body, query, path parameters, the seller (or None for the app's own token)."""

    request: Request
    params: Mapping[str, str]
    body: Any
    shop: Shop | None
    base_url: str
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    size: int = 1

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])


Handler = Callable[["TikiSandbox", _Call], Awaitable[Any]]


class TikiSandbox:
    """The sandbox and its Python handle: ``app`` is the ASGI app, ``market`` the shops under it.

    ``review_seconds``: None, requests wait at ``awaiting_approve`` for :meth:`approve` or :meth:`reject` (tests);
    a number, they are approved that long after they were sent (the demo; 0: at once). ``step_seconds``: how long
    each automatic review step takes. ``ack_deadline_seconds``: pulled events not acknowledged by then come again.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Clock = time.time,
        client_id: str = SANDBOX_CLIENT_ID,
        client_secret: str = SANDBOX_CLIENT_SECRET,
        review_seconds: float | None = None,
        step_seconds: float = 5.0,
        ack_deadline_seconds: float = 60.0,
        access_ttl: float = ACCESS_TTL,
        refresh_ttl: float = REFRESH_TTL,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.market = Marketplace("tiki", config, clock=clock, http=http)
        self.client_id = client_id
        self.client_secret = client_secret
        self.review_seconds = review_seconds
        self.step_seconds = step_seconds
        self.ack_deadline_seconds = ack_deadline_seconds
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.state = _State()
        self._codes: dict[str, _Code] = {}
        self._app_tokens: dict[str, float] = {}  # the app's own tokens → expiry
        routes = [
            Route("/sc/oauth2/auth", self._authorize, methods=["GET"]),
            Route("/sc/oauth2/token", self._token, methods=["POST"]),
            Route("/images/{image_id}", self._image, methods=["GET"]),
            Route("/sandbox/shops/{seller_id}", self._shop_page, methods=["GET"]),
            Route("/sandbox/shops/{seller_id}/orders", self._buy, methods=["POST"]),
        ]
        for path, method, handler, token in API:
            routes.append(Route(path, self._endpoint(f"{method} {path}", handler, token), methods=[method]))
        self.app = Starlette(routes=routes)

    # -- the Python façade ---------------------------------------------------------------------------------

    def add_shop(self, name: str) -> dict[str, Any]:
        """A new seller, already authorised: the credentials a Tiki connection stores."""
        shop = self.market.add_shop(
            str(self.market.new_id()), clean_line(name), access_ttl=self.access_ttl, refresh_ttl=self.refresh_ttl
        )
        return self.credentials(shop.shop_id)

    def credentials(self, shop_id: str) -> dict[str, Any]:
        """The shop's current credentials (after a refresh too)."""
        shop = self.market.shops[shop_id]
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "access_token": shop.access_token,
            "refresh_token": shop.refresh_token,
            "seller_id": shop.shop_id,
            "scope": "offline product order inventory",
            "access_expires_at": datetime.fromtimestamp(shop.access_expires_at, UTC).isoformat(),
        }

    def snapshot(self) -> bytes:
        """Shops, products, orders, images, requests and queues, to :meth:`restore` after a restart."""
        return json.dumps(
            {"market": json.loads(self.market.snapshot()), "tiki": _STATE.dump_python(self.state, mode="json")}
        ).encode()

    def restore(self, data: bytes) -> None:
        saved = json.loads(data)
        self.market.restore(json.dumps(saved["market"]).encode())
        self.state = _STATE.validate_python(saved.get("tiki") or {})

    def request(self, request_or_track_id: str) -> ProductRequest:
        found = self.state.requests.get(request_or_track_id) or next(
            (r for r in self.state.requests.values() if r.track_id == request_or_track_id), None
        )
        if found is None:
            raise KeyError(f"no product request {request_or_track_id!r}")
        return found

    def request_state(self, request_or_track_id: str) -> str:
        return self._advance(self.request(request_or_track_id))

    def approve(self, request_or_track_id: str) -> list[int]:
        """Tiki's content team approves the request: one inactive product per variant. Their ids."""
        found = self.request(request_or_track_id)
        if found.decided is None:
            self._decide(found, APPROVED)
        return list(found.product_ids)

    def reject(self, request_or_track_id: str, reason: str) -> None:
        """Tiki rejects the request with ``reason`` (final: the seller must send a new one)."""
        found = self.request(request_or_track_id)
        if found.decided is None:
            self._decide(found, REJECTED, clean_line(reason))

    async def place_order(
        self,
        shop_id: str,
        lines: Sequence[tuple[str, int]],
        *,
        paid: bool = True,
        buyer_name: str = "Trần Văn Minh",
        shipping_fee_vnd: int = 0,
    ) -> str:
        """A buyer orders ``[(seller_sku, quantity)]`` of products on sale: Tiki's stock goes down (never below
        zero: it may oversell us); a paid order is ``queueing`` and sends ORDER_CREATED_SUCCESSFULLY to the seller's
        subscribed queues, an unpaid one waits for payment (and sends it when :meth:`set_order_status` moves it to
        ``queueing``). The order's code."""
        shop = self.market.shops[shop_id]
        status = "queueing" if paid else "waiting_payment"
        order_lines: list[OrderLine] = []
        for seller_sku, quantity in lines:
            if quantity < 1:
                raise ValueError(f"a buyer orders at least one unit of {seller_sku}")
            found = shop.by_seller_sku(seller_sku)
            if found is None or found[0].status != "active":
                raise KeyError(f"shop {shop_id} has no product {seller_sku!r} on sale")
            item, sku = self.market.take_stock(shop, seller_sku, quantity)
            assert item is not None
            assert sku is not None
            order_lines.append(
                OrderLine(
                    self.market.new_id(), item.item_id, sku.sku_id, sku.seller_sku, item.name, quantity, sku.price_vnd
                )
            )
        now = self.market.now()
        order = Order(
            str(self.market.new_id()), status, now, now, order_lines, clean_line(buyer_name), shipping_fee_vnd
        )
        order.history.append((now, status))
        shop.orders[order.order_id] = order
        if paid:
            self._emit(shop, "ORDER_CREATED_SUCCESSFULLY", {"order_code": order.order_id, "status": status})
        return order.order_id

    def set_order_status(self, shop_id: str, code: str, status: str) -> Order:
        """Move the order to ``status`` (the buyer paid, the carrier delivered…) and send its event."""
        shop = self.market.shops[shop_id]
        order = shop.orders[code]
        before = order.status
        self.market.set_status(order, status)
        if before == "waiting_payment" and status == "queueing":
            self._emit(shop, "ORDER_CREATED_SUCCESSFULLY", {"order_code": code, "status": status})
        else:
            self._emit(shop, "ORDER_STATUS_UPDATED", {"order_code": code, "status": status})
        return order

    def expire_app_tokens(self) -> None:
        """Every app token stops working now (tests of the app token's renewal)."""
        self._app_tokens = dict.fromkeys(self._app_tokens, self.market.now() - 1)

    # -- review -------------------------------------------------------------------------------------------

    def _advance(self, found: ProductRequest) -> str:
        """The request's state now: decided, or the automatic step its age has reached (approved by itself once
        ``review_seconds`` have passed, when set)."""
        if found.decided is not None:
            return found.decided
        age = self.market.now() - found.created_at
        if self.review_seconds is not None and age >= self.review_seconds:
            self._decide(found, APPROVED)
            return APPROVED
        step = int(age // self.step_seconds) if self.step_seconds > 0 else len(REVIEW_STEPS) - 1
        return REVIEW_STEPS[min(step, len(REVIEW_STEPS) - 1)]

    def _decide(self, found: ProductRequest, state: str, reason: str | None = None) -> None:
        found.decided, found.reason, found.decided_at = state, reason, self.market.now()
        if state != APPROVED:
            return
        shop = self.market.shops[found.shop_id]
        body = found.body
        variants = body.get("variants") or []
        image_ids = [self._image_id(url) for url in [body.get("image"), *(body.get("images") or [])] if url]
        for variant in variants:
            product_id = self.market.new_id()
            option = clean_line(str(variant.get("option1") or ""))
            name = f"{body['name']} - {option}" if option and len(variants) > 1 else str(body["name"])
            quantity = sum(int(w.get("qtyAvailable", 0)) for w in variant.get("warehouse_stocks") or [])
            item = Item(
                product_id,
                name,
                str(body.get("description") or ""),
                str(body.get("category_id")),
                "inactive",
                [i for i in image_ids if i],
                attributes={
                    "tiki_sku": str(self.market.new_id() * 7 + 1_000_000_000_000),
                    "request_id": found.request_id,
                },
                created_at=self.market.now(),
                updated_at=self.market.now(),
            )
            item.skus[product_id] = Sku(
                product_id, str(variant["sku"]), option or name, int(variant["price"]), max(quantity, 0), item.image_ids
            )
            shop.items[product_id] = item
            found.product_ids.append(product_id)

    def _image_id(self, url: Any) -> str | None:
        image_id = str(url).rsplit("/", 1)[-1].split(".")[0]
        return image_id if image_id in self.market.images else None

    # -- events -------------------------------------------------------------------------------------------

    def _emit(self, shop: Shop, event_type: str, payload: dict[str, Any]) -> None:
        event = {
            "id": uuid.uuid4().hex,
            "type": event_type,
            "sid": shop.shop_id,
            "created_at": _time(self.market.now()),
            "version": "v1",
            "payload": payload,
        }
        for subscription in self.state.subscriptions.values():
            if subscription.active and subscription.sid == shop.shop_id and subscription.event_type == event_type:
                queue = self.state.queues.get(subscription.queue_code)
                if queue is not None:
                    queue.pending.append(dict(event))

    def _redeliver(self, queue: Queue) -> None:
        now = self.market.now()
        expired = [ack_id for ack_id, flight in queue.in_flight.items() if flight.deadline <= now]
        back: list[dict[str, Any]] = []
        for ack_id in expired:
            back.extend(queue.in_flight.pop(ack_id).events)
        queue.pending[:0] = back  # in the order they were first pulled: oldest first

    # -- the front door ------------------------------------------------------------------------------------

    def _bearer(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TikiError(401, "invalid_request", "The request is missing a Bearer access token.")
        return token.strip()

    def _caller(self, request: Request, kind: str) -> Shop | None:
        """The seller whose token this is (None: the app's own token), refused where ``kind`` wants the other."""
        token = self._bearer(request)
        now = self.market.now()
        app_expiry = self._app_tokens.get(token)
        if app_expiry is not None:
            if app_expiry <= now:
                raise TikiError(401, "invalid_token", "The access token expired.")
            if kind == "seller":
                raise TikiError(403, "PERMISSION_DENIED", "This API needs a seller's token, not the app's own.")
            return None
        shop = self.market.shop_for_token(token)
        if shop is None or shop.access_expires_at <= now:
            raise TikiError(401, "invalid_token", "The access token is invalid or expired.")
        if kind == "app":
            raise TikiError(403, "PERMISSION_DENIED", "Queues belong to the app: use its client_credentials token.")
        return shop

    def _endpoint(self, op: str, handler: Handler, kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = time.monotonic()
            shop: Shop | None = None
            call: _Call | None = None
            try:
                shop = self._caller(request, kind)
                try:
                    await self.market.door(op, shop)
                except Refused as refused:
                    raise _refusal(refused) from refused
                call = await self._read(request, shop)
                answer = await handler(self, call)
            except TikiError as error:
                self.market.record(op, shop, call.size if call else 0, started, error.code)
                return error.response()
            self.market.record(op, shop, call.size, started, "ok")
            return JSONResponse(answer)

        return endpoint

    async def _read(self, request: Request, shop: Shop | None) -> _Call:
        files: dict[str, tuple[bytes, str]] = {}
        body: Any = None
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            async with request.form() as form:
                for key, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        files[key] = (await value.read(), value.content_type or "")
        elif request.method in ("POST", "PUT"):
            raw = await request.body()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise _bad("The body is not valid JSON.", "INVALID_JSON") from exc
        return _Call(request, dict(request.query_params), body, shop, own_base_url(request), files)

    # -- OAuth --------------------------------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        """The seller's consent page: pick a shop (or name a new one) and go back with a one-time code."""
        query = request.query_params
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            return HTMLResponse("<p>invalid_client or unsupported_response_type.</p>", status_code=400)
        redirect_uri, state = query.get("redirect_uri"), query.get("state") or ""
        if not redirect_uri:
            return HTMLResponse("<p>redirect_uri is required.</p>", status_code=400)
        if len(state) < 8:
            return HTMLResponse("<p>state must be at least 8 characters.</p>", status_code=400)
        shop_id = query.get("seller_id")
        if query.get("shop_name"):
            shop_id = self.add_shop(query["shop_name"])["seller_id"]
        if shop_id in self.market.shops:
            code = secrets.token_urlsafe(24)
            self._codes[code] = _Code(shop_id, redirect_uri, self.market.now() + CODE_TTL)
            separator = "&" if "?" in redirect_uri else "?"
            back = urlencode({"code": code, "scope": query.get("scope", ""), "state": state})
            return RedirectResponse(f"{redirect_uri}{separator}{back}", status_code=302)
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
            "<!doctype html><html lang=vi><meta charset=utf-8><title>Tiki sandbox · authorise</title>"
            f"<h1>Authorise app {_esc(self.client_id)}</h1><p>Scope: {_esc(query.get('scope', ''))}</p>"
            f"<form method=get>{hidden}{choices}"
            "<p>or a new shop: <input name=shop_name placeholder='Vườn bưởi Phúc Trạch'></p>"
            "<button type=submit>Authorise</button></form></html>"
        )

    def _client_of(self, request: Request, form: Mapping[str, str]) -> bool:
        header = request.headers.get("authorization", "")
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        if header.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(header[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
        return secrets.compare_digest(client_id, self.client_id) and secrets.compare_digest(
            client_secret, self.client_secret
        )

    def _token_answer(self, shop: Shop) -> dict[str, Any]:
        return {
            "access_token": shop.access_token,
            "refresh_token": shop.refresh_token,
            "expires_in": int(shop.access_expires_at - self.market.now()),
            "scope": "offline product order inventory",
            "token_type": "bearer",
        }

    async def _token(self, request: Request) -> Response:
        def oauth_error(code: str, description: str, status: int = 400) -> JSONResponse:
            return JSONResponse({"error": code, "error_description": description}, status_code=status)

        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return oauth_error("invalid_request", "The token endpoint takes application/x-www-form-urlencoded.")
        async with request.form() as raw:
            form = {key: str(value) for key, value in raw.items()}
        if not self._client_of(request, form):
            return oauth_error("invalid_client", "Client authentication failed.", 401)
        now = self.market.now()
        grant = form.get("grant_type")
        if grant == "authorization_code":
            found = self._codes.pop(form.get("code", ""), None)
            if found is None or found.expires_at <= now or found.shop_id not in self.market.shops:
                return oauth_error("invalid_grant", "The authorization code is invalid, used or expired.")
            if form.get("redirect_uri") != found.redirect_uri:
                return oauth_error("invalid_grant", "The redirect_uri does not match the authorisation request.")
            seller = self.market.shops[found.shop_id]
            self.market.issue_tokens(seller, access_ttl=self.access_ttl, refresh_ttl=self.refresh_ttl)
            return JSONResponse(self._token_answer(seller))
        if grant == "refresh_token":
            token = form.get("refresh_token", "")
            shop = next(
                (s for s in self.market.shops.values() if token and secrets.compare_digest(s.refresh_token, token)),
                None,
            )
            if shop is None or shop.refresh_expires_at <= now:
                return oauth_error("invalid_grant", "The refresh token is invalid, used or expired.")
            shop.used_refresh_tokens.add(token)
            self.market.issue_tokens(shop, access_ttl=self.access_ttl, refresh_ttl=self.refresh_ttl)
            return JSONResponse(self._token_answer(shop))
        if grant == "client_credentials":
            token = secrets.token_hex(16)
            self._app_tokens[token] = now + self.access_ttl
            return JSONResponse({"access_token": token, "expires_in": int(self.access_ttl), "token_type": "bearer"})
        return oauth_error("unsupported_grant_type", f"The grant type {grant!r} is not supported.")

    # -- sellers and images --------------------------------------------------------------------------------

    async def seller_me(self, call: _Call) -> Any:
        assert call.shop is not None
        return {"id": int(call.shop.shop_id), "name": call.shop.name, "active": 1, "can_update_product": 1}

    async def image_upload(self, call: _Call) -> Any:
        if "file" not in call.files:
            raise _bad("file is required (multipart/form-data).")
        data, _ = call.files["file"]
        if len(data) > MAX_IMAGE_BYTES:
            raise _bad("The image must be at most 5 MB.", "IMAGE_TOO_LARGE")
        try:
            with PILImage.open(io.BytesIO(data)) as picture:
                kind, (width, height) = picture.format, picture.size
        except (UnidentifiedImageError, OSError) as exc:
            raise _bad("Only JPEG and PNG images are accepted.", "IMAGE_INVALID") from exc
        if kind not in {"JPEG", "PNG"}:
            raise _bad("Only JPEG and PNG images are accepted.", "IMAGE_INVALID")
        if min(width, height) < 500 or max(width, height) > 4000:
            raise _bad("Each side of the image must be between 500 and 4000 px.", "IMAGE_SIZE_INVALID")
        extension = "jpg" if kind == "JPEG" else "png"
        image = self.market.store_image(
            data, f"image/{'jpeg' if kind == 'JPEG' else 'png'}", lambda i: f"{call.base_url}images/{i}.{extension}"
        )
        return {"url": image.url}

    async def _image(self, request: Request) -> Response:
        image_id = request.path_params["image_id"].split(".")[0]
        return image_response(self.market, image_id, cache_control="max-age=86400")

    # -- product requests ----------------------------------------------------------------------------------

    def _check_request(self, shop: Shop, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad("The body must be a product request object.")
        name = clean_line(str(body.get("name") or ""))
        if not name:
            raise _bad("name is required.")
        if len(name) > 255:
            raise _bad("name must be at most 255 characters.")
        if not body.get("category_id"):
            raise _bad("category_id is required.")
        if not body.get("image"):
            raise _bad("image is required.", "IMAGE_REQUIRED")
        for url in [body["image"], *(body.get("images") or [])]:
            if self._image_id(url) is None:
                raise _bad(f"The image {url} cannot be downloaded.", "IMAGE_INVALID")
        variants = body.get("variants")
        if not isinstance(variants, list) or not variants:
            raise _bad("variants must hold at least one variant.")
        if len(variants) > MAX_VARIANTS:
            raise _bad(f"A product request holds at most {MAX_VARIANTS} variants.")
        options = body.get("option_attributes") or []
        waiting = {
            str(v.get("sku"))
            for r in self.state.requests.values()
            if r.shop_id == shop.shop_id and self._advance(r) not in (APPROVED, REJECTED, DELETED)
            for v in r.body.get("variants") or []
        }
        seen: set[str] = set()
        for variant in variants:
            sku = clean_line(str(variant.get("sku") or ""))
            if not sku:
                raise _bad("Each variant needs its sku.")
            if sku in seen or shop.by_seller_sku(sku) is not None or sku in waiting:
                raise _bad(f"The sku {sku} already exists for this seller.", "SKU_EXISTED")
            seen.add(sku)
            if _int(variant.get("price"), "price") <= 0:
                raise _bad("price must be greater than 0.")
            if options and not variant.get("option1"):
                raise _bad("Each variant needs option1 when option_attributes are given.")
            for stock in variant.get("warehouse_stocks") or []:
                if _int(stock.get("warehouseId"), "warehouseId") != WAREHOUSE_ID:
                    raise _bad(f"Warehouse {stock.get('warehouseId')} is not this seller's.", "WAREHOUSE_NOT_FOUND")
                _int(stock.get("qtyAvailable"), "qtyAvailable", low=0)
            variant["sku"] = sku
        body["name"] = name
        body["description"] = clean_text(str(body.get("description") or ""))
        return body

    async def request_create(self, call: _Call) -> Any:
        assert call.shop is not None
        body = self._check_request(call.shop, call.body)
        call.size = len(body["variants"])
        found = ProductRequest(
            request_id=str(self.market.new_id() * 1_000_003),
            track_id=uuid.uuid4().hex,
            shop_id=call.shop.shop_id,
            body=body,
            created_at=self.market.now(),
        )
        self.state.requests[found.request_id] = found
        return {"track_id": found.track_id, "state": self._advance(found)}

    def _own_request(self, call: _Call, found: ProductRequest | None) -> ProductRequest:
        assert call.shop is not None
        if found is None or found.shop_id != call.shop.shop_id:
            raise TikiError(404, "REQUEST_NOT_FOUND", "No such product request for this seller.")
        return found

    async def tracking(self, call: _Call) -> Any:
        track_id = call.path("track_id")
        found = self._own_request(call, next((r for r in self.state.requests.values() if r.track_id == track_id), None))
        state = self._advance(found)
        return {
            "track_id": found.track_id,
            "request_id": found.request_id,
            "state": state,
            "reason": found.reason,
            "created_at": _time(found.created_at),
        }

    def _product(self, item: Item) -> dict[str, Any]:
        [sku] = item.skus.values()
        return {
            "product_id": item.item_id,
            "sku": item.attributes.get("tiki_sku"),
            "original_sku": sku.seller_sku,
            "name": item.name,
            "active": 1 if item.status == "active" else 0,
            "price": sku.price_vnd,
            "market_price": sku.price_vnd,
            "images": [{"url": f"images/{i}"} for i in item.image_ids],
            "warehouse_quantities": [{"warehouse_id": WAREHOUSE_ID, "qty_available": sku.stock}],
        }

    async def request_get(self, call: _Call) -> Any:
        assert call.shop is not None
        found = self._own_request(call, self.state.requests.get(call.path("request_id")))
        state = self._advance(found)
        items = [call.shop.items[i] for i in found.product_ids if i in call.shop.items]
        return {
            "request_id": found.request_id,
            "state": state,
            "kind": "create_product",
            "created_at": _time(found.created_at),
            "approved_at": _time(found.decided_at) if state == APPROVED and found.decided_at else None,
            "reasons": [found.reason] if found.reason else None,
            "products": [self._product(item) for item in items],
        }

    # -- products ------------------------------------------------------------------------------------------

    def _find(self, shop: Shop, entry: Mapping[str, Any]) -> Item | None:
        if entry.get("product_id") is not None:
            return shop.items.get(_int(entry["product_id"], "product_id"))
        if entry.get("original_sku"):
            found = shop.by_seller_sku(clean_line(str(entry["original_sku"])))
            return found[0] if found else None
        raise _bad("product_id or original_sku is required.")

    @staticmethod
    def _check_sku(entry: Mapping[str, Any]) -> dict[str, Any]:
        """The changes an updateSku entry asks for, all checked before any is applied."""
        changes: dict[str, Any] = {}
        if entry.get("price") is not None:
            price = _int(entry["price"], "price")
            if price <= 0:
                raise _bad("price must be greater than 0.")
            changes["price"] = price
        if entry.get("active") is not None:
            changes["active"] = _int(entry["active"], "active", low=0, high=1)
        if entry.get("warehouse_quantities") is not None:
            rows = entry["warehouse_quantities"]
            if not isinstance(rows, list):
                raise _bad("warehouse_quantities must be a list.")
            for row in rows:
                if _int(row.get("warehouse_id"), "warehouse_id") != WAREHOUSE_ID:
                    raise _bad(f"Warehouse {row.get('warehouse_id')} is not this seller's.", "WAREHOUSE_NOT_FOUND")
                changes["stock"] = _int(row.get("qty_available"), "qty_available", low=0)
        if not changes:
            raise _bad("Nothing to update: give price, active or warehouse_quantities.")
        return changes

    def _apply(self, item: Item, changes: Mapping[str, Any]) -> None:
        [sku] = item.skus.values()
        sku.price_vnd = changes.get("price", sku.price_vnd)
        sku.stock = changes.get("stock", sku.stock)
        if "active" in changes:
            item.status = "active" if changes["active"] else "inactive"
        item.updated_at = self.market.now()

    async def update_sku(self, call: _Call) -> Any:
        assert call.shop is not None
        if not isinstance(call.body, dict):
            raise _bad("The body must be an object.")
        item = self._find(call.shop, call.body)
        if item is None:
            raise TikiError(404, "PRODUCT_NOT_FOUND", "No such product for this seller.")
        self._apply(item, self._check_sku(call.body))
        return {"state": APPROVED, "product_id": item.item_id}

    async def update_skus(self, call: _Call) -> Any:
        assert call.shop is not None
        data = call.body.get("data") if isinstance(call.body, dict) else None
        if not isinstance(data, list) or not data:
            raise _bad("data must hold at least one entry.")
        if len(data) > MAX_SKUS:
            raise _bad(f"data holds at most {MAX_SKUS} entries.", "TOO_MANY_ITEMS")
        call.size = len(data)
        results: list[dict[str, Any]] = []
        for entry in data:
            if not isinstance(entry, dict):
                raise _bad("Each entry of data must be an object.")
            item = self._find(call.shop, entry)
            ident = {"product_id": entry.get("product_id"), "original_sku": entry.get("original_sku")}
            if item is None:
                results.append({**ident, "state": REJECTED, "code": "PRODUCT_NOT_FOUND", "reason": "No such product."})
                continue
            try:
                changes = self._check_sku(entry)
            except TikiError as error:
                results.append({**ident, "state": REJECTED, "code": error.code, "reason": error.message})
                continue
            self._apply(item, changes)
            results.append({**ident, "state": APPROVED})
        return {"data": results}

    async def product_get(self, call: _Call) -> Any:
        assert call.shop is not None
        item = call.shop.items.get(_int(call.path("product_id"), "product_id"))
        if item is None:
            raise TikiError(404, "PRODUCT_NOT_FOUND", "No such product for this seller.")
        return self._product(item)

    # -- orders --------------------------------------------------------------------------------------------

    def _order_json(self, order: Order, *, items: bool) -> dict[str, Any]:
        items_total = sum(line.quantity * line.unit_price_vnd for line in order.lines)
        body: dict[str, Any] = {
            "id": int(order.order_id),
            "code": order.order_id,
            "status": order.status,
            "fulfillment_type": "dropship",
            "created_at": _time(order.created_at),
            "updated_at": _time(order.updated_at),
            "invoice": {
                "items_count": len(order.lines),
                "items_quantity": sum(line.quantity for line in order.lines),
                "subtotal": items_total,
                "items_total": items_total,
                "shipping_amount_after_discount": order.shipping_fee_vnd,
                "grand_total": order.total_vnd,
            },
            "customer": {"id": 1, "full_name": order.buyer_name},
            "cancel_info": {"reason_text": order.cancel_reason} if order.cancel_reason else None,
        }
        if items:
            body["items"] = [
                {
                    "id": line.line_id,
                    "product": {
                        "id": line.item_id,
                        "seller_product_code": line.seller_sku,
                        "name": line.name,
                    },
                    "qty": line.quantity,
                    "invoice": {"price": line.unit_price_vnd, "row_total": line.unit_price_vnd * line.quantity},
                }
                for line in order.lines
            ]
        return body

    async def orders_list(self, call: _Call) -> Any:
        assert call.shop is not None
        params = call.params
        page = _int(params.get("page", "1"), "page", low=1)
        limit = _int(params.get("limit", "20"), "limit", low=1, high=MAX_ORDERS_PAGE)
        bounds = {
            name: _parse_time(params.get(name), name)
            for name in ("updated_from_date", "updated_to_date", "created_from_date", "created_to_date")
        }
        status = params.get("status", "")
        exclude = status.startswith("nin|")
        statuses = {s for s in status.removeprefix("nin|").split(",") if s}

        def within(ts: float, low: float | None, high: float | None) -> bool:
            return (low is None or ts >= low) and (high is None or ts <= high)

        matching = [
            o
            for o in call.shop.orders.values()
            if within(o.updated_at, bounds["updated_from_date"], bounds["updated_to_date"])
            and within(o.created_at, bounds["created_from_date"], bounds["created_to_date"])
            and (not statuses or ((o.status in statuses) != exclude))
        ]
        field_name, _, direction = params.get("order_by", "created_at|desc").partition("|")
        key = "updated_at" if field_name == "updated_at" else "created_at"
        matching.sort(key=lambda o: (getattr(o, key), int(o.order_id)), reverse=direction != "asc")
        chunk = matching[(page - 1) * limit : page * limit]
        call.size = len(chunk)
        return {
            "data": [self._order_json(o, items=False) for o in chunk],
            "paging": {
                "total": len(matching),
                "per_page": limit,
                "current_page": page,
                "last_page": max(1, -(-len(matching) // limit)),
                "from": (page - 1) * limit + 1 if chunk else None,
                "to": (page - 1) * limit + len(chunk) if chunk else None,
            },
        }

    def _order(self, call: _Call) -> Order:
        assert call.shop is not None
        order = call.shop.orders.get(call.path("code"))
        if order is None:
            raise TikiError(404, "ORDER_NOT_FOUND", f"Order {call.path('code')} not found.")
        return order

    async def order_get(self, call: _Call) -> Any:
        return self._order_json(self._order(call), items=True)

    async def confirm_available(self, call: _Call) -> Any:
        assert call.shop is not None
        order = self._order(call)
        body = call.body if isinstance(call.body, dict) else {}
        answer = body.get("confirmation_status")
        if answer not in ("available", "unavailable"):
            raise _bad("confirmation_status must be available or unavailable.")
        if order.status != "queueing":
            raise _bad(f"The order is {order.status}: only a queueing order can be confirmed.", "ORDER_STATUS_INVALID")
        if answer == "available":
            self.set_order_status(call.shop.shop_id, order.order_id, "ready_to_ship")
        else:
            for line in order.lines:
                if line.sku_id is not None and (found := call.shop.sku(line.sku_id)) is not None:
                    found[1].stock += line.quantity  # the units cancelled are on sale again
            order.cancel_reason = clean_line(str(body.get("reason") or "Seller: out of stock"))
            self.set_order_status(call.shop.shop_id, order.order_id, "canceled")
        return {"code": order.order_id, "status": order.status}

    # -- the event queue -----------------------------------------------------------------------------------

    @staticmethod
    def _queue_json(queue: Queue) -> dict[str, Any]:
        return {"code": queue.code, "name": queue.name, "status": "ACTIVE"}

    async def queues_list(self, call: _Call) -> Any:
        return [self._queue_json(q) for q in self.state.queues.values() if q.client_id == self.client_id]

    async def queue_create(self, call: _Call) -> Any:
        name = clean_line(str((call.body or {}).get("name") or "")) if isinstance(call.body, dict) else ""
        if not name:
            raise _bad("name is required.")
        queue = Queue(str(uuid.uuid4()), name, self.client_id)
        self.state.queues[queue.code] = queue
        return self._queue_json(queue)

    def _queue(self, call: _Call) -> Queue:
        queue = self.state.queues.get(call.path("code"))
        if queue is None or queue.client_id != self.client_id:
            raise TikiError(404, "QUEUE_NOT_FOUND", "No such queue.")
        return queue

    @staticmethod
    def _subscription_json(subscription: Subscription) -> dict[str, Any]:
        return {
            "code": subscription.code,
            "active": subscription.active,
            "event_type": subscription.event_type,
            "sid": subscription.sid,
        }

    async def subscriptions_list(self, call: _Call) -> Any:
        assert call.shop is not None
        queue = self._queue(call)
        return [
            self._subscription_json(s)
            for s in self.state.subscriptions.values()
            if s.queue_code == queue.code and s.sid == call.shop.shop_id
        ]

    async def subscription_create(self, call: _Call) -> Any:
        assert call.shop is not None
        queue = self._queue(call)
        event_type = (call.body or {}).get("event_type") if isinstance(call.body, dict) else None
        if event_type not in EVENT_TYPES:
            raise _bad(f"event_type must be one of {', '.join(sorted(EVENT_TYPES))}.")
        for existing in self.state.subscriptions.values():
            if (existing.queue_code, existing.event_type, existing.sid) == (queue.code, event_type, call.shop.shop_id):
                existing.active = True
                return self._subscription_json(existing)
        subscription = Subscription(str(uuid.uuid4()), queue.code, str(event_type), call.shop.shop_id)
        self.state.subscriptions[subscription.code] = subscription
        return self._subscription_json(subscription)

    async def events_pull(self, call: _Call) -> Any:
        queue = self._queue(call)
        wanted = (call.body or {}).get("max_messages", MAX_PULL) if isinstance(call.body, dict) else MAX_PULL
        limit = _int(wanted, "max_messages", low=1, high=MAX_PULL)
        self._redeliver(queue)
        events, queue.pending = queue.pending[:limit], queue.pending[limit:]
        call.size = len(events)
        if not events:
            return {"ack_id": None, "events": []}
        ack_id = secrets.token_hex(16)
        queue.in_flight[ack_id] = InFlight(self.market.now() + self.ack_deadline_seconds, events)
        queue.delivered += len(events)
        return {"ack_id": ack_id, "events": events}

    async def events_ack(self, call: _Call) -> Any:
        queue = self._queue(call)
        ack_id = (call.body or {}).get("ack_id") if isinstance(call.body, dict) else None
        if not ack_id:
            raise _bad("ack_id is required.")
        self._redeliver(queue)  # an ack after the deadline is too late: its events are back in the queue
        if queue.in_flight.pop(str(ack_id), None) is None:
            raise TikiError(404, "ACK_ID_NOT_FOUND", "The ack_id is unknown or expired; its events come again.")
        return {"acked": True}

    # -- the shop's page -----------------------------------------------------------------------------------

    async def _shop_page(self, request: Request) -> Response:
        shop = self.market.shops.get(request.path_params["seller_id"])
        if shop is None:
            return HTMLResponse("<p>No such shop.</p>", status_code=404)
        base = own_base_url(request)
        links = PageLinks(
            image_url=lambda image_id: f"{base}images/{image_id}",
            order_form_action=f"{base}sandbox/shops/{shop.shop_id}/orders",
        )
        page = shop_page(self.market, shop, links, title="Tiki", accent="#1a94ff")
        rows = "".join(
            f"<tr><td><code>{_esc(r.track_id[:12])}…</code></td><td>{_esc(str(r.body.get('name')))}</td>"
            f"<td>{_esc(self._advance(r))}</td><td>{_esc(r.reason or '')}</td></tr>"
            for r in sorted(self.state.requests.values(), key=lambda r: r.created_at, reverse=True)[:20]
            if r.shop_id == shop.shop_id
        )
        section = (
            "<section><h2>Product requests (Tiki reviews each one)</h2><table>"
            f"{rows or '<tr><td>No product requests yet.</td></tr>'}</table></section>"
        )
        return HTMLResponse(page.replace("</main>", section + "</main>", 1))

    async def _buy(self, request: Request) -> Response:
        """The page's "buy" button: a paid order, exactly as :meth:`place_order` makes one."""
        return await buy_from_page(
            self.market,
            request,
            request.path_params["seller_id"],
            self.place_order,
            unknown_product="<p>That product is not on sale.</p>",
        )


def _refusal(refused: Refused) -> TikiError:
    if refused.fault is Fault.throttle:
        return TikiError(429, "TOO_MANY_REQUESTS", "Too many requests.", retry_after=refused.retry_after or 1.0)
    if refused.fault is Fault.timeout:
        return TikiError(504, "GATEWAY_TIMEOUT", "The upstream service timed out.")
    return TikiError(500, "INTERNAL_ERROR", "Internal server error.")


def _esc(value: str) -> str:
    return html.escape(value, quote=True)


# (path, method, handler, whose token: "seller", "app" or "any")
API: Sequence[tuple[str, str, Handler, str]] = (
    ("/integration/v2/sellers/me", "GET", TikiSandbox.seller_me, "seller"),
    ("/integration/v2/media/images", "POST", TikiSandbox.image_upload, "seller"),
    ("/integration/v2.1/requests", "POST", TikiSandbox.request_create, "seller"),
    ("/integration/v2/tracking/{track_id}", "GET", TikiSandbox.tracking, "seller"),
    ("/integration/v2/requests/{request_id}", "GET", TikiSandbox.request_get, "seller"),
    ("/integration/v2/products/updateSku", "PUT", TikiSandbox.update_sku, "seller"),
    ("/integration/v2.1/products/updateSkus", "PUT", TikiSandbox.update_skus, "seller"),
    ("/integration/v2/products/{product_id}", "GET", TikiSandbox.product_get, "seller"),
    ("/integration/v2/orders", "GET", TikiSandbox.orders_list, "seller"),
    ("/integration/v2/orders/{code}", "GET", TikiSandbox.order_get, "seller"),
    ("/integration/v2/orders/{code}/dropship/confirm-available", "POST", TikiSandbox.confirm_available, "seller"),
    ("/integration/v1/queues", "GET", TikiSandbox.queues_list, "app"),
    ("/integration/v1/queues", "POST", TikiSandbox.queue_create, "app"),
    ("/integration/v1/queues/{code}/subscriptions", "GET", TikiSandbox.subscriptions_list, "seller"),
    ("/integration/v1/queues/{code}/subscriptions", "POST", TikiSandbox.subscription_create, "seller"),
    ("/integration/v1/queues/{code}/events/pull", "POST", TikiSandbox.events_pull, "app"),
    ("/integration/v1/queues/{code}/events/ack", "POST", TikiSandbox.events_ack, "app"),
)
