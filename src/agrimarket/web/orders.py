"""The orders pages: every shop's orders (today's first, oversold ones marked), one order with its lines, and the
ship and cancel actions, which go through the same code as the API's (``orders.endpoints.ship`` / ``cancel``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from agrimarket.accounts.service import Principal
from agrimarket.channels.endpoints import ChannelsDep
from agrimarket.channels.errors import AuthExpired, ChannelError, ChannelNotFound, Retryable
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.deps import AccountServiceDep
from agrimarket.errors import AgriMarketError, Conflict, NotFound, Unavailable
from agrimarket.kit.pagination import Cursor
from agrimarket.models import OrderStatus
from agrimarket.orders import endpoints as order_actions
from agrimarket.orders.endpoints import OrderServiceDep, order_service
from agrimarket.orders.schemas import CancelIn, ShipIn
from agrimarket.orders.service import SOLD, TERMINAL, OrderFilters, OrderView, day_start
from agrimarket.web import labels
from agrimarket.web.forms import CheckedForm, FieldErrors, text
from agrimarket.web.i18n import VIETNAM, Translator
from agrimarket.web.pages import PagePrincipal, TranslatorDep, render, see_other
from agrimarket.web.routes import PAGE_SIZE, _current_organization, _with_query, router


def channel_name(registry: ChannelRegistry, channel: str) -> str:
    """The marketplace's own name ("Shopee"), as its sellers know it."""
    return registry.plugins[channel].capabilities.display_name if channel in registry else channel


def today_start() -> datetime:
    return day_start(datetime.now(VIETNAM).date())


@router.get("/orders")
async def orders_page(
    request: Request,
    principal: PagePrincipal,
    accounts: AccountServiceDep,
    orders: OrderServiceDep,
    registry: ChannelsDep,
    org: str | None = None,
    status: str | None = None,
    oversold: str | None = None,
    after: str | None = None,
) -> Response:
    organization, organizations = await _current_organization(accounts, principal, org)
    chosen = OrderStatus(status) if status and status in OrderStatus.__members__ else None
    filters = OrderFilters(status=chosen, oversold=True if oversold else None)
    rows, next_cursor = await orders.search(
        principal.access, organization.id, filters, Cursor.decode(after) if after else None, PAGE_SIZE
    )
    since = today_start()
    query = (
        {"org": str(organization.id)}
        | ({"status": chosen.value} if chosen else {})
        | ({"oversold": "1"} if oversold else {})
    )
    return render(
        request,
        "orders.html",
        {
            "organization": organization,
            "organizations": organizations,
            "today": [r for r in rows if r.order.placed_at.replace(tzinfo=since.tzinfo) >= since],
            "earlier": [r for r in rows if r.order.placed_at.replace(tzinfo=since.tzinfo) < since],
            "first_page": after is None,
            "statuses": labels.ORDER_STATUSES,
            "status": chosen.value if chosen else "",
            "oversold": bool(oversold),
            "shop": lambda channel: channel_name(registry, channel),
            "next_page": _with_query("/orders", **query, after=next_cursor.encode()) if next_cursor else None,
        },
        principal=principal,
    )


def _detail(
    request: Request,
    principal: Principal,
    registry: ChannelRegistry,
    view: OrderView,
    *,
    errors: FieldErrors | None = None,
    values: dict[str, str] | None = None,
    done: str | None = None,
    status_code: int = 200,
) -> Response:
    status = view.order.status
    return render(
        request,
        "order.html",
        {
            "view": view,
            "order": view.order,
            "shop": channel_name(registry, view.channel),
            "status_label": labels.ORDER_STATUSES[status],
            "can_ship": status not in SOLD and status not in TERMINAL,
            "can_cancel": status not in SOLD and status not in TERMINAL,
            "errors": errors or FieldErrors(),
            "values": values or {},
            "done": done,
        },
        status_code=status_code,
        principal=principal,
    )


@router.get("/orders/{order_id}")
async def order_page(
    request: Request,
    order_id: uuid.UUID,
    principal: PagePrincipal,
    orders: OrderServiceDep,
    registry: ChannelsDep,
    done: str | None = None,
) -> Response:
    view = await orders.view(principal.access, order_id)
    return _detail(request, principal, registry, view, done=done if done in ("shipped", "cancelled") else None)


