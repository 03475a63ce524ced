"""The embedded default: the worker lives in the server process's lifespan; its gauges show the queue."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.app import create_app
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.models import Job, JobStatus, utcnow
from agrimarket.worker import JobContext, Registry, Worker, enqueue
from agrimarket.worker import registry as default_registry
from tests.worker.conftest import wait_for


async def test_the_server_runs_the_worker_in_process(
    db: async_sessionmaker[AsyncSession], worker_settings: Settings
) -> None:
    kind = f"test.embedded.{uuid.uuid4().hex[:8]}"  # the process-wide registry: a kind no other test uses
    ran: list[dict[str, Any]] = []

    @default_registry.handler(kind)
    async def work(_ctx: JobContext, payload: dict[str, Any]) -> None:
        ran.append(payload)

    app = create_app(worker_settings.model_copy(update={"run_worker_in_process": True}))
    async with app.router.lifespan_context(app):
        worker: Worker = app.state.worker
        assert worker.is_running
        async with transaction(app.state.sessionmaker) as session:
            await enqueue(session, kind, {"order": "TIKI-9"})
        await wait_for(lambda: bool(ran), within=2, what="the in-process worker")
    assert ran == [{"order": "TIKI-9"}]
    assert not worker.is_running  # stopped with the server
    del db


async def test_the_worker_can_be_left_out_of_the_server(
    db: async_sessionmaker[AsyncSession], worker_settings: Settings
) -> None:
    app = create_app(worker_settings.model_copy(update={"run_worker_in_process": False}))
    async with app.router.lifespan_context(app):
        assert not hasattr(app.state, "worker")
    del db


async def test_a_started_server_keeps_what_it_started_with_out_of_the_collectors_full_walks(
    db: async_sessionmaker[AsyncSession], worker_settings: Settings
) -> None:
    gc.unfreeze()  # what earlier tests' servers froze: back in the collector's reach
    app = create_app(worker_settings.model_copy(update={"run_worker_in_process": False}))
    async with app.router.lifespan_context(app):
        frozen, walked = gc.get_freeze_count(), len(gc.get_objects())
    assert frozen > 10_000  # modules, routes, mappers, settings: alive as long as the process
    assert walked < frozen  # what a full collection still walks: made since the start
    gc.unfreeze()
    del db


def sample(name: str, kind: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"kind": kind})


async def test_queue_depth_and_oldest_age_per_kind(
    db: async_sessionmaker[AsyncSession], registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    now = utcnow()
    async with transaction(db) as session:
        await enqueue(session, "test.metrics.a", run_at=now - timedelta(seconds=90))
        await enqueue(session, "test.metrics.a", run_at=now - timedelta(seconds=5))
        await enqueue(session, "test.metrics.a", run_at=now + timedelta(hours=1))  # not due: not backlog
        dead = await enqueue(session, "test.metrics.b")
        await session.execute(update(Job).where(Job.id == dead).values(status=JobStatus.dead))
    # The worker handles other kinds only, so it leaves these alone while it publishes the gauges.
    registry.register("test.metrics.other", lambda _ctx, _payload: asyncio.sleep(0))
    async with make_worker(metrics=True):
        await wait_for(lambda: sample("agrimarket_job_queue_depth", "test.metrics.a") == 2, what="the gauges")
    age = sample("agrimarket_job_oldest_queued_age_seconds", "test.metrics.a")
    assert age is not None
    assert 89 <= age <= 95
    assert sample("agrimarket_jobs_dead", "test.metrics.b") == 1
    assert sample("agrimarket_job_queue_depth", "test.metrics.b") == 0
