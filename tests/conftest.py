"""Test fixtures: one migrated database per run (SQLite file, or PostgreSQL from AGRIMARKET_TEST_DATABASE_URL),
each test inside a transaction rolled back at its end, the app called through ``httpx.ASGITransport``."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from agrimarket import migrate
from agrimarket.app import create_app
from agrimarket.config import Environment, Settings, new_fernet_key
from agrimarket.db import create_engine, make_sessionmaker, reader
from agrimarket.models import Base

TEST_DATABASE_URL_ENV = "AGRIMARKET_TEST_DATABASE_URL"


def _create_postgres_database(base_url: str) -> tuple[str, str]:
    """A throwaway database beside the one given, so a run never touches the given database's data."""
    import psycopg

    url = make_url(base_url)
    name = f"agrimarket_test_{uuid.uuid4().hex[:10]}"
    admin_dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # name is ours: hex only
    return url.set(database=name).render_as_string(hide_password=False), admin_dsn


def _drop_postgres_database(admin_dsn: str, url: str) -> None:
    import psycopg

    name = make_url(url).database
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def throwaway_database(directory: Path, name: str = "test.db") -> Iterator[str]:
    """An empty database of the kind under test (SQLite file, or PostgreSQL beside the given one), dropped after."""
    given = os.environ.get(TEST_DATABASE_URL_ENV)
    if not given:
        yield f"sqlite+aiosqlite:///{directory / name}"
        return
    url, admin_dsn = _create_postgres_database(given)
    try:
        yield url
    finally:
        _drop_postgres_database(admin_dsn, url)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with throwaway_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        env=Environment.test,
        data_dir=tmp_path_factory.mktemp("data"),
        database_url=database_url,
        secret_key="test-secret-key",
        encryption_keys=new_fernet_key(),
        auto_migrate=False,
        log_level="WARNING",
    )


@pytest.fixture(scope="session")
def migrated(settings: Settings) -> Settings:
    migrate.upgrade(settings)
    return settings


@pytest.fixture(scope="session")
async def engine(migrated: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside a transaction that is rolled back after the test: nothing a test writes survives."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        yield conn
        if transaction.is_active:
            await transaction.rollback()


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False, autoflush=False
    )


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


def _bare_app(settings: Settings, engine: AsyncEngine) -> FastAPI:
    """The app with its state set as the lifespan would, without starting companions."""
    app = create_app(settings)
    app.state.engine = engine
    app.state.migration_head = migrate.head_revision(settings)
    return app


@pytest.fixture
def app(migrated: Settings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]) -> FastAPI:
    app = _bare_app(migrated, engine)
    app.state.sessionmaker = sessionmaker
    app.state.read_sessionmaker = sessionmaker
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


async def _wipe(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        # Households point at their cooperative (RESTRICT): unhook them before rows go in one statement.
        await conn.execute(text("UPDATE organizations SET cooperative_id = NULL"))
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())


@pytest.fixture
async def committing_app(migrated: Settings, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    """The app with real, committing transactions on their own connections, for concurrency tests.

    The tables are emptied afterwards, so the rolled-back tests around it still start from nothing.
    """
    app = _bare_app(migrated, engine)
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.read_sessionmaker = make_sessionmaker(reader(engine))
    try:
        yield app
    finally:
        await _wipe(engine)


@pytest.fixture
async def committing_client(committing_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=committing_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parents[1] / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
