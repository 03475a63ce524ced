"""The runner's own housekeeping: finished jobs are purged after the retention period (dead ones stay)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agrimarket.models import utcnow
from agrimarket.observability import get_logger
from agrimarket.worker.registry import JobContext, every, handler
from agrimarket.worker.repository import JobRepository

log = get_logger(__name__)

PURGE_KIND = "jobs.purge_done"


@handler(PURGE_KIND)
async def purge_done(ctx: JobContext, _payload: dict[str, Any]) -> None:
    async with ctx.transaction() as session:
        purged = await JobRepository(session).purge_done(utcnow() - timedelta(days=ctx.settings.job_retention_days))
    log.info("jobs_purged", count=purged)


every(6 * 3600, PURGE_KIND)
