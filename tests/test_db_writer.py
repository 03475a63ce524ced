"""A SQLite file database's one writer connection: writers queue for it in order, a push's transaction goes first,
readers never wait behind it, a writer that gives up never takes the connection with it, and its statements run on
the loop's thread without ever blocking it on another process's lock."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from agrimarket.config import Settings
from agrimarket.db import create_engine, reader, urgent_writes
from agrimarket.kit.inline_sqlite import BULK_ROWS


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


async def test_a_lock_held_by_another_process_is_waited_for_without_stopping_the_loop(
    file_engine: AsyncEngine, tmp_path: Path
) -> None:
    """The writer's statements run on the loop's thread; a lock held elsewhere (here a plain sqlite3 connection,
    as a CLI command would hold it) is waited for with asyncio sleeps, so the loop keeps turning meanwhile."""
    other = sqlite3.connect(tmp_path / "writer.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    order: list[str] = []
    writing = asyncio.create_task(_write(file_engine, "after the other process", order))
    turns = 0
    for _ in range(20):  # ~100 ms of the loop turning while the write waits
        await asyncio.sleep(0.005)
        turns += 1
    assert not writing.done()
    other.execute("COMMIT")
    await asyncio.wait_for(writing, 1)

    assert order == ["after the other process"]
    assert turns == 20
    other.close()


async def test_a_lock_held_elsewhere_past_the_busy_timeout_fails_as_locked(
    file_engine: AsyncEngine, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "writer.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            await _write(file_engine, "never", [])
    finally:
        other.execute("ROLLBACK")
        other.close()
    await asyncio.wait_for(_write(file_engine, "then", []), 1)  # the connection is still good


async def test_bulk_and_small_executemany_both_write_every_row_and_roll_back_whole(file_engine: AsyncEngine) -> None:
    few = [{"who": f"few {i}"} for i in range(3)]
    many = [{"who": f"many {i}"} for i in range(BULK_ROWS + 1)]  # in a worker thread
    async with file_engine.begin() as conn:
        await conn.execute(text("INSERT INTO log VALUES (:who)"), few)
        await conn.execute(text("INSERT INTO log VALUES (:who)"), many)

    async def insert_then_fail() -> None:
        async with file_engine.begin() as conn:
            await conn.execute(text("INSERT INTO log VALUES (:who)"), many)
            raise RuntimeError("undo")

    with pytest.raises(RuntimeError):
        await insert_then_fail()
    async with reader(file_engine).connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM log"))).scalar_one() == len(few) + len(many)
