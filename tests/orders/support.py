"""The order pipeline's test world: a farm with stock, shops, and orders as a marketplace would give them."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.base import ChannelOrder, ChannelOrderLine
from agrimarket.db import transaction
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService
from agrimarket.models import (
    ChannelConnection,
    Order,
    OrderLine,
    OrderStatus,
    StockLevel,
    StockMovement,
    Variant,
)
from agrimarket.orders.repository import OrderRepository
from agrimarket.orders.service import IngestResult, OrderService

Db = async_sessionmaker[AsyncSession]
_numbers = itertools.count(1)
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def channel_order(
    lines: Sequence[tuple[str, int]],
    *,
    status: OrderStatus = OrderStatus.paid,
    external_id: str | None = None,
    minutes: int = 0,
) -> ChannelOrder:
    """An order as an adapter returns it: ``(seller SKU, quantity)`` lines at 100 000 ₫ each."""
    return ChannelOrder(
        external_id=external_id or f"SO{next(_numbers):06d}",
        status=status,
        platform_status=status.value.upper(),
        created_at=T0,
        updated_at=T0 + timedelta(minutes=minutes),
        lines=[
            ChannelOrderLine(external_line_id=f"L{i}", sku=sku, quantity=quantity, unit_price_vnd=100_000, name=sku)
            for i, (sku, quantity) in enumerate(lines, start=1)
        ],
        total_vnd=sum(100_000 * quantity for _, quantity in lines),
        buyer_name="Nguyễn Thị Lan",
    )


def at_status(order: ChannelOrder, status: OrderStatus, *, minutes: int) -> ChannelOrder:
    return ChannelOrder(
        external_id=order.external_id,
        status=status,
        platform_status=status.value.upper(),
        created_at=order.created_at,
        updated_at=order.created_at + timedelta(minutes=minutes),
        lines=order.lines,
        total_vnd=order.total_vnd,
        buyer_name=order.buyer_name,
    )


async def ingest(db: Db, connection: ChannelConnection, order: ChannelOrder) -> IngestResult:
    async with transaction(db) as session:
        service = OrderService(OrderRepository(session), InventoryService(InventoryRepository(session)))
        return await service.ingest(connection, order)


async def sku_of(db: Db, variant_id: uuid.UUID) -> str:
    async with transaction(db) as session:
        variant = await session.get(Variant, variant_id)
        assert variant is not None
        return variant.sku


async def level(db: Db, variant_id: uuid.UUID) -> StockLevel:
    async with transaction(db) as session:
        found = await session.get(StockLevel, variant_id)
        assert found is not None
        return found


async def order_and_lines(db: Db, connection_id: uuid.UUID, external_id: str) -> tuple[Order, list[OrderLine]]:
    async with transaction(db) as session:
        order = (
            await session.execute(
                select(Order).where(Order.connection_id == connection_id, Order.external_id == external_id)
            )
        ).scalar_one()
        lines = list(
            (
                await session.execute(
                    select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.external_line_id)
                )
            ).scalars()
        )
        return order, lines


async def movements(db: Db, variant_id: uuid.UUID) -> list[StockMovement]:
    async with transaction(db) as session:
        result = await session.execute(
            select(StockMovement)
            .where(StockMovement.variant_id == variant_id, StockMovement.reference.is_not(None))
            .order_by(StockMovement.created_at)
        )
        return list(result.scalars())


async def ledger_matches(db: Db, variant_id: uuid.UUID) -> bool:
    async with transaction(db) as session:
        inventory = InventoryService(InventoryRepository(session))
        found = await session.get(StockLevel, variant_id)
        assert found is not None
        return await inventory.ledger_on_hand(variant_id) == found.on_hand
