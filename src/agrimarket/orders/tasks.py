"""The order pipeline's background work: draining a shop's webhook inbox."""

from __future__ import annotations

import uuid
from typing import Any

from agrimarket.observability import get_logger
from agrimarket.orders.inbox import DRAIN_KIND, InboxDrainer
from agrimarket.sync.runtime import runtime
from agrimarket.worker import JobContext, handler

log = get_logger(__name__)


@handler(DRAIN_KIND)
async def drain_inbox(ctx: JobContext, payload: dict[str, Any]) -> None:
    parts = runtime(ctx.settings)
    drainer = InboxDrainer(
        ctx.sessionmaker,
        ctx.settings,
        channels=parts.channels,
        http=parts.http,
        owner=f"{ctx.worker_id}/{ctx.job_id}",
    )
    report = await drainer.drain(uuid.UUID(payload["connection_id"]))
    log.info(
        "inbox_drained",
        connection_id=payload["connection_id"],
        events=report.events,
        batches=report.batches,
        remote_calls=report.remote_calls,
        orders=report.orders_ingested,
        missing=report.orders_missing,
    )
