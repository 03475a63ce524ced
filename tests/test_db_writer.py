"""A SQLite file database's one writer connection: writers queue for it in order, a push's transaction goes first,
readers never wait behind it, and a writer that gives up never takes the connection with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from agrimarket.config import Settings
from agrimarket.db import create_engine, reader, urgent_writes


@pytest.fixture
async def file_engine(tmp_path: Path, migrated: Settings) -> AsyncIterator[AsyncEngine]:
    # A writer waits for the connection as long as SQLite's busy timeout: 300 ms here.
    settings = migrated.model_copy(update={"sqlite_busy_timeout_ms": 300})
    engine = create_engine(settings, url=f"sqlite+aiosqlite:///{tmp_path / 'writer.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE log (who TEXT)"))
    yield engine
    await engine.dispose()


async def _write(engine: AsyncEngine, who: str, order: list[str], *, urgent: bool = False) -> None:
    async def run() -> None:
        async with engine.begin() as conn:
            order.append(who)
            await conn.execute(text("INSERT INTO log VALUES (:who)"), {"who": who})

    if urgent:
        with urgent_writes():
            await run()
    else:
        await run()


async def test_writers_wait_in_turn_and_an_urgent_one_goes_ahead_of_those_already_waiting(
    file_engine: AsyncEngine,
) -> None:
    order: list[str] = []
    async with file_engine.connect() as held:  # the one writer connection, taken
        await held.execute(text("SELECT 1"))
        waiting = [asyncio.create_task(_write(file_engine, f"worker {i}", order)) for i in range(3)]
        await asyncio.sleep(0.05)
        waiting.append(asyncio.create_task(_write(file_engine, "push", order, urgent=True)))
        await asyncio.sleep(0.05)
        assert order == []  # nobody got past the held connection
    await asyncio.gather(*waiting)

    assert order == ["push", "worker 0", "worker 1", "worker 2"]


async def test_readers_read_while_the_writer_connection_is_held(file_engine: AsyncEngine) -> None:
    async with file_engine.begin() as writing:
        await writing.execute(text("INSERT INTO log VALUES ('uncommitted')"))
        async with reader(file_engine).connect() as reading:
            rows = (await asyncio.wait_for(reading.execute(text("SELECT count(*) FROM log")), 1)).scalar_one()
    assert rows == 0  # WAL: the reader sees the last commit, without waiting


async def test_a_writer_that_times_out_or_is_cancelled_does_not_take_the_connection_with_it(
    file_engine: AsyncEngine,
) -> None:
    order: list[str] = []
    async with file_engine.connect() as held:
        await held.execute(text("SELECT 1"))
        with pytest.raises(PoolTimeout):
            await _write(file_engine, "gave up", order)
        cancelled = asyncio.create_task(_write(file_engine, "cancelled", order))
        await asyncio.sleep(0.05)  # waiting, well within its 300 ms
        cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled

    await asyncio.wait_for(_write(file_engine, "after", order), 2)
    assert order == ["after"]
