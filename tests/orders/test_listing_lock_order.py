"""Every writer of several listings in one transaction row-locks them in id order (PostgreSQL), so the drain marking
listings dirty and the sync engine recording what it pushed queue behind each other instead of deadlocking."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from agrimarket.config import Settings
from agrimarket.db import make_sessionmaker, transaction
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.models import Listing
from tests.orders.support import Db
from tests.sync.support import dirty, listings
from tests.sync.test_sandboxes import _listed, _world


async def test_marking_listings_dirty_waits_for_the_lowest_id_first_holding_none_of_the_others(
    db: Db, worker_settings: Settings, engine: AsyncEngine, engine_b: AsyncEngine
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite has one writer at a time")
    farm, connection, product = await _listed(db, worker_settings, _world("shopee"), variants=3)
    rows = sorted(await listings(db, connection.id), key=lambda row: row.id)
    assert len(rows) == 3
    lowest, others = rows[0], rows[1:]

    async with make_sessionmaker(engine)() as holder:
        await holder.execute(select(Listing.id).where(Listing.id == lowest.id).with_for_update())

        async def mark() -> int:
            async with transaction(make_sessionmaker(engine_b)) as session:
                return await InventoryRepository(session).mark_listings_dirty(farm.products[product])

        marking = asyncio.create_task(mark())
        await asyncio.sleep(0.5)
        assert not marking.done()  # waiting for the lowest id
        async with make_sessionmaker(engine)() as probe:
            try:
                await probe.execute(
                    select(Listing.id).where(Listing.id.in_([row.id for row in others])).with_for_update(nowait=True)
                )
            except OperationalError:  # pragma: no cover - the failure this test is for
                pytest.fail("the marking holds a higher listing while it waits for a lower one: it can deadlock")
            await probe.rollback()
        await holder.rollback()
        assert await asyncio.wait_for(marking, 10) == 3
    assert len(dirty(await listings(db, connection.id))) == 3
