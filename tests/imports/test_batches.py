"""Rows are read in chunks and their changes written in batches; where a chunk or a batch ends changes nothing in
what is written: products, variants and their order, stock, search keys."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.imports import service
from agrimarket.kit.text import fold
from agrimarket.models import Product, StockLevel, Variant
from tests.factories import register
from tests.imports.support import apply, csv_text, upload

pytestmark = pytest.mark.usefixtures("app")


def _file(sizes: int = 0) -> bytes:
    """Products of one to four sizes, a product's sizes spread over several rows (and chunks, and batches); with
    ``sizes``, that many more of each."""
    rows = []
    for product in range(7):
        for size in range(1 + product % 4 + sizes):
            rows.append(
                ["", f"P{product}-S{size}", f"Sầu riêng lô {product}", f"Hộp {size + 1} kg", "Trái cây", "hộp",
                 f"{120 + size}.000", str(product * size), "1200", "15/06/2026", "10", "Cơm vàng"]
            )  # fmt: skip
    return csv_text(rows).encode()


async def _catalogue(sessionmaker: async_sessionmaker[AsyncSession], organization_id: str) -> list[Any]:
    async with sessionmaker() as session:
        products = (
            await session.execute(
                select(Product.id, Product.name, Product.search_key).where(
                    Product.organization_id == uuid.UUID(organization_id)
                )
            )
        ).all()
        variants = (
            await session.execute(
                select(Variant.product_id, Variant.position, Variant.sku, Variant.name, StockLevel.on_hand)
                .join(StockLevel, StockLevel.variant_id == Variant.id)
                .where(Variant.organization_id == uuid.UUID(organization_id))
                .order_by(Variant.product_id, Variant.position)
            )
        ).all()
    outline = []
    for product_id, name, search_key in products:
        sizes = [
            (position, sku, variant, on_hand) for pid, position, sku, variant, on_hand in variants if pid == product_id
        ]
        parts = [name, *(part for _, sku, variant, _ in sizes for part in (variant, sku))]
        assert search_key == " ".join(fold(part) for part in parts), name  # as the catalog makes it
        outline.append((name, search_key, sizes))
    return sorted(outline)


async def test_where_chunks_and_batches_end_changes_nothing_written(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes = []
    for chunk, batch in [(1000, 5000), (1, 1), (2, 3), (3, 2)]:
        monkeypatch.setattr(service, "CHUNK_ROWS", chunk)
        monkeypatch.setattr(service, "FLUSH_ROWS", batch)
        account = await register(client)
        for data in (_file(), _file(sizes=2)):  # then two more sizes of every product
            preview = await upload(client, account.headers, account.organization_id, data)
            assert preview.status_code == 201, preview.text
            applied = await apply(client, account.headers, preview.json()["id"])
            assert applied.json()["status"] == "applied", applied.text
            outcomes.append(await _catalogue(sessionmaker, account.organization_id))
    first, then = outcomes[0::2], outcomes[1::2]
    assert len(first[0]) == 7
    assert sum(len(sizes) for _, _, sizes in then[0]) == sum(len(sizes) for _, _, sizes in first[0]) + 14
    assert all(outcome == first[0] for outcome in first[1:])
    assert all(outcome == then[0] for outcome in then[1:])


@pytest.mark.parametrize("problem", ["too-many-rows", "unreadable-end"])
async def test_a_file_that_fails_after_its_first_chunks_fails_as_a_whole(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    """The next chunk is read while one is checked: a problem in either ends the preview with the reason."""
    monkeypatch.setattr(service, "CHUNK_ROWS", 2)
    if problem == "too-many-rows":
        monkeypatch.setattr(service, "MAX_ROWS", 5)
        data, reason = _file(), "more than 5 rows"
    else:
        data, reason = _file().decode().encode("utf-16")[:-1], "encoding"  # half a character at the end
    account = await register(client)

    response = await upload(client, account.headers, account.organization_id, data)

    assert response.status_code == 201, response.text
    assert response.json()["status"] == "failed"
    assert reason in response.json()["message"]


async def test_products_left_out_are_counted_from_the_catalogue_whichever_chunk_first_names_a_household(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    cooperative = await register(client, kind="cooperative", name="HTX Điều Bình Phước")
    for code in ("HTX-001", "HTX-002"):
        response = await client.post(
            f"/api/v1/organizations/{cooperative.organization_id}/members",
            json={"name": f"Hộ {code}", "member_code": code, "owner_phone": (await register(client)).phone},
            headers=cooperative.headers,
        )
        assert response.status_code == 201, response.text

    def row(household: str, sku: str, stock: int) -> list[Any]:
        return [household, sku, f"Hạt điều {sku}", "Túi 500 g", "Hạt", "túi", "185.000", str(stock), "550", "", "", ""]

    async def imported(rows: list[list[Any]], *, zero: bool = False) -> dict[str, Any]:
        preview = await upload(client, cooperative.headers, cooperative.organization_id, csv_text(rows).encode())
        assert preview.status_code == 201, preview.text
        applied = await apply(client, cooperative.headers, preview.json()["id"], zero=zero)
        body: dict[str, Any] = applied.json()
        assert body["status"] == "applied", body
        return {"previewed": preview.json()["missing_count"], "applied": body["missing_count"]} | body

    await imported(
        [row("HTX-001", "X-1", 5), row("HTX-001", "X-2", 3), row("HTX-002", "Y-1", 4), row("HTX-002", "Y-2", 0)]
    )
    monkeypatch.setattr(service, "CHUNK_ROWS", 1)
    monkeypatch.setattr(service, "FLUSH_ROWS", 1)  # each new SKU written before the next row is read
    again = [row("HTX-001", "N-1", 1), row("HTX-001", "X-1", 5), row("HTX-002", "N-2", 2), row("HTX-002", "Y-1", 4)]

    counted = await imported(again)
    zeroed = await imported(again, zero=True)

    assert (counted["previewed"], counted["applied"], counted["zeroed_count"]) == (1, 1, 0)  # X-2 (Y-2 has none)
    assert (zeroed["previewed"], zeroed["applied"], zeroed["zeroed_count"]) == (1, 1, 1)
    async with sessionmaker() as session:
        stock = dict((await session.execute(select(Variant.sku, StockLevel.on_hand).join(StockLevel))).all())
    assert {sku: stock[sku] for sku in ("X-1", "X-2", "Y-1", "Y-2", "N-1", "N-2")} == {
        "X-1": 5, "X-2": 0, "Y-1": 4, "Y-2": 0, "N-1": 1, "N-2": 2
    }  # fmt: skip
