"""The storefront's public pages (``/shop/{slug or organization id}``: products, checkout, the pages Stripe sends the
buyer back to) and Stripe's webhook door (``POST /webhooks/stripe``). Out of the API schema: pages and pushes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import stripe
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from agrimarket.channels.errors import ChannelError
from agrimarket.db import transaction
from agrimarket.deps import SessionDep, SettingsDep, WriteSessionDep
from agrimarket.errors import AgriMarketError, NotFound
from agrimarket.media.endpoints import photo_out
from agrimarket.media.repository import MediaRepository
from agrimarket.media.service import MediaService, Photo
from agrimarket.models import CheckoutState
from agrimarket.observability import get_logger
from agrimarket.payments import events
from agrimarket.payments.gateway import StripeConfig, gateway, idempotency_key, metadata, stripe_config
from agrimarket.payments.holds import EXPIRE_KIND
from agrimarket.payments.repository import StorefrontRepository
from agrimarket.payments.service import OpenedCheckout, Shop, StorefrontService
from agrimarket.sync.runtime import runtime
from agrimarket.web import labels
from agrimarket.web.forms import CheckedForm
from agrimarket.web.i18n import Translator
from agrimarket.web.pages import PageRejected, PageRoute, TranslatorDep, remember_session, render, see_other
from agrimarket.webhooks.endpoints import read_body
from agrimarket.worker import enqueue

log = get_logger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(remember_session)])
webhook_router = APIRouter(include_in_schema=False)

QUANTITY_FIELD = "q-"


@dataclass(frozen=True)
class Thumbnail:
    src: str
    srcset: str
    width: int
    height: int


def _thumbnail(request: Request, photos: list[Photo]) -> Thumbnail | None:
    if not photos:
        return None
    thumbnails = photo_out(request.app.state.settings, photos[0]).thumbnails  # narrowest first
    if not thumbnails:
        return None
    return Thumbnail(
        src=thumbnails[0].url,
        srcset=", ".join(f"{t.url} {t.width}w" for t in thumbnails),
        width=thumbnails[0].width,
        height=thumbnails[0].height,
    )


async def _shop_page(
    request: Request, shop: Shop, *, status_code: int = 200, problem: dict[str, Any] | None = None
) -> Response:
    settings = request.app.state.settings
    async with request.app.state.read_sessionmaker() as session:
        media = MediaService(MediaRepository(session), request.app.state.media_storage)
        photos = await media.photos_of_products([p.product.id for p in shop.products])
    config = stripe_config(settings)
    return render(
        request,
        "shop.html",
        {
            "shop": shop,
            "key": request.path_params["key"],
            "thumbnails": {p.product.id: _thumbnail(request, photos.get(p.product.id, [])) for p in shop.products},
            "units": labels.UNITS,
            "payable": config is not None,
            "test_mode": config is not None and config.test_mode,
            "problem": problem,
        },
        status_code=status_code,
    )


@router.get("/shop/{key}")
async def shop_page(request: Request, key: str, session: SessionDep) -> Response:
    """An organization's storefront: what it sells, with photos, prices, stock and certifications."""
    shop = await StorefrontService(StorefrontRepository(session)).shop(key)
    return await _shop_page(request, shop)


def _quantities(form: Any) -> dict[uuid.UUID, int]:
    wanted: dict[uuid.UUID, int] = {}
    for name, value in form.multi_items():
        if not name.startswith(QUANTITY_FIELD) or not isinstance(value, str) or not value.strip():
            continue
        try:
            variant_id = uuid.UUID(name.removeprefix(QUANTITY_FIELD))
            quantity = int(value.strip())
        except ValueError:
            continue
        if quantity > 0:
            wanted[variant_id] = quantity
    return wanted


def _session_params(request: Request, opened: OpenedCheckout, tr: Translator) -> dict[str, Any]:
    checkout = opened.checkout
    base = str(request.base_url).rstrip("/")
    settings = request.app.state.settings
    if settings.public_url and not settings.is_development:
        base = settings.public_url
    key = request.path_params["key"]
    ids = {
        "checkout_id": checkout.id,
        "connection_id": checkout.connection_id,
        "organization_id": checkout.organization_id,
    }
    return {
        "mode": "payment",
        "currency": "vnd",
        # VND is zero-decimal at Stripe: the integer dong, never multiplied by 100.
        "line_items": [
            {
                "price_data": {
                    "currency": "vnd",
                    "unit_amount": line.unit_price_vnd,
                    "product_data": {"name": line.name, "metadata": metadata({"sku": line.sku})},
                },
                "quantity": line.quantity,
            }
            for line in opened.lines
        ],
        "client_reference_id": str(checkout.id),
        "metadata": metadata(ids),
        "payment_intent_data": {"metadata": metadata(ids), "description": opened.organization_name[:200]},
        "expires_at": int(checkout.expires_at.timestamp()),
        "locale": "vi" if tr.locale == "vi" else "en",
        "success_url": f"{base}/shop/{key}/done?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{base}/shop/{key}/back?checkout={checkout.id}",
    }


