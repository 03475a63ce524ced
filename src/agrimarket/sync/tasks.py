"""The sync jobs: one run of the engine over one shop, and the periodic drift check of every shop's stock."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from agrimarket.config import get_settings
from agrimarket.observability import get_logger
from agrimarket.sync.drift import DRIFT_ALL_KIND, DRIFT_KIND, DriftChecker, request_drift_checks
from agrimarket.sync.engine import SyncEngine
from agrimarket.sync.queue import SYNC_KIND
from agrimarket.sync.runtime import runtime
from agrimarket.worker import JobContext, every, handler

log = get_logger(__name__)


@handler(SYNC_KIND)
async def sync_connection(ctx: JobContext, payload: dict[str, Any]) -> None:
    if ctx.settings.sync_coalesce_seconds > 0:
        # A burst of edits (a farmer tapping + five times) lands before we read: one push carries them all.
        await asyncio.sleep(ctx.settings.sync_coalesce_seconds)
    parts = runtime(ctx.settings)
    engine = SyncEngine(
        ctx.sessionmaker,
        ctx.settings,
        channels=parts.channels,
        http=parts.http,
        storage=parts.storage,
        owner=f"{ctx.worker_id}/{ctx.job_id}",
    )
    report = await engine.run(uuid.UUID(payload["connection_id"]))
    log.info(
        "sync_run",
        connection_id=payload["connection_id"],
        outcome=report.outcome,
        calls=dict(report.calls),
        recorded=report.recorded,
        rejected=report.rejected,
        waited=round(report.waited_seconds, 3),
    )


@handler(DRIFT_ALL_KIND)
async def check_every_shops_drift(ctx: JobContext, _payload: dict[str, Any]) -> None:
    async with ctx.transaction() as session:
        queued = await request_drift_checks(session)
    log.info("drift_checks_queued", count=queued)


@handler(DRIFT_KIND)
async def check_drift(ctx: JobContext, payload: dict[str, Any]) -> None:
    parts = runtime(ctx.settings)
    checker = DriftChecker(
        ctx.sessionmaker, ctx.settings, channels=parts.channels, http=parts.http, owner=f"{ctx.worker_id}/{ctx.job_id}"
    )
    await checker.check(uuid.UUID(payload["connection_id"]))


# The period is read once, when the worker imports its task modules.
every(get_settings().sync_drift_check_seconds, DRIFT_ALL_KIND)
