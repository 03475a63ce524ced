"""Periodic jobs: one per period however many workers schedule them, never overlapping, never repeated."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agrimarket.db import transaction
from agrimarket.models import Job, JobStatus, utcnow
from agrimarket.worker import JobContext, Registry, Worker

PERIOD = 0.5


async def test_two_workers_schedule_each_period_once(
    db: async_sessionmaker[AsyncSession],
    registry: Registry,
    make_worker: Callable[..., Worker],
    engine_b: AsyncEngine,
) -> None:
    runs: Counter[uuid.UUID] = Counter()

    @registry.handler("test.tick")
    async def tick(ctx: JobContext, payload: dict[str, Any]) -> None:
        assert payload == {"connection": "shopee-1"}
        runs[ctx.job_id] += 1

    schedule = registry.every(PERIOD, "test.tick", lambda: {"connection": "shopee-1"})
    first_period = math.floor(utcnow().timestamp() / PERIOD)
    async with (
        make_worker(worker_id="one", scheduler=True) as one,
        make_worker(worker_id="two", scheduler=True, engine=engine_b),
    ):
        await asyncio.sleep(PERIOD * 5 + 0.2)
        # A late scheduler (paused across the boundary) cannot bring a finished period back.
        assert await one.schedule_period(schedule, first_period + 1) is None
    last_period = math.floor(utcnow().timestamp() / PERIOD)

    async with transaction(db) as session:
        jobs = list((await session.execute(select(Job).where(Job.kind == "test.tick"))).scalars())
    periods = [round(job.run_at.timestamp() / PERIOD) for job in jobs]
    assert len(periods) == len(set(periods))  # never two jobs for one period
    assert set(periods) <= set(range(first_period, last_period + 1))
    assert len(jobs) >= 5
    done = [job for job in jobs if job.status is JobStatus.done]
    assert len(jobs) - len(done) <= 1  # the workers may stop between the last enqueue and its claim
    assert runs == {job.id: 1 for job in done}


async def test_a_period_is_skipped_while_the_previous_run_is_unfinished(
    db: async_sessionmaker[AsyncSession], registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    schedule = registry.every(60, "test.slow_tick")
    worker = make_worker()  # not started: only its scheduling step is used
    assert await worker.schedule_period(schedule, 1000) is not None
    assert await worker.schedule_period(schedule, 1000) is None  # same period
    assert await worker.schedule_period(schedule, 1001) is None  # the 1000 run is still queued
    async with transaction(db) as session:
        count = len((await session.execute(select(Job.id).where(Job.kind == "test.slow_tick"))).all())
    assert count == 1


def test_schedules_are_validated() -> None:
    registry = Registry()
    registry.every(10, "a")
    with pytest.raises(ValueError, match="already registered"):
        registry.every(20, "a")
    with pytest.raises(ValueError, match="positive"):
        registry.every(0, "b")
    registry.every(20, "a", name="a-slow")  # a second schedule of one kind needs its own name
    assert [s.name for s in registry.schedules] == ["a", "a-slow"]


def test_handlers_are_registered_once_per_kind() -> None:
    registry = Registry()

    async def one(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        return None

    async def other(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        return None

    registry.register("orders.fetch", one)
    registry.register("orders.fetch", one)  # the same function again (a module imported twice): fine
    with pytest.raises(ValueError, match="already registered"):
        registry.register("orders.fetch", other)
    assert registry.get("orders.fetch") is one
    assert registry.kinds == ["orders.fetch"]
