"""Engines and sessions.

SQLite: WAL, foreign keys, a busy timeout, and transactions that start with ``BEGIN IMMEDIATE`` so two writers
queue for the lock instead of failing half-way on an upgrade from a read lock. Read-only requests use a
deferred ``BEGIN`` so they never wait for writers. PostgreSQL: plain transactions; row locks where needed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from agrimarket.config import Settings

SQLITE_BEGIN_OPTION = "agrimarket_sqlite_begin"


def _install_sqlite_hooks(sync_engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver, so the "begin" hook below decides how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


def create_engine(settings: Settings, *, url: str | None = None) -> AsyncEngine:
    url = url or settings.database_url
    if url.startswith("sqlite"):
        if ":memory:" not in url:
            path = url.split(":///", 1)[-1]
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, poolclass=NullPool if ":memory:" in url else None)
        _install_sqlite_hooks(engine.sync_engine, settings.sqlite_busy_timeout_ms)
        return engine
    return create_async_engine(url, pool_size=settings.db_pool_size, max_overflow=10, pool_pre_ping=True)


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine, but SQLite transactions begin deferred: for requests that only read."""
    return engine.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def transaction(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A unit of work outside a request (CLI, worker): commit on success, roll back on error."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
