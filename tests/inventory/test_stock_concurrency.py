"""Real commits on separate connections, all at once: the row lock keeps stock exact and never negative."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from agrimarket.db import make_sessionmaker, transaction
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService
from agrimarket.models import StockMovement
from tests.factories import Account, create_product, register


async def _ledger(engine: AsyncEngine, variant_id: str) -> list[StockMovement]:
    async with transaction(make_sessionmaker(engine)) as session:
        result = await session.execute(
            select(StockMovement)
            .where(StockMovement.variant_id == uuid.UUID(variant_id))
            .order_by(StockMovement.created_at, StockMovement.id)
        )
        return list(result.scalars())


async def _stock(client: httpx.AsyncClient, account: Account, variant_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/variants/{variant_id}/stock", headers=account.headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _assert_unbroken_chain(ledger: list[StockMovement]) -> None:
    """In lock order, each movement starts where the one before ended: no update was lost or interleaved."""
    on_hand = 0
    for movement in ledger:
        on_hand += movement.on_hand_delta
        assert movement.on_hand_after == on_hand
        assert movement.on_hand_after >= 0
        assert movement.on_hand_after - movement.reserved_after >= 0


async def test_forty_concurrent_removals_of_one_from_twenty_five_let_exactly_twenty_five_through(
    committing_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    account = await register(committing_client)
    product = await create_product(committing_client, account, initial_stock=25)
    variant_id = product["variants"][0]["id"]

    async def take_one() -> httpx.Response:
        return await committing_client.post(
            f"/api/v1/variants/{variant_id}/stock/adjustments",
            json={"delta": -1, "kind": "adjust", "reason": "Bán tại chợ"},
            headers=account.headers,
        )

    responses = await asyncio.gather(*(take_one() for _ in range(40)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 25, statuses
    assert statuses.count(409) == 15, statuses
    assert all(r.json()["message"].startswith("Only 0 left in stock") for r in responses if r.status_code == 409)
    assert sorted(r.json()["on_hand"] for r in responses if r.status_code == 200) == list(range(25))

    stock = await _stock(committing_client, account, variant_id)
    assert (stock["on_hand"], stock["available"]) == (0, 0)
    ledger = await _ledger(engine, variant_id)
    assert len(ledger) == 26  # the opening stock and the 25 that went through
    assert sum(m.on_hand_delta for m in ledger) == 0
    _assert_unbroken_chain(ledger)


async def test_interleaved_concurrent_sets_and_adjustments_keep_on_hand_equal_to_the_ledger(
    committing_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    account = await register(committing_client)
    product = await create_product(committing_client, account, initial_stock=10)
    variant_id = product["variants"][0]["id"]
    url = f"/api/v1/variants/{variant_id}/stock"
    chance = random.Random(20250601)

    def request(i: int) -> Any:
        if i % 3 == 0:
            body = {"on_hand": chance.randint(0, 15), "reason": f"Đếm lần {i}"}
            return committing_client.put(url, json=body, headers=account.headers)
        delta = chance.choice([-3, -2, -1, 1, 2, 4])
        kind = "receive" if delta > 0 and i % 2 else "adjust"
        body = {"delta": delta, "kind": kind, "reason": f"Lần {i}"}
        return committing_client.post(f"{url}/adjustments", json=body, headers=account.headers)

    responses = await asyncio.gather(*(request(i) for i in range(45)))
    assert {r.status_code for r in responses} <= {200, 409}
    assert any(r.status_code == 200 for r in responses)

    stock = await _stock(committing_client, account, variant_id)
    ledger = await _ledger(engine, variant_id)
    assert stock["on_hand"] == sum(m.on_hand_delta for m in ledger)
    assert stock["on_hand"] == ledger[-1].on_hand_after
    _assert_unbroken_chain(ledger)


async def test_one_reference_delivered_many_times_at_once_reserves_once(
    committing_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    account = await register(committing_client)
    product = await create_product(committing_client, account, initial_stock=10)
    variant_id = uuid.UUID(product["variants"][0]["id"])
    sessionmaker = make_sessionmaker(engine)

    async def reserve() -> bool:
        async with transaction(sessionmaker) as session:
            change = await InventoryService(InventoryRepository(session)).reserve(
                variant_id, 3, reference="order-line:dup:reserve"
            )
            return change.replayed

    replayed = await asyncio.gather(*(reserve() for _ in range(8)))
    assert sorted(replayed) == [False] + [True] * 7
    stock = await _stock(committing_client, account, str(variant_id))
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (10, 3, 7)
