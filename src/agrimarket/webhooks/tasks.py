"""The inbox's background work: pulling the event queues of channels that queue their notifications (Tiki)."""

from __future__ import annotations

import uuid
from typing import Any

from agrimarket.config import get_settings
from agrimarket.observability import get_logger
from agrimarket.sync.runtime import runtime
from agrimarket.webhooks.pull import PULL_ALL_KIND, PULL_KIND, EventPuller, request_pulls
from agrimarket.worker import JobContext, every, handler

log = get_logger(__name__)


@handler(PULL_ALL_KIND)
async def pull_event_queues(ctx: JobContext, _payload: dict[str, Any]) -> None:
    parts = runtime(ctx.settings)
    async with ctx.transaction() as session:
        queued = await request_pulls(session, parts.channels, parts.http)
    log.debug("event_pulls_queued", count=queued)


@handler(PULL_KIND)
async def pull_events(ctx: JobContext, payload: dict[str, Any]) -> None:
    parts = runtime(ctx.settings)
    puller = EventPuller(
        ctx.sessionmaker, ctx.settings, channels=parts.channels, http=parts.http, owner=f"{ctx.worker_id}/{ctx.job_id}"
    )
    report = await puller.pull(uuid.UUID(payload["connection_id"]))
    log.info(
        "events_pulled",
        connection_id=payload["connection_id"],
        outcome=report.outcome,
        pulls=report.pulls,
        stored=report.stored,
        duplicates=report.duplicates,
        acked=report.acked,
        ack_expired=report.ack_expired,
    )


# The period is read once, when the worker imports its task modules.
every(get_settings().event_queue_pull_seconds, PULL_ALL_KIND)
