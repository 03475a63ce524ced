"""Liveness and readiness probes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agrimarket import health, migrate
from agrimarket.config import Settings
from agrimarket.db import create_engine


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready_when_the_schema_is_at_head(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "database": "reachable",
        "migration": migrate.head_revision(settings),
    }


@pytest.fixture
async def empty_database(tmp_path: Path, settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    yield engine
    await engine.dispose()


async def test_readyz_is_not_ready_while_the_schema_is_behind(
    app: FastAPI, client: httpx.AsyncClient, empty_database: AsyncEngine, settings: Settings
) -> None:
    app.state.engine = empty_database

    response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "reachable",
        "migration": None,
        "expected": migrate.head_revision(settings),
    }


@pytest.fixture
async def unreachable_database(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    # SQLite cannot create a file in a folder that does not exist: every connection attempt fails.
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing-folder' / 'db.sqlite'}")
    yield engine
    await engine.dispose()


async def test_readyz_is_not_ready_when_the_database_is_unreachable(
    app: FastAPI, client: httpx.AsyncClient, unreachable_database: AsyncEngine
) -> None:
    app.state.engine = unreachable_database

    response = await client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "unreachable: OperationalError"


async def test_readyz_gives_up_on_a_database_that_does_not_answer_in_time(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "READY_TIMEOUT_SECONDS", 0.0)

    response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["database"] == "unreachable: TimeoutError"
