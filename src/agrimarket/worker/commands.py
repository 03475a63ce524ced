"""The runner outside a request: in the server's lifespan, standalone (`agrimarket worker`), and the
operators' `agrimarket jobs list|retry`."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from agrimarket.config import Settings
from agrimarket.db import create_engine, make_sessionmaker, reader, transaction
from agrimarket.kit.memory import freeze_long_lived
from agrimarket.models import Job, JobStatus
from agrimarket.observability import configure_logging, get_logger
from agrimarket.sync.runtime import close_runtime
from agrimarket.worker.registry import load_task_modules
from agrimarket.worker.repository import JobRepository
from agrimarket.worker.runner import Worker
from agrimarket.worker.service import JobService

log = get_logger(__name__)


@asynccontextmanager
async def worker_companion(app: FastAPI) -> AsyncIterator[None]:
    """The in-process worker of the embedded default; does nothing when ``run_worker_in_process`` is off."""
    settings: Settings = app.state.settings
    if not settings.run_worker_in_process:
        yield
        return
    load_task_modules()
    worker = Worker(app.state.engine, settings)
    app.state.worker = worker
    try:
        async with worker:
            yield
    finally:
        await close_runtime()


async def run_worker(settings: Settings, *, concurrency: int | None = None, worker_id: str | None = None) -> None:
    """Run one worker until SIGINT or SIGTERM, then shut down gracefully (a second signal stops at once)."""
    configure_logging(json_logs=settings.json_logs, level=settings.log_level)
    load_task_modules()
    engine = create_engine(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal() -> None:
        log.info("worker_stopping")
        for sig in signals:
            loop.remove_signal_handler(sig)  # a second signal now interrupts the graceful shutdown
        stop.set()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        async with Worker(engine, settings, concurrency=concurrency, worker_id=worker_id):
            freeze_long_lived()
            await stop.wait()
    finally:
        await close_runtime()
        await engine.dispose()


async def list_jobs(
    settings: Settings, *, status: JobStatus | None = None, kind: str | None = None, limit: int = 50
) -> list[Job]:
    engine = create_engine(settings)
    try:
        async with transaction(make_sessionmaker(reader(engine))) as session:
            return await JobService(JobRepository(session)).page(None, status=status, kind=kind, limit=limit)
    finally:
        await engine.dispose()


async def retry_job(settings: Settings, job_id: uuid.UUID) -> Job:
    """Raises NotFound or Conflict (not dead) like the API; workers on PostgreSQL wake through NOTIFY."""
    engine = create_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            return await JobService(JobRepository(session)).retry(None, job_id)
    finally:
        await engine.dispose()
