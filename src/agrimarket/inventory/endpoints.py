"""Stock API: levels, changes by hand, and the movement ledger."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from agrimarket.catalog.fields import MAX_ON_HAND
from agrimarket.deps import PrincipalDep, SessionDep
from agrimarket.inventory import schemas
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService, StockRow
from agrimarket.kit.pagination import Cursor, Page
from agrimarket.kit.text import SearchText
from agrimarket.models import MovementKind

router = APIRouter(prefix="/api/v1", tags=["stock"])


def get_inventory_service(session: SessionDep) -> InventoryService:
    return InventoryService(InventoryRepository(session))


InventoryServiceDep = Annotated[InventoryService, Depends(get_inventory_service)]
Limit = Annotated[int, Query(ge=1, le=100)]


def stock_out(row: StockRow) -> schemas.StockOut:
    return schemas.StockOut(
        variant_id=row.variant.id,
        product_id=row.product.id,
        sku=row.variant.sku,
        product_name=row.product.name,
        variant_name=row.variant.name,
        unit=row.variant.unit,
        on_hand=row.level.on_hand,
        reserved=row.level.reserved,
        available=row.level.available,
        updated_at=row.level.updated_at,
    )


def _cursor(value: str | None) -> Cursor | None:
    return Cursor.decode(value) if value else None


@router.get("/variants/{variant_id}/stock")
async def get_stock(variant_id: uuid.UUID, principal: PrincipalDep, inventory: InventoryServiceDep) -> schemas.StockOut:
    """A variant's stock: on hand, reserved for orders, and available to sell."""
    return stock_out(await inventory.stock(principal.access, variant_id))


@router.put("/variants/{variant_id}/stock")
async def set_stock(
    variant_id: uuid.UUID, body: schemas.StockSetIn, principal: PrincipalDep, inventory: InventoryServiceDep
) -> schemas.StockOut:
    """Set the quantity on hand after a count; the difference is recorded as one movement."""
    await inventory.set_on_hand(
        principal.access,
        variant_id,
        on_hand=body.on_hand,
        kind=MovementKind(body.kind),
        reason=body.reason,
        actor_user_id=principal.user.id,
    )
    return stock_out(await inventory.stock(principal.access, variant_id))


@router.post("/variants/{variant_id}/stock/adjustments")
async def adjust_stock(
    variant_id: uuid.UUID, body: schemas.StockAdjustmentIn, principal: PrincipalDep, inventory: InventoryServiceDep
) -> schemas.StockOut:
    """Add or remove stock (receive, adjust, return); answers with the stock after the change."""
    await inventory.adjust(
        principal.access,
        variant_id,
        delta=body.delta,
        kind=MovementKind(body.kind),
        reason=body.reason,
        actor_user_id=principal.user.id,
        idempotency_key=body.idempotency_key,
    )
    return stock_out(await inventory.stock(principal.access, variant_id))


@router.get("/variants/{variant_id}/stock/movements")
async def list_movements(
    variant_id: uuid.UUID,
    principal: PrincipalDep,
    inventory: InventoryServiceDep,
    cursor: str | None = None,
    limit: Limit = 50,
) -> Page[schemas.MovementOut]:
    """A variant's stock history, newest first."""
    movements, next_cursor = await inventory.movements(principal.access, variant_id, _cursor(cursor), limit)
    return Page(
        items=[schemas.MovementOut.model_validate(m) for m in movements],
        next_cursor=next_cursor.encode() if next_cursor else None,
    )


@router.get("/organizations/{organization_id}/stock")
async def list_stock(
    organization_id: uuid.UUID,
    principal: PrincipalDep,
    inventory: InventoryServiceDep,
    available_lte: Annotated[
        int | None, Query(ge=0, le=MAX_ON_HAND, description="Only variants with this many or fewer to sell.")
    ] = None,
    q: SearchText | None = None,
    include_archived: bool = False,
    cursor: str | None = None,
    limit: Limit = 50,
) -> Page[schemas.StockOut]:
    """Stock of every variant on sale, in catalogue order; `available_lte` finds what is running low."""
    rows, next_cursor = await inventory.levels(
        principal.access,
        organization_id,
        available_lte=available_lte,
        q=q,
        include_archived=include_archived,
        cursor=_cursor(cursor),
        limit=limit,
    )
    return Page(items=[stock_out(r) for r in rows], next_cursor=next_cursor.encode() if next_cursor else None)