@router.post("/shop/{key}/checkout")
async def start_checkout(form: CheckedForm, request: Request, key: str, tr: TranslatorDep) -> Response:
    """Hold the chosen stock, open a Stripe Checkout Session for it and send the buyer there."""
    settings = request.app.state.settings
    config = stripe_config(settings)
    writing = request.app.state.sessionmaker
    async with transaction(writing) as session:
        service = StorefrontService(StorefrontRepository(session))
        shop = await service.shop(key)
        if config is None:
            raise PageRejected(await _shop_page(request, shop, status_code=409, problem={"kind": "not_payable"}))
        wanted = _quantities(form)
        try:
            opened = await service.open_checkout(
                shop.connection, wanted, locale=tr.locale, minutes=settings.storefront_checkout_minutes
            )
        except AgriMarketError as exc:
            problem = {"kind": "short", "shortfalls": getattr(exc, "shortfalls", None), "message": exc.message}
            if not wanted:
                problem = {"kind": "empty"}
            raise PageRejected(await _shop_page(request, shop, status_code=409, problem=problem)) from exc
        params = _session_params(request, opened, tr)
    checkout_id = opened.checkout.id
    try:
        created = await gateway(runtime(settings).http, config).create_session(
            params, idempotency_key=idempotency_key("checkout", checkout_id)
        )
    except ChannelError as exc:
        log.warning("checkout_session_failed", checkout_id=str(checkout_id), error=exc.message)
        async with transaction(writing) as session:
            await StorefrontService(StorefrontRepository(session)).fail_checkout(checkout_id, exc.message)
        raise PageRejected(await _shop_page(request, shop, status_code=503, problem={"kind": "stripe"})) from exc
    async with transaction(writing) as session:
        await StorefrontService(StorefrontRepository(session)).attach_session(
            checkout_id,
            str(created["id"]),
            str(created["url"]),
            datetime.fromtimestamp(int(created["expires_at"]), UTC),
        )
    return see_other(str(created["url"]))


@router.get("/shop/{key}/done")
async def checkout_done(request: Request, key: str, session_id: str, session: SessionDep) -> Response:
    """Where Stripe sends the buyer after paying: the order as we know it (the payment is confirmed by Stripe's
    event, not by this visit)."""
    service = StorefrontService(StorefrontRepository(session))
    shop = await service.shop(key)
    checkout = await service.repo.checkout_of_session(session_id[:255])
    if checkout is None or checkout.connection_id != shop.connection.id:
        raise NotFound("No such checkout here.")
    order = await service.repo.order(checkout.order_id) if checkout.order_id else None
    return render(
        request,
        "shop_done.html",
        {"shop": shop, "key": key, "checkout": checkout, "order": order, "back": False, "test_mode": _test(request)},
    )


@router.get("/shop/{key}/back")
async def checkout_back(request: Request, key: str, checkout: uuid.UUID, session: WriteSessionDep) -> Response:
    """Where Stripe sends a buyer who goes back without paying: the checkout is abandoned, so its session is
    expired and its stock released (by a job: Stripe's answer is not waited for)."""
    service = StorefrontService(StorefrontRepository(session))
    shop = await service.shop(key)
    found = await service.repo.checkout(checkout)
    if found is None or found.connection_id != shop.connection.id:
        raise NotFound("No such checkout here.")
    if found.state is CheckoutState.open:
        await enqueue(
            session,
            EXPIRE_KIND,
            {"checkout_id": str(found.id)},
            dedupe_key=f"{EXPIRE_KIND}:{found.id}",
            organization_id=found.organization_id,
        )
    return render(
        request,
        "shop_done.html",
        {"shop": shop, "key": key, "checkout": found, "order": None, "back": True, "test_mode": _test(request)},
    )


def _test(request: Request) -> bool:
    config = stripe_config(request.app.state.settings)
    return config is not None and config.test_mode


# -- Stripe's webhook -------------------------------------------------------------------------------------------------


class StripeSignatureMissing(AgriMarketError):
    status_code = 400
    code = "missing_signature"


class StripeSignatureInvalid(AgriMarketError):
    status_code = 401
    code = "invalid_signature"


@dataclass(frozen=True)
class VerifiedStripeEvent:
    event: events.ReadEvent
    body: bytes
    headers: dict[str, str]


def _refuse(error: AgriMarketError, outcome: str) -> NoReturn:
    events.STRIPE_EVENTS.labels(outcome).inc()
    raise error


async def verified_stripe_event(request: Request, settings: SettingsDep) -> VerifiedStripeEvent:
    """The event, verified with stripe-python over the raw body: 404 where no webhook secret is set, 400 without a
    ``Stripe-Signature`` header (or a signed body that is no event), 401 for a signature that does not verify."""
    config: StripeConfig | None = stripe_config(settings)
    body = await read_body(request)
    if config is None or not config.webhook_secret:
        _refuse(NotFound("No Stripe webhook secret is set on this server."), "not_found")
    signature = request.headers.get("stripe-signature")
    if not signature:
        _refuse(StripeSignatureMissing("The Stripe-Signature header is missing."), "missing_signature")
    try:
        stripe.Webhook.construct_event(body, signature, config.webhook_secret)
    except stripe.SignatureVerificationError as exc:
        log.warning("stripe_webhook_refused", reason=str(exc)[:200])
        _refuse(StripeSignatureInvalid("The Stripe signature does not verify."), "invalid_signature")
    except ValueError:
        _refuse(AgriMarketError("The signed body is not JSON."), "malformed")
    try:
        read = events.read_event(body)
    except ValueError:
        _refuse(AgriMarketError("The signed body is not a Stripe event."), "malformed")
    kept = {k.lower(): v[:300] for k, v in request.headers.items() if k.lower() in ("content-type", "user-agent")}
    return VerifiedStripeEvent(read, body, kept)


VerifiedStripeEventDep = Annotated[VerifiedStripeEvent, Depends(verified_stripe_event)]


@webhook_router.post("/webhooks/stripe")
async def receive_stripe_event(verified: VerifiedStripeEventDep, session: WriteSessionDep) -> Response:
    """Keep a verified Stripe event in the inbox (once) and queue its handling; answer 200 at once."""
    stored = await events.receive(session, verified.event, verified.body, verified.headers)
    events.STRIPE_EVENTS.labels("stored" if stored is not None else "duplicate").inc()
    return Response(status_code=200)
