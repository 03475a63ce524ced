"""Runner tests need real commits (workers claim on their own connections): each test here gets the migrated
database, commits freely, and leaves it emptied."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agrimarket.config import Settings
from agrimarket.db import create_engine, make_sessionmaker
from agrimarket.worker import Registry, Worker
from tests.conftest import _wipe


@pytest.fixture
def worker_settings(migrated: Settings) -> Settings:
    """Quick timings, so leases expire and retries fall due within a test."""
    return migrated.model_copy(
        update={
            "worker_concurrency": 4,
            "worker_poll_interval_seconds": 1.0,
            "worker_lease_seconds": 1.5,
            "worker_backoff_base_seconds": 0.05,
            "worker_backoff_cap_seconds": 0.2,
            "worker_shutdown_timeout_seconds": 2.0,
            "worker_scheduler": False,
            "worker_metrics_interval_seconds": 3600.0,
        }
    )


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A committing sessionmaker on the test database; every table is emptied afterwards."""
    try:
        yield make_sessionmaker(engine)
    finally:
        await _wipe(engine)


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def make_worker(engine: AsyncEngine, worker_settings: Settings, registry: Registry) -> Callable[..., Worker]:
    def make(**kwargs: Any) -> Worker:
        kwargs.setdefault("registry", registry)
        kwargs.setdefault("metrics", False)
        return Worker(kwargs.pop("engine", engine), kwargs.pop("settings", worker_settings), **kwargs)

    return make


async def wait_for(predicate: Callable[[], bool], within: float = 10.0, what: str = "condition") -> float:
    """Poll until ``predicate()`` holds; returns the seconds it took. Fails the test on timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


@pytest.fixture
async def engine_b(worker_settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A second engine on the same database: what another worker process would have."""
    engine = create_engine(worker_settings)
    yield engine
    await engine.dispose()
