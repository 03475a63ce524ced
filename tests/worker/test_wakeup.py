"""A worker starts a job the moment the enqueuing transaction commits, not on its next poll."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.worker import JobContext, Registry, Worker, enqueue
from tests.worker.conftest import wait_for

LIMIT = 0.2  # seconds from "begin the enqueuing transaction" to "handler starts"
ROUNDS = 20


async def measure(db: async_sessionmaker[AsyncSession], registry: Registry, kind: str) -> list[float]:
    started: asyncio.Queue[float] = asyncio.Queue()

    @registry.handler(kind)
    async def record(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        started.put_nowait(time.perf_counter())

    latencies: list[float] = []
    for n in range(ROUNDS):
        await asyncio.sleep(0.05)  # let the worker go back to sleep
        t0 = time.perf_counter()
        async with transaction(db) as session:
            await enqueue(session, kind, {"n": n})
        latencies.append(await asyncio.wait_for(started.get(), 5) - t0)
    return latencies


def report(artifacts_dir: Path, name: str, dialect: str, latencies: list[float]) -> None:
    summary = {
        "dialect": dialect,
        "rounds": len(latencies),
        "median_ms": round(statistics.median(latencies) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
    }
    (artifacts_dir / f"worker-{name}-{dialect}.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{name} ({dialect}): {summary}")  # noqa: T201 - the measured figure, shown with -s


async def test_in_process_wake_up_is_immediate(
    db: async_sessionmaker[AsyncSession],
    registry: Registry,
    make_worker: Callable[..., Worker],
    engine: AsyncEngine,
    worker_settings: Settings,
    artifacts_dir: Path,
) -> None:
    # A 30 s poll: only the wake-up can explain a start within LIMIT.
    slow_poll = worker_settings.model_copy(update={"worker_poll_interval_seconds": 30.0})
    async with make_worker(settings=slow_poll, listen=False, concurrency=1):
        await asyncio.sleep(0.1)
        latencies = await measure(db, registry, "test.wake.local")
    report(artifacts_dir, "wake-latency-in-process", engine.dialect.name, latencies)
    assert max(latencies) < LIMIT, latencies


async def test_notify_wakes_a_worker_in_another_process(
    db: async_sessionmaker[AsyncSession],
    registry: Registry,
    make_worker: Callable[..., Worker],
    engine: AsyncEngine,
    engine_b: AsyncEngine,
    worker_settings: Settings,
    artifacts_dir: Path,
) -> None:
    """PostgreSQL: the worker is deaf to this process's commits (no in-process wake-up) and polls every 30 s, so
    only LISTEN/NOTIFY can start the job in time."""
    if engine.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; on SQLite the worker runs in the server process")
    slow_poll = worker_settings.model_copy(update={"worker_poll_interval_seconds": 30.0})
    async with make_worker(
        engine=engine_b, settings=slow_poll, wake_in_process=False, listen=True, concurrency=1
    ) as worker:
        await asyncio.wait_for(worker.listening.wait(), 5)
        await asyncio.sleep(0.1)
        latencies = await measure(db, registry, "test.wake.notify")
    report(artifacts_dir, "wake-latency-notify", engine.dialect.name, latencies)
    assert max(latencies) < LIMIT, latencies


async def test_without_any_wake_up_the_poll_still_finds_the_job(
    db: async_sessionmaker[AsyncSession], registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    ran: list[int] = []

    @registry.handler("test.wake.poll")
    async def record(_ctx: JobContext, payload: dict[str, Any]) -> None:
        ran.append(payload["n"])

    async with make_worker(wake_in_process=False, listen=False):  # poll every 1 s (worker_settings)
        await asyncio.sleep(0.05)
        async with transaction(db) as session:
            await enqueue(session, "test.wake.poll", {"n": 1})
        waited = await wait_for(lambda: ran == [1], within=3, what="the poll")
    assert waited <= 1.5
