"""A local fake of the Stripe API (marketplaces.md §8), enough for the storefront's checkout: stripe-python, pointed at
it (``StripeClient(base_addresses={"api": <base>})``), runs against it unchanged.

One ASGI app; mount it anywhere (``app.mount("/sandbox/stripe", fake.app)``):

- ``/v1/...``: the API, ``Authorization: Bearer <secret key>``, form-encoded parameters in Stripe's bracket notation
  (``line_items[0][price_data][unit_amount]``), JSON answers in Stripe's shapes and its error envelope
  ``{"error": {"type", "code", "message", "param"}}`` (401 for a bad key, 400 for a bad parameter, 404
  ``resource_missing``, 500 ``api_error`` for an injected fault):

  - ``POST /v1/checkout/sessions`` (``mode=payment`` with ``price_data`` line items; ``expires_at`` 30 minutes to
    24 hours ahead; ``client_reference_id``, ``metadata``, ``payment_intent_data[metadata]``, ``locale``),
    ``GET /v1/checkout/sessions`` (filter ``payment_intent``), ``GET /v1/checkout/sessions/{id}``
    (``expand[]=line_items``), ``GET /v1/checkout/sessions/{id}/line_items``,
    ``POST /v1/checkout/sessions/{id}/expire`` (open sessions only);
  - ``GET /v1/payment_intents/{id}``, ``GET /v1/charges/{id}``;
  - ``POST /v1/refunds`` (``payment_intent``, optional ``amount``: never more than what is left),
    ``GET /v1/refunds`` (filter ``payment_intent``), ``GET /v1/refunds/{id}``;
  - ``GET /v1/events/{id}``; ``POST /v1/webhook_endpoints`` (``url``, ``enabled_events``; answers its ``secret``).

- Amounts are in the currency's smallest unit; VND is zero-decimal, so ``unit_amount=150000`` is 150.000 ₫.
- ``Idempotency-Key`` on a POST: the same key with the same parameters replays the first answer
  (``Idempotent-Replayed: true``); with other parameters it is refused (400 ``idempotency_error``). A request refused
  by validation saves nothing, as Stripe does.
- Events are signed the documented way (``Stripe-Signature: t=<unix>,v1=<HMAC-SHA256(secret, "<t>.<body>")>``) and
  sent to every endpoint that asked for their type: at once in the background (the demo), or kept in
  :attr:`StripeFake.outbox` until a test delivers them, in any order and as often as it likes.
- ``/pay/{session id}``: the hosted payment page, labelled TEST MODE, whose buttons pay (the session completes:
  ``checkout.session.completed``) or go back to the shop's ``cancel_url``. :meth:`StripeFake.pay` does the same from
  a test. Sessions past ``expires_at`` expire by themselves (``checkout.session.expired``) on the fake's clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from agrimarket.observability import get_logger

log = get_logger(__name__)

Clock = Callable[[], float]
API_VERSION = "2025-11-17.clover"
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
MAX_AMOUNT = 99_999_999  # Stripe's eight digits in the smallest unit
MIN_EXPIRY_SECONDS = 30 * 60
MAX_EXPIRY_SECONDS = 24 * 3600
SIGNATURE_HEADER = "Stripe-Signature"


class StripeError(Exception):
    """Answered in Stripe's error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": {"type": type_, "message": message}}
        if code:
            self.body["error"]["code"] = code
        if param:
            self.body["error"]["param"] = param


