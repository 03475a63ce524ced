"""A worker killed mid-job (SIGKILL: no cleanup at all) leaves a lease; once it expires, another worker finishes
the job."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.models import Job, JobStatus
from agrimarket.worker import JobContext, Registry, Worker, enqueue
from tests.worker.conftest import wait_for
from tests.worker.victim import KIND

ROOT = Path(__file__).resolve().parents[2]


async def test_a_killed_worker_s_job_is_finished_by_another_after_the_lease(
    db: async_sessionmaker[AsyncSession],
    registry: Registry,
    make_worker: Callable[..., Worker],
    worker_settings: Settings,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "victim-started"
    env = {
        **os.environ,
        "AGRIMARKET_ENV": "test",
        "AGRIMARKET_DATABASE_URL": worker_settings.database_url,
        "AGRIMARKET_DATA_DIR": str(tmp_path),
        "AGRIMARKET_WORKER_LEASE_SECONDS": str(worker_settings.worker_lease_seconds),
        "AGRIMARKET_LOG_LEVEL": "WARNING",
        "AGRIMARKET_AUTO_MIGRATE": "false",
    }
    async with transaction(db) as session:
        job_id = await enqueue(session, KIND, {"order": "SHP-1"})
    victim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.worker.victim", str(marker), cwd=ROOT, env=env
    )
    try:
        await wait_for(marker.exists, within=30, what="the victim to start the job")
    finally:
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
    killed_at = time.monotonic()
    assert marker.read_text().split() == [str(job_id), "victim"]
    async with transaction(db) as session:
        orphan = await session.get(Job, job_id)
        assert orphan is not None
        assert orphan.status is JobStatus.running
        assert orphan.locked_by == "victim"

    finished: list[tuple[str, int, dict[str, Any]]] = []

    @registry.handler(KIND)
    async def finish(ctx: JobContext, payload: dict[str, Any]) -> None:
        finished.append((ctx.worker_id, ctx.attempt, payload))

    async with make_worker(worker_id="survivor"):
        await wait_for(lambda: bool(finished), within=10, what="the survivor to take the job")
        taken_after = time.monotonic() - killed_at
        await asyncio.sleep(0.2)
    assert finished == [("survivor", 2, {"order": "SHP-1"})]
    assert taken_after < worker_settings.worker_lease_seconds + 1.5
    async with transaction(db) as session:
        job = await session.get(Job, job_id)
        assert job is not None
        assert job.status is JobStatus.done
        assert job.attempts == 2