def refusal(exc: AgriMarketError, shop: str, tr: Translator) -> str:
    """The marketplace's refusal in plain words, with what it said itself (in quotes) when it said something."""
    cause = exc.__cause__
    said = ""
    if isinstance(exc, Unavailable) or isinstance(cause, Retryable):
        key = "unavailable"
    elif isinstance(cause, AuthExpired):
        key = "auth"
    elif isinstance(cause, ChannelNotFound):
        key = "missing"
    elif isinstance(cause, ChannelError):
        key, said = "refused", cause.message
    elif exc.field == "status":
        key = "shipped" if "shipped" in exc.message else "done"
    elif isinstance(exc, Conflict):
        key = "elsewhere"
    else:
        key, said = "refused", exc.message
    message = tr.gettext(labels.CHANNEL_REFUSALS[key], shop=shop)
    return f"{message} {tr.gettext('The marketplace said:')} “{said}”" if said else message


async def _order_action(
    request: Request,
    principal: Principal,
    registry: ChannelRegistry,
    tr: Translator,
    order_id: uuid.UUID,
    action: str,
    values: dict[str, str],
    run: Any,
) -> Response:
    try:
        await run()
    except NotFound:
        raise
    except AgriMarketError as exc:
        async with request.app.state.read_sessionmaker() as session:
            view = await order_service(session).view(principal.access, order_id)
        errors = FieldErrors({action: refusal(exc, channel_name(registry, view.channel), tr)})
        return _detail(request, principal, registry, view, errors=errors, values=values, status_code=exc.status_code)
    return see_other(f"/orders/{order_id}?done={'shipped' if action == 'ship' else 'cancelled'}")


@router.post("/orders/{order_id}/ship")
async def ship_order(
    form: CheckedForm,
    request: Request,
    order_id: uuid.UUID,
    principal: PagePrincipal,
    registry: ChannelsDep,
    tr: TranslatorDep,
) -> Response:
    """Marked shipped on the marketplace first, then here (the API's ship); a refusal shows beside the button."""
    wanted = order_id
    values = {"tracking_number": text(form, "tracking_number")}
    try:
        body = ShipIn(tracking_number=values["tracking_number"] or None)
    except ValidationError:
        return await _invalid(request, principal, registry, wanted, "ship", values, tr)
    return await _order_action(
        request,
        principal,
        registry,
        tr,
        wanted,
        "ship",
        values,
        lambda: order_actions.ship(request, principal, registry, wanted, tracking_number=body.tracking_number),
    )


@router.post("/orders/{order_id}/cancel")
async def cancel_order(
    form: CheckedForm,
    request: Request,
    order_id: uuid.UUID,
    principal: PagePrincipal,
    registry: ChannelsDep,
    tr: TranslatorDep,
) -> Response:
    """Cancelled on the marketplace with the farmer's reason, then here (the API's cancel)."""
    wanted = order_id
    values = {"reason": text(form, "reason")}
    try:
        body = CancelIn(reason=values["reason"])
    except ValidationError:
        return await _invalid(request, principal, registry, wanted, "cancel", values, tr)
    return await _order_action(
        request,
        principal,
        registry,
        tr,
        wanted,
        "cancel",
        values,
        lambda: order_actions.cancel(request, principal, registry, wanted, reason=body.reason),
    )


async def _invalid(
    request: Request,
    principal: Principal,
    registry: ChannelRegistry,
    order_id: uuid.UUID,
    action: str,
    values: dict[str, str],
    tr: Translator,
) -> Response:
    async with request.app.state.read_sessionmaker() as session:
        view = await order_service(session).view(principal.access, order_id)
    message = (
        tr.gettext("Enter the tracking number (at most 100 characters), or leave it empty.")
        if action == "ship"
        else tr.gettext("Say why in a few words (at most 300 characters): the buyer is told.")
    )
    return _detail(
        request, principal, registry, view, errors=FieldErrors({action: message}), values=values, status_code=422
    )