def _missing(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def _invalid(param: str, message: str, code: str = "parameter_invalid") -> StripeError:
    return StripeError(400, message, code=code, param=param)


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header Stripe sends with ``payload`` (stripe-python ``_webhook.py``)."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


# -- form parameters in Stripe's bracket notation ---------------------------------------------------------------------

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def parse_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``a[b][0][c]=v`` pairs into nested dicts; a dict whose keys are all indices becomes a list."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise _invalid(key, f"Invalid parameter name: {key}")
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for i, part in enumerate(parts):
            if part == "":  # a[]=x: the next index
                part = str(len(node))
            if i == len(parts) - 1:
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise _invalid(key, f"Invalid parameter: {key}")
                node = child
    parsed: dict[str, Any] = _lists(root)
    return parsed


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def _int(params: Mapping[str, Any], name: str, *, required: bool = False, minimum: int = 0) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise _invalid(name, f"Missing required param: {name}.", "parameter_missing")
        return None
    if not isinstance(raw, str) or not raw.lstrip("-").isdigit():
        raise _invalid(name, f"Invalid integer: {raw}")
    value = int(raw)
    if value < minimum:
        raise _invalid(name, f"This value must be greater than or equal to {minimum}.")
    return value


def _metadata(raw: Any, param: str) -> dict[str, str]:
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise _invalid(param, "Invalid object")
    if len(raw) > 50:
        raise _invalid(param, "Metadata can have up to 50 keys.")
    for key, value in raw.items():
        if len(key) > 40 or not isinstance(value, str) or len(value) > 500:
            raise _invalid(f"{param}[{key}]", "Metadata keys are at most 40 characters, values at most 500.")
    return dict(raw)


def _expand(params: Mapping[str, Any]) -> set[str]:
    raw = params.get("expand") or []
    return set(raw if isinstance(raw, list) else [raw])


# -- state -------------------------------------------------------------------------------------------------------------


@dataclass
class Endpoint:
    url: str
    secret: str
    enabled_events: tuple[str, ...] = ("*",)
    id: str = field(default_factory=lambda: f"we_{secrets.token_hex(12)}")

    def wants(self, event_type: str) -> bool:
        return "*" in self.enabled_events or event_type in self.enabled_events


@dataclass
class Delivery:
    event_id: str
    event_type: str
    url: str
    status_code: int | None
    at: float


@dataclass
class Outgoing:
    """An event signed for one endpoint, not sent yet (``delivery="manual"``)."""

    event: dict[str, Any]
    endpoint: Endpoint

    @property
    def type(self) -> str:
        return str(self.event["type"])


@dataclass
class Saved:
    fingerprint: str
    status: int
    body: dict[str, Any]


class StripeFake:
    """The fake's state and its ASGI app (:attr:`app`). ``public_base``: where it is mounted, as browsers and the
    stripe library reach it (the hosted page's ``url`` points there)."""

    def __init__(
        self,
        *,
        api_key: str = "sk_test_agrimarket",
        public_base: str = "http://stripe.test",
        clock: Clock = time.time,
        http: httpx.AsyncClient | None = None,
        delivery: Literal["background", "manual"] = "background",
    ) -> None:
        self.api_keys = {api_key}
        self.public_base = public_base.rstrip("/")
        self.clock = clock
        self.offset = 0.0  # seconds the fake's clock is moved on (``advance``)
        self.http = http
        self.delivery = delivery
        self.sessions: dict[str, dict[str, Any]] = {}
        self.line_items: dict[str, list[dict[str, Any]]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.endpoints: list[Endpoint] = []
        self.outbox: list[Outgoing] = []
        self.deliveries: list[Delivery] = []
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, idempotency key)
        self.faults: dict[str, int] = {}  # "POST /v1/refunds" → how many of the next calls answer 500
        self._saved: dict[tuple[str, str], Saved] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        routes = [
            Route("/v1/checkout/sessions", self._api(self._create_session), methods=["POST"]),
            Route("/v1/checkout/sessions", self._api(self._list_sessions), methods=["GET"]),
            Route("/v1/checkout/sessions/{id}", self._api(self._get_session), methods=["GET"]),
            Route("/v1/checkout/sessions/{id}/line_items", self._api(self._get_line_items), methods=["GET"]),
            Route("/v1/checkout/sessions/{id}/expire", self._api(self._expire_session), methods=["POST"]),
            Route("/v1/payment_intents/{id}", self._api(self._get_payment_intent), methods=["GET"]),
            Route("/v1/charges/{id}", self._api(self._get_charge), methods=["GET"]),
            Route("/v1/refunds", self._api(self._create_refund), methods=["POST"]),
            Route("/v1/refunds", self._api(self._list_refunds), methods=["GET"]),
            Route("/v1/refunds/{id}", self._api(self._get_refund), methods=["GET"]),
            Route("/v1/events/{id}", self._api(self._get_event), methods=["GET"]),
            Route("/v1/webhook_endpoints", self._api(self._create_endpoint), methods=["POST"]),
            Route("/pay/{id}", self._pay_page, methods=["GET"]),
            Route("/pay/{id}", self._pay_form, methods=["POST"]),
        ]
        self.app = Starlette(routes=routes)

    # -- for tests and the demo ---------------------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock() + self.offset)

    def add_endpoint(self, url: str, secret: str | None = None, events: tuple[str, ...] = ("*",)) -> Endpoint:
        endpoint = Endpoint(url, secret or f"whsec_{secrets.token_hex(16)}", events)
        self.endpoints.append(endpoint)
        return endpoint

    async def pay(
        self, session_id: str, *, name: str = "Nguyễn Văn An", email: str = "an@example.vn"
    ) -> dict[str, Any]:
        """The buyer pays on the hosted page: the session completes (``checkout.session.completed``)."""
        self._tick()
        session = self._session(session_id)
        if session["status"] != "open":
            raise StripeError(400, f"This Checkout Session is {session['status']}.", code="checkout_session_not_open")
        intent_id, charge_id = f"pi_{secrets.token_hex(12)}", f"ch_{secrets.token_hex(12)}"
        now = self.now()
        amount = int(session["amount_total"])
        self.payment_intents[intent_id] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount,
            "currency": session["currency"],
            "status": "succeeded",
            "latest_charge": charge_id,
            "metadata": dict(session.get("_payment_intent_metadata") or {}),
            "created": now,
            "livemode": False,
        }
        self.charges[charge_id] = {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "currency": session["currency"],
            "paid": True,
            "captured": True,
            "refunded": False,
            "status": "succeeded",
            "payment_intent": intent_id,
            "billing_details": {"name": name, "email": email},
            "created": now,
            "livemode": False,
        }
        session.update(
            status="complete",
            payment_status="paid",
            payment_intent=intent_id,
            customer_details={"name": name, "email": email},
        )
        await self._emit("payment_intent.succeeded", self.payment_intents[intent_id])
        return await self._emit("checkout.session.completed", self._public(session))

    async def expire(self, session_id: str) -> dict[str, Any]:
        """The session expires now (as Stripe does at ``expires_at``): ``checkout.session.expired``."""
        session = self._session(session_id)
        if session["status"] != "open":
            raise StripeError(
                400,
                f'Only Checkout Sessions with a status in ["open"] can be expired; this one is {session["status"]}.',
            )
        session.update(status="expired")
        return await self._emit("checkout.session.expired", self._public(session))

    async def advance(self, seconds: float) -> None:
        """Move the fake's clock on; sessions past their ``expires_at`` expire."""
        self.offset += seconds
        await self._expire_due()

    async def deliver(self, outgoing: Outgoing, *, timestamp: int | None = None) -> int:
        """Send one event to its endpoint, signed now (or at ``timestamp``); answers the endpoint's status code."""
        if self.http is None:
            raise RuntimeError("the fake has no HTTP client to deliver events with")
        body = json.dumps(outgoing.event, ensure_ascii=False, separators=(",", ":")).encode()
        header = sign(body, outgoing.endpoint.secret, timestamp if timestamp is not None else self.now())
        status: int | None = None
        try:
            response = await self.http.post(
                outgoing.endpoint.url,
                content=body,
                headers={"Content-Type": "application/json; charset=utf-8", SIGNATURE_HEADER: header},
            )
            status = response.status_code
        except httpx.HTTPError as exc:
            log.warning("stripe_fake_delivery_failed", url=outgoing.endpoint.url, error=str(exc))
        self.deliveries.append(Delivery(outgoing.event["id"], outgoing.type, outgoing.endpoint.url, status, self.now()))
        return status or 0

    async def deliver_all(self) -> list[int]:
        """Send what the outbox holds, in order, and empty it."""
        pending, self.outbox = self.outbox, []
        return [await self.deliver(outgoing) for outgoing in pending]

    def take(self, event_type: str) -> list[Outgoing]:
        """Remove from the outbox, and answer, the events of one type (to send them in another order)."""
        found = [o for o in self.outbox if o.type == event_type]
        self.outbox = [o for o in self.outbox if o.type != event_type]
        return found

    async def drain(self) -> None:
        """Wait for deliveries running in the background."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- the front door -----------------------------------------------------------------------------------------------

    def _api(
        self, fn: Callable[[Request, dict[str, Any]], Awaitable[dict[str, Any]]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            key = request.headers.get("idempotency-key")
            self.requests.append((request.method, request.url.path, key))
            try:
                self._authenticate(request)
                if request.method == "POST":
                    pairs = list((await request.form()).multi_items())
                    params = parse_params([(k, v) for k, v in pairs if isinstance(v, str)])
                else:
                    params = parse_params(list(request.query_params.multi_items()))
                route = request.scope.get("route")
                op = f"{request.method} {getattr(route, 'path', request.url.path)}"
                saved_key = (self._key_of(request), key) if key and request.method == "POST" else None
                fingerprint = f"{request.method} {request.url.path} " + json.dumps(params, sort_keys=True)
                if saved_key is not None and (saved := self._saved.get(saved_key)) is not None:
                    if saved.fingerprint != fingerprint:
                        raise StripeError(
                            400,
                            "Keys for idempotent requests can only be used with the same parameters they were first "
                            f"used with. Try using a key other than '{key}' if you meant to execute a different "
                            "request.",
                            type_="idempotency_error",
                        )
                    return JSONResponse(
                        saved.body, saved.status, headers={"Idempotent-Replayed": "true", "Idempotency-Key": key or ""}
                    )
                self._tick()
                if self.faults.get(op, 0) > 0:
                    self.faults[op] -= 1
                    raise StripeError(500, "An unknown error occurred", type_="api_error")
                request.state.idempotency_key = key
                body = await fn(request, params)
                status = 200
            except StripeError as error:
                # Validation failures are not saved; a request that ran (or failed inside) is.
                if not (key and request.method == "POST" and error.status >= 500):
                    return JSONResponse(error.body, error.status)
                body, status = error.body, error.status
            if key and request.method == "POST":
                self._saved[(self._key_of(request), key)] = Saved(fingerprint, status, body)
            await self._flush_background()
            headers = {"Request-Id": f"req_{secrets.token_hex(8)}"}
            if key:
                headers["Idempotency-Key"] = key
            return JSONResponse(body, status, headers=headers)

        return endpoint

    def _key_of(self, request: Request) -> str:
        auth = request.headers.get("authorization", "")
        return auth.removeprefix("Bearer ").strip()

    def _authenticate(self, request: Request) -> None:
        key = self._key_of(request)
        if not key:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if key not in self.api_keys:
            raise StripeError(401, f"Invalid API Key provided: {key[:8]}****{key[-4:]}", code="api_key_invalid")

    # -- checkout sessions --------------------------------------------------------------------------------------------

    async def _create_session(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("mode") != "payment":
            raise _invalid("mode", "Only `mode=payment` is supported by this fake.", "parameter_missing")
        success_url = params.get("success_url")
        if not success_url:
            raise _invalid("success_url", "Missing required param: success_url.", "parameter_missing")
        raw_items = params.get("line_items")
        if not isinstance(raw_items, list) or not raw_items:
            raise _invalid("line_items", "Missing required param: line_items.", "parameter_missing")
        currency: str | None = params.get("currency")
        items: list[dict[str, Any]] = []
        total = 0
        for i, raw in enumerate(raw_items):
            param = f"line_items[{i}]"
            if not isinstance(raw, dict):
                raise _invalid(param, "Invalid object")
            if "price" in raw:
                raise _missing("price", str(raw["price"]), f"{param}[price]")
            price_data = raw.get("price_data")
            if not isinstance(price_data, dict):
                raise _invalid(f"{param}[price_data]", "You must specify either `price` or `price_data`.")
            item_currency = str(price_data.get("currency") or "").lower()
            if not item_currency:
                raise _invalid(f"{param}[price_data][currency]", "Missing required param.", "parameter_missing")
            if currency is not None and item_currency != currency.lower():
                raise _invalid(f"{param}[price_data][currency]", "All line items must use the same currency.")
            currency = item_currency
            unit_amount = _int(price_data, "unit_amount", required=True)
            assert unit_amount is not None
            quantity = _int(raw, "quantity", required=True, minimum=1)
            assert quantity is not None
            product = price_data.get("product_data")
            if not isinstance(product, dict) or not product.get("name"):
                raise _invalid(
                    f"{param}[price_data][product_data][name]", "Missing required param.", "parameter_missing"
                )
            amount = unit_amount * quantity
            total += amount
            product_id, price_id = f"prod_{secrets.token_hex(7)}", f"price_{secrets.token_hex(12)}"
            items.append(
                {
                    "id": f"li_{secrets.token_hex(12)}",
                    "object": "item",
                    "amount_discount": 0,
                    "amount_subtotal": amount,
                    "amount_tax": 0,
                    "amount_total": amount,
                    "currency": item_currency,
                    "description": str(product["name"]),
                    "price": {
                        "id": price_id,
                        "object": "price",
                        "currency": item_currency,
                        "unit_amount": unit_amount,
                        "product": product_id,
                        "metadata": {},
                    },
                    "quantity": quantity,
                    "_product_metadata": _metadata(product.get("metadata"), f"{param}[price_data][product_data]"),
                }
            )
        assert currency is not None
        if total > MAX_AMOUNT:
            raise StripeError(
                400, f"Amount must be no more than {MAX_AMOUNT:,} {currency}.", code="amount_too_large", param="amount"
            )
        now = self.now()
        expires_at = _int(params, "expires_at") or now + MAX_EXPIRY_SECONDS
        if not now + MIN_EXPIRY_SECONDS <= expires_at <= now + MAX_EXPIRY_SECONDS:
            raise _invalid(
                "expires_at",
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.",
            )
        client_reference_id = params.get("client_reference_id")
        if client_reference_id is not None and len(client_reference_id) > 200:
            raise _invalid("client_reference_id", "client_reference_id is at most 200 characters.")
        intent_data = params.get("payment_intent_data") or {}
        session_id = f"cs_test_{secrets.token_urlsafe(40).replace('-', 'a').replace('_', 'b')}"
        session: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": client_reference_id,
            "created": now,
            "currency": currency,
            "customer_details": None,
            "expires_at": expires_at,
            "livemode": False,
            "locale": params.get("locale"),
            "metadata": _metadata(params.get("metadata"), "metadata"),
            "mode": "payment",
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": success_url,
            "url": f"{self.public_base}/pay/{session_id}",
            "_payment_intent_metadata": _metadata(intent_data.get("metadata"), "payment_intent_data[metadata]"),
        }
        self.sessions[session_id] = session
        self.line_items[session_id] = items
        return self._public(session, _expand(params))

    async def _list_sessions(self, _request: Request, params: dict[str, Any]) -> dict[str, Any]:
        limit = _int(params, "limit", minimum=1) or 10
        found = [
            s
            for s in sorted(self.sessions.values(), key=lambda s: -int(s["created"]))
            if not params.get("payment_intent") or s["payment_intent"] == params["payment_intent"]
        ]
        return self._list("/v1/checkout/sessions", [self._public(s) for s in found[:limit]], len(found) > limit)

    async def _get_session(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        return self._public(self._session(request.path_params["id"]), _expand(params))

    async def _get_line_items(self, request: Request, _params: dict[str, Any]) -> dict[str, Any]:
        session = self._session(request.path_params["id"])
        return self._items_list(session["id"])

    async def _expire_session(self, request: Request, _params: dict[str, Any]) -> dict[str, Any]:
        session = self._session(request.path_params["id"])
        await self.expire(session["id"])
        return self._public(session)

    def _session(self, session_id: str) -> dict[str, Any]:
        session = self.sessions.get(session_id)
        if session is None:
            raise _missing("checkout.session", session_id)
        return session

    def _public(self, session: dict[str, Any], expand: set[str] | None = None) -> dict[str, Any]:
        shown = {k: v for k, v in session.items() if not k.startswith("_")}
        if expand and "line_items" in expand:
            shown["line_items"] = self._items_list(session["id"])
        return json.loads(json.dumps(shown))  # type: ignore[no-any-return]

    def _items_list(self, session_id: str) -> dict[str, Any]:
        items = [{k: v for k, v in item.items() if not k.startswith("_")} for item in self.line_items[session_id]]
        return self._list(f"/v1/checkout/sessions/{session_id}/line_items", items, False)

    def _list(self, url: str, data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
        return {"object": "list", "data": data, "has_more": has_more, "url": url}

    def _tick(self) -> None:
        """Expire what is due (events queued; sent by the next delivery)."""
        now = self.now()
        for session in self.sessions.values():
            if session["status"] == "open" and int(session["expires_at"]) <= now:
                session.update(status="expired")
                self._queue("checkout.session.expired", self._public(session))

    async def _expire_due(self) -> None:
        self._tick()
        await self._flush_background()

    # -- payment intents, charges, refunds ----------------------------------------------------------------------------

    async def _get_payment_intent(self, request: Request, _params: dict[str, Any]) -> dict[str, Any]:
        intent = self.payment_intents.get(request.path_params["id"])
        if intent is None:
            raise _missing("payment_intent", request.path_params["id"])
        return dict(intent)

    async def _get_charge(self, request: Request, _params: dict[str, Any]) -> dict[str, Any]:
        charge = self.charges.get(request.path_params["id"])
        if charge is None:
            raise _missing("charge", request.path_params["id"])
        return dict(charge)

    async def _create_refund(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        intent_id = params.get("payment_intent")
        charge_id = params.get("charge")
        if not intent_id and not charge_id:
            raise _invalid("payment_intent", "One of `charge` or `payment_intent` is required.", "parameter_missing")
        if intent_id:
            intent = self.payment_intents.get(intent_id)
            if intent is None:
                raise _missing("payment_intent", intent_id, "payment_intent")
            charge_id = intent["latest_charge"]
        charge = self.charges.get(str(charge_id))
        if charge is None:
            raise _missing("charge", str(charge_id), "charge")
        left = int(charge["amount"]) - int(charge["amount_refunded"])
        amount = _int(params, "amount", minimum=1) or left
        if left <= 0:
            raise StripeError(
                400, f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded", param="charge"
            )
        if amount > left:
            raise _invalid(
                "amount",
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                "amount_too_large",
            )
        refund_id = f"re_{secrets.token_hex(12)}"
        refund = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "currency": charge["currency"],
            "payment_intent": charge["payment_intent"],
            "reason": params.get("reason"),
            "metadata": _metadata(params.get("metadata"), "metadata"),
            "status": "succeeded",
            "created": self.now(),
        }
        self.refunds[refund_id] = refund
        charge["amount_refunded"] = int(charge["amount_refunded"]) + amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        await self._emit("refund.created", refund, request)
        await self._emit("charge.refunded", dict(charge), request)
        return dict(refund)

    async def _list_refunds(self, _request: Request, params: dict[str, Any]) -> dict[str, Any]:
        limit = _int(params, "limit", minimum=1) or 10
        found = [
            r
            for r in sorted(self.refunds.values(), key=lambda r: -int(r["created"]))
            if not params.get("payment_intent") or r["payment_intent"] == params["payment_intent"]
        ]
        return self._list("/v1/refunds", [dict(r) for r in found[:limit]], len(found) > limit)

    async def _get_refund(self, request: Request, _params: dict[str, Any]) -> dict[str, Any]:
        refund = self.refunds.get(request.path_params["id"])
        if refund is None:
            raise _missing("refund", request.path_params["id"])
        return dict(refund)

    # -- events and endpoints ----------------------------------------------------------------------------------------

    async def _get_event(self, request: Request, _params: dict[str, Any]) -> dict[str, Any]:
        event = self.events.get(request.path_params["id"])
        if event is None:
            raise _missing("event", request.path_params["id"])
        return event

    async def _create_endpoint(self, _request: Request, params: dict[str, Any]) -> dict[str, Any]:
        url = params.get("url")
        if not url:
            raise _invalid("url", "Missing required param: url.", "parameter_missing")
        events = params.get("enabled_events") or ["*"]
        endpoint = self.add_endpoint(url, events=tuple(events if isinstance(events, list) else [events]))
        return {
            "id": endpoint.id,
            "object": "webhook_endpoint",
            "url": url,
            "enabled_events": list(endpoint.enabled_events),
            "secret": endpoint.secret,
            "status": "enabled",
        }

    def _queue(self, event_type: str, obj: dict[str, Any], request: Request | None = None) -> dict[str, Any]:
        key = getattr(request.state, "idempotency_key", None) if request is not None else None
        event: dict[str, Any] = {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now(),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": sum(1 for e in self.endpoints if e.wants(event_type)),
            "request": {"id": f"req_{secrets.token_hex(8)}" if request is not None else None, "idempotency_key": key},
            "type": event_type,
        }
        self.events[event["id"]] = event
        self.outbox.extend(Outgoing(event, endpoint) for endpoint in self.endpoints if endpoint.wants(event_type))
        return event

    async def _emit(self, event_type: str, obj: dict[str, Any], request: Request | None = None) -> dict[str, Any]:
        event = self._queue(event_type, obj, request)
        await self._flush_background()
        return event

    async def _flush_background(self) -> None:
        if self.delivery != "background" or self.http is None or not self.outbox:
            return
        pending, self.outbox = self.outbox, []

        async def send() -> None:
            await asyncio.sleep(0.05)  # after the answer that caused it, as Stripe does
            for outgoing in pending:
                await self.deliver(outgoing)

        task = asyncio.create_task(send(), name="stripe fake delivery")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the hosted payment page --------------------------------------------------------------------------------------

    async def _pay_page(self, request: Request) -> Response:
        self._tick()
        session = self.sessions.get(request.path_params["id"])
        if session is None:
            return HTMLResponse(_page("Không tìm thấy / Not found", "<p>No such Checkout Session.</p>"), 404)
        items = "".join(
            f"<li>{html.escape(str(item['description']))} × {item['quantity']}: "
            f"{_money(int(item['amount_total']), str(item['currency']))}</li>"
            for item in self.line_items[session["id"]]
        )
        total = _money(int(session["amount_total"]), str(session["currency"]))
        if session["status"] != "open":
            status = html.escape(str(session["status"]))
            body = f"<p>Phiên thanh toán: {status} / This session is {status}.</p>"
        else:
            body = (
                f"<ul>{items}</ul><p><strong>{total}</strong></p>"
                '<form method="post"><p>Thẻ thử 4242 4242 4242 4242 / Test card</p>'
                '<button name="action" value="pay">Thanh toán / Pay</button> '
                '<button name="action" value="cancel">Quay lại / Back</button></form>'
            )
        return HTMLResponse(_page(f"TEST MODE · {total}", body))

    async def _pay_form(self, request: Request) -> Response:
        session = self.sessions.get(request.path_params["id"])
        if session is None:
            return HTMLResponse(_page("Not found", "<p>No such Checkout Session.</p>"), 404)
        action = (await request.form()).get("action")
        if action == "pay" and session["status"] == "open":
            await self.pay(session["id"])
            return RedirectResponse(str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session["id"]), 303)
        return RedirectResponse(str(session.get("cancel_url") or session["success_url"]), 303)


def _money(amount: int, currency: str) -> str:
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount:,}".replace(",", ".") + (" ₫" if currency.lower() == "vnd" else f" {currency.upper()}")
    return f"{amount / 100:,.2f} {currency.upper()}"


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="vi"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body>"
        '<p style="background:#ffd54f;padding:8px;font-weight:700">TEST MODE · Stripe (fake)</p>'
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
