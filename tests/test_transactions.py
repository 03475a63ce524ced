"""A request's transaction is committed before its answer is sent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import register


async def test_a_commit_that_fails_answers_an_error_not_a_success(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await register(client)

    async def failing_commit(self: AsyncSession, *args: Any, **kwargs: Any) -> None:
        raise IntegrityError("COMMIT", {}, Exception("the database refused the commit"))

    monkeypatch.setattr(AsyncSession, "commit", failing_commit)
    response = await client.post(
        "/api/v1/organizations", json={"name": "HTX Mới", "kind": "cooperative"}, headers=account.headers
    )
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


async def test_a_value_the_database_cannot_store_is_a_422_not_a_500(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await register(client)

    async def refusing_flush(self: AsyncSession, *args: Any, **kwargs: Any) -> None:
        raise DataError("INSERT", {}, Exception("invalid byte sequence for encoding UTF8: 0x00"))

    monkeypatch.setattr(AsyncSession, "flush", refusing_flush)
    response = await client.post(
        "/api/v1/organizations", json={"name": "HTX Mới", "kind": "cooperative"}, headers=account.headers
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid"


async def test_a_search_with_a_nul_byte_is_searched_without_it(client: httpx.AsyncClient) -> None:
    account = await register(client)
    products = await client.get(
        f"/api/v1/organizations/{account.organization_id}/products",
        params={"q": "sầu\x00riêng"},
        headers=account.headers,
    )
    stock = await client.get(
        f"/api/v1/organizations/{account.organization_id}/stock",
        params={"q": "\x00", "available_lte": 10**30},
        headers=account.headers,
    )
    assert products.status_code == 200
    assert stock.status_code == 422
    assert stock.json()["field"] == "available_lte"


async def test_the_frameworks_own_refusals_come_in_the_same_error_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/no-such-thing")
    wrong_method = await client.delete("/healthz")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, "method_not_allowed")
    assert wrong_method.headers["allow"]
