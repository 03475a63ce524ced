"""The functions the order pipeline will call: idempotent by reference, never negative, short reported."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.errors import Conflict, NotFound
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService
from tests.catalog.helpers import add_listing, desired_version
from tests.factories import create_product, register


async def _variant(client: httpx.AsyncClient, on_hand: int) -> tuple[str, str, str]:
    account = await register(client)
    product = await create_product(client, account, initial_stock=on_hand)
    return account.organization_id, product["id"], product["variants"][0]["id"]


async def test_reserve_holds_what_is_available_and_reports_the_rest_short(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    _, _, variant_id = await _variant(client, 5)
    inventory = InventoryService(InventoryRepository(session))
    change = await inventory.reserve(uuid.UUID(variant_id), 8, reference="ol:1:reserve")
    assert (change.applied, change.short) == (5, 3)
    assert (change.level.on_hand, change.level.reserved, change.level.available) == (5, 5, 0)
    assert change.movement is not None
    assert (change.movement.kind.value, change.movement.on_hand_delta, change.movement.reserved_delta) == (
        "reserve",
        0,
        5,
    )


async def test_repeating_a_reference_applies_nothing_again(client: httpx.AsyncClient, session: AsyncSession) -> None:
    _, _, variant_id = await _variant(client, 10)
    inventory = InventoryService(InventoryRepository(session))
    vid = uuid.UUID(variant_id)
    first = await inventory.reserve(vid, 4, reference="ol:2:reserve")
    again = await inventory.reserve(vid, 4, reference="ol:2:reserve")
    assert again.replayed
    assert again.movement is first.movement
    assert (again.applied, again.level.reserved) == (4, 4)

    sale = await inventory.commit_sale(vid, 4, reference="ol:2:sale", from_reserved=4)
    resale = await inventory.commit_sale(vid, 4, reference="ol:2:sale", from_reserved=4)
    assert resale.replayed
    assert (sale.applied, resale.applied) == (4, 4)
    assert (resale.level.on_hand, resale.level.reserved) == (6, 0)
    assert await inventory.ledger_on_hand(vid) == 6


async def test_a_sale_beyond_stock_never_goes_negative_and_is_reported_oversold(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    _, _, variant_id = await _variant(client, 3)
    inventory = InventoryService(InventoryRepository(session))
    vid = uuid.UUID(variant_id)
    await inventory.reserve(vid, 1, reference="ol:3:reserve")  # someone else's order holds one
    sale = await inventory.commit_sale(vid, 5, reference="ol:4:sale")
    assert (sale.applied, sale.short) == (2, 3)
    assert (sale.level.on_hand, sale.level.reserved, sale.level.available) == (1, 1, 0)


async def test_release_gives_back_at_most_what_is_held(client: httpx.AsyncClient, session: AsyncSession) -> None:
    _, _, variant_id = await _variant(client, 6)
    inventory = InventoryService(InventoryRepository(session))
    vid = uuid.UUID(variant_id)
    await inventory.reserve(vid, 2, reference="ol:5:reserve")
    released = await inventory.release(vid, 5, reference="ol:5:release")
    assert (released.applied, released.level.reserved, released.level.available) == (2, 0, 6)


async def test_a_reference_belongs_to_one_variant(client: httpx.AsyncClient, session: AsyncSession) -> None:
    _, _, first = await _variant(client, 6)
    _, _, second = await _variant(client, 6)
    inventory = InventoryService(InventoryRepository(session))
    await inventory.reserve(uuid.UUID(first), 1, reference="ol:6:reserve")
    with pytest.raises(Conflict):
        await inventory.reserve(uuid.UUID(second), 1, reference="ol:6:reserve")
    with pytest.raises(NotFound):
        await inventory.reserve(uuid.uuid4(), 1, reference="ol:7:reserve")
    with pytest.raises(ValueError, match="positive"):
        await inventory.reserve(uuid.UUID(first), 0, reference="ol:8:reserve")


async def test_holding_stock_dirties_listings_but_a_hold_that_changes_nothing_does_not(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    organization_id, product_id, variant_id = await _variant(client, 1)
    listing = await add_listing(
        sessionmaker, organization_id=organization_id, product_id=product_id, variant_id=variant_id
    )
    async with sessionmaker() as session:
        inventory = InventoryService(InventoryRepository(session))
        await inventory.reserve(uuid.UUID(variant_id), 1, reference="ol:9:reserve")
        nothing_left = await inventory.reserve(uuid.UUID(variant_id), 1, reference="ol:10:reserve")
        assert (nothing_left.applied, nothing_left.short) == (0, 1)
        await session.commit()
    assert await desired_version(sessionmaker, listing) == 2
