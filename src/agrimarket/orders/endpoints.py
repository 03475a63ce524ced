"""Orders API: every channel's orders in one list, one order with its lines, and shipping or cancelling it.

Ship and cancel call the marketplace, so they run outside the request's usual single transaction: a read to find
the order, the call with no transaction open (SQLite's write lock is never held across the network), then a short
write transaction that moves the status and the stock.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.accounts.repository import AccountRepository
from agrimarket.accounts.service import AccountService, Principal
from agrimarket.channels.base import ChannelAdapter, Feature, Shipment
from agrimarket.channels.endpoints import ChannelsDep
from agrimarket.channels.errors import AuthExpired, ChannelError, ChannelNotFound, Rejected, Retryable
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.channels.shop import ShopClient
from agrimarket.db import transaction
from agrimarket.deps import PrincipalDep, SessionDep, SettingsDep, get_optional_principal, get_principal
from agrimarket.errors import Conflict, Invalid, Unavailable
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService
from agrimarket.kit.pagination import Cursor, Page
from agrimarket.models import Order, OrderStatus, Role
from agrimarket.orders import schemas
from agrimarket.orders.repository import OrderRepository
from agrimarket.orders.service import SOLD, TERMINAL, OrderFilters, OrderRow, OrderService, OrderView, day_start
from agrimarket.sync.runtime import runtime

router = APIRouter(prefix="/api/v1", tags=["orders"])


def order_service(session: AsyncSession) -> OrderService:
    return OrderService(OrderRepository(session), InventoryService(InventoryRepository(session)))


def get_order_service(session: SessionDep) -> OrderService:
    return order_service(session)


OrderServiceDep = Annotated[OrderService, Depends(get_order_service)]
Limit = Annotated[int, Query(ge=1, le=100)]


async def get_principal_reading(request: Request, settings: SettingsDep) -> Principal:
    """The caller, looked up in a reading transaction closed at once: for endpoints that call a marketplace and
    open their own short write transaction afterwards."""
    async with transaction(request.app.state.read_sessionmaker) as session:
        principal = await get_optional_principal(request, AccountService(AccountRepository(session)), settings)
    return await get_principal(principal)


ReadingPrincipalDep = Annotated[Principal, Depends(get_principal_reading)]


def _order_out(order: Order, channel: str, unknown_sku: bool) -> schemas.OrderOut:
    return schemas.OrderOut(
        id=order.id,
        organization_id=order.organization_id,
        connection_id=order.connection_id,
        channel=channel,
        external_id=order.external_id,
        status=order.status,
        oversold=order.oversold,
        unknown_sku=unknown_sku,
        currency=order.currency,
        total_vnd=order.total_vnd,
        shipping_fee_vnd=order.shipping_fee_vnd,
        buyer_name=order.buyer_name,
        tracking_number=order.tracking_number,
        placed_at=order.placed_at,
        remote_updated_at=order.remote_updated_at,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


def row_out(row: OrderRow) -> schemas.OrderOut:
    return _order_out(row.order, row.channel, row.unknown_sku)


def detail_out(view: OrderView) -> schemas.OrderDetailOut:
    base = _order_out(view.order, view.channel, view.unknown_sku)
    return schemas.OrderDetailOut(
        **base.model_dump(),
        lines=[
            schemas.OrderLineOut(
                id=line.id,
                variant_id=line.variant_id,
                external_line_id=line.external_line_id,
                sku=line.sku,
                name=line.name,
                quantity=line.quantity,
                unit_price_vnd=line.unit_price_vnd,
                unknown_sku=line.unknown_sku,
                reserved_quantity=line.reserved_quantity,
                oversold_quantity=line.oversold_quantity,
            )
            for line in view.lines
        ],
    )


@router.get("/organizations/{organization_id}/orders")
async def list_orders(
    organization_id: uuid.UUID,
    principal: PrincipalDep,
    orders: OrderServiceDep,
    status: OrderStatus | None = None,
    channel: Annotated[str | None, Query(max_length=40)] = None,
    connection_id: uuid.UUID | None = None,
    placed_from: Annotated[date | None, Query(description="First day, in Vietnam time.")] = None,
    placed_to: Annotated[date | None, Query(description="Last day (included), in Vietnam time.")] = None,
    oversold: bool | None = None,
    unknown_sku: bool | None = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> Page[schemas.OrderOut]:
    """Orders from every connected shop, newest first; `oversold=true` finds what stock could not cover."""
    filters = OrderFilters(
        status=status,
        channel=channel,
        connection_id=connection_id,
        placed_from=day_start(placed_from) if placed_from else None,
        placed_before=day_start(placed_to + timedelta(days=1)) if placed_to and placed_to < date.max else None,
        oversold=oversold,
        unknown_sku=unknown_sku,
    )
    rows, next_cursor = await orders.search(
        principal.access, organization_id, filters, Cursor.decode(cursor) if cursor else None, limit
    )
    return Page(items=[row_out(r) for r in rows], next_cursor=next_cursor.encode() if next_cursor else None)


@router.get("/orders/{order_id}")
async def get_order(order_id: uuid.UUID, principal: PrincipalDep, orders: OrderServiceDep) -> schemas.OrderDetailOut:
    """One order with its lines: the variant each maps to, and what is held or oversold per line."""
    return detail_out(await orders.view(principal.access, order_id))


async def _fulfil(
    request: Request,
    principal: Principal,
    registry: ChannelRegistry,
    order_id: uuid.UUID,
    *,
    target: OrderStatus,
    call: Callable[[ChannelAdapter, str], Awaitable[None]],
    tracking_number: str | None = None,
) -> OrderView:
    settings = request.app.state.settings
    reading: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    writing: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with transaction(reading) as session:
        service = order_service(session)
        order = await service.order_in_reach(principal.access, order_id, Role.member)
        if order.status == target or (target is OrderStatus.shipped and order.status in SOLD):
            return await service.view_of(order)  # done already: a retried request changes nothing
        _check_move(order, target)
        connection = await service.connection_of(order)
    plugin = registry.get(connection.channel)
    if not plugin.capabilities.supports(Feature.fulfilment):
        raise Conflict(f"{plugin.capabilities.display_name} orders are handled in its own seller centre.")
    try:
        shop = ShopClient(
            writing,
            settings,
            connection,
            channels=registry,
            http=runtime(settings).http,
            owner=f"api/{principal.user.id}",
        )
        await shop.call(lambda adapter: call(adapter, order.external_id))
    except ChannelError as exc:
        raise _refusal(exc, plugin.capabilities.display_name) from exc
    async with transaction(writing) as session:
        service = order_service(session)
        await service.advance(order.id, target, tracking_number=tracking_number)
        refreshed = await service.order_in_reach(principal.access, order.id, Role.member)
        return await service.view_of(refreshed)


def _check_move(order: Order, target: OrderStatus) -> None:
    if order.status in TERMINAL:
        raise Conflict(f"The order is already {order.status.value}.", field="status")
    if target is OrderStatus.cancelled and order.status in SOLD:
        raise Conflict("The order has shipped already; it can no longer be cancelled here.", field="status")


def _refusal(exc: ChannelError, channel: str) -> Exception:
    if isinstance(exc, Retryable):
        return Unavailable(f"{channel} did not answer. Try again in a minute.")
    if isinstance(exc, AuthExpired):
        return Conflict(f"{channel} no longer accepts the shop's authorisation: connect the shop again.")
    if isinstance(exc, ChannelNotFound):
        return Conflict(f"{channel} has no such order (any more): {exc.message}")
    if isinstance(exc, Rejected):
        return Invalid(f"{channel} refused: {exc.message}", field=exc.field)
    return Invalid(f"{channel} refused: {exc.message}")


async def ship(
    request: Request,
    principal: Principal,
    registry: ChannelRegistry,
    order_id: uuid.UUID,
    *,
    tracking_number: str | None = None,
    carrier: str | None = None,
) -> OrderView:
    """Arrange shipment on the marketplace, then record it (the API's and the web app's ship)."""
    shipment = Shipment(tracking_number=tracking_number, carrier=carrier)
    return await _fulfil(
        request,
        principal,
        registry,
        order_id,
        target=OrderStatus.shipped,
        call=lambda adapter, external_id: adapter.ship(external_id, shipment),
        tracking_number=tracking_number,
    )


async def cancel(
    request: Request, principal: Principal, registry: ChannelRegistry, order_id: uuid.UUID, *, reason: str
) -> OrderView:
    """Cancel on the marketplace, then record it (the API's and the web app's cancel)."""
    return await _fulfil(
        request,
        principal,
        registry,
        order_id,
        target=OrderStatus.cancelled,
        call=lambda adapter, external_id: adapter.cancel(external_id, reason),
    )


@router.post("/orders/{order_id}/ship")
async def ship_order(
    order_id: uuid.UUID,
    body: schemas.ShipIn,
    request: Request,
    principal: ReadingPrincipalDep,
    registry: ChannelsDep,
) -> schemas.OrderDetailOut:
    """Arrange shipment on the marketplace; the order is then `shipped` and its stock leaves for good."""
    view = await ship(
        request, principal, registry, order_id, tracking_number=body.tracking_number, carrier=body.carrier
    )
    return detail_out(view)


@router.post("/orders/{order_id}/cancel")
async def cancel_order(
    order_id: uuid.UUID,
    body: schemas.CancelIn,
    request: Request,
    principal: ReadingPrincipalDep,
    registry: ChannelsDep,
) -> schemas.OrderDetailOut:
    """Cancel the order on the marketplace; the order is then `cancelled` and its held stock is free again."""
    return detail_out(await cancel(request, principal, registry, order_id, reason=body.reason))
