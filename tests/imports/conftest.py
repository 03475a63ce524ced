"""What the import tests share: the app sending every file to the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from agrimarket import migrate
from agrimarket.app import create_app
from agrimarket.config import Settings
from agrimarket.db import make_sessionmaker, reader
from tests.conftest import _wipe


@pytest.fixture
async def worker_app(migrated: Settings, engine: AsyncEngine) -> AsyncIterator[tuple[FastAPI, Settings]]:
    """The app on committing transactions, sending every file to the worker (no inline size)."""
    settings = migrated.model_copy(
        update={"import_inline_max_kb": 0, "worker_poll_interval_seconds": 0.2, "worker_lease_seconds": 120.0}
    )
    app = create_app(settings)
    app.state.engine = engine
    app.state.migration_head = migrate.head_revision(settings)
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.read_sessionmaker = make_sessionmaker(reader(engine))
    try:
        yield app, settings
    finally:
        await _wipe(engine)
