"""A large file goes through the worker: the upload and the apply answer 202 at once, the status shows the progress,
and a 100,000-row file is validated and applied with the database committed for real."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from agrimarket.config import Settings
from agrimarket.db import make_sessionmaker
from agrimarket.imports import tasks
from agrimarket.models import Product, StockLevel, StockMovement, Variant
from agrimarket.worker import Registry, Worker
from tests.factories import Account, register
from tests.imports.support import HEADER

ROWS = 100_000


def generated_csv(path: Path, rows: int) -> None:
    """Realistic rows: a few hundred products of one to four sizes, vi-VN numbers, semicolons (Excel vi-VN)."""
    fruits = ["Sầu riêng Ri6", "Chôm chôm", "Măng cụt", "Bơ sáp", "Hạt điều rang muối", "Tiêu đen", "Mật ong", "Cà phê"]
    sizes = [("Hộp 1 kg", "hộp", 1200), ("Thùng 5 kg", "thùng", 5600), ("Túi 500 g", "túi", 550), ("Kg", "kg", 1000)]
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(";".join(HEADER) + "\r\n")
        for i in range(rows):
            product = i // 4
            name, unit, weight = sizes[i % 4]
            price = f"{(50 + (i * 37) % 900) * 1000:,}".replace(",", ".")
            handle.write(
                f";SKU-{i:06d};{fruits[product % len(fruits)]} lô {product};{name};Trái cây;{unit};{price};"
                f"{i % 300};{weight};15/06/2026;30;Hàng tuyển chọn\r\n"
            )


async def _wait_for(
    client: httpx.AsyncClient, account: Account, import_id: str, status: str, within: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        response = await client.get(f"/api/v1/imports/{import_id}", headers=account.headers)
        body: dict[str, Any] = response.json()
        seen.append(body["progress"] | {"status": body["status"]})
        if body["status"] == status:
            return body, seen
        if body["status"] == "failed":
            raise AssertionError(body["message"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"not {status} within {within}s: {seen[-1]}")


@pytest.mark.slow
async def test_a_100000_row_file_goes_through_the_worker_with_visible_progress(
    worker_app: tuple[FastAPI, Settings], engine: AsyncEngine, tmp_path: Path
) -> None:
    app, settings = worker_app
    registry = Registry()
    registry.register(tasks.PREVIEW_KIND, tasks.preview_import)
    registry.register(tasks.APPLY_KIND, tasks.apply_import)
    path = tmp_path / "hop-tac-xa.csv"
    generated_csv(path, ROWS)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
        Worker(engine, settings, registry=registry, scheduler=False, metrics=False),
    ):
        account = await register(client)
        with path.open("rb") as handle:
            response = await client.post(
                f"/api/v1/organizations/{account.organization_id}/imports",
                files={"file": ("hop-tac-xa.csv", handle, "text/csv")},
                headers=account.headers,
            )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "validating"
        preview, seen = await _wait_for(client, account, response.json()["id"], "previewed", within=60)
        assert (preview["total_rows"], preview["created_count"], preview["error_rows"]) == (ROWS, ROWS, 0)
        assert any(p["phase"] == "validating" and 0 < p["percent"] < 100 for p in seen), seen

        response = await client.post(
            f"/api/v1/imports/{preview['id']}/apply", json={"mode": "all_or_nothing"}, headers=account.headers
        )
        assert response.status_code == 202, response.text
        applied, seen = await _wait_for(client, account, preview["id"], "applied", within=60)
        assert applied["created_count"] == ROWS
        assert any(p["phase"] == "applying" and 0 < p["percent"] < 100 for p in seen), seen

    async with make_sessionmaker(engine)() as session:
        counts = [
            await session.scalar(select(func.count()).select_from(model))
            for model in (Product, Variant, StockLevel, StockMovement)
        ]
        on_hand = await session.scalar(select(func.sum(StockLevel.on_hand)))
    nonzero = sum(1 for i in range(ROWS) if i % 300)
    assert counts == [ROWS // 4, ROWS, ROWS, nonzero]
    assert on_hand == sum(i % 300 for i in range(ROWS))
