"""The order pipeline's background work: draining a shop's webhook inbox, and reconciliation (order polls and a
platform's lost pushes)."""

from __future__ import annotations

import uuid
from typing import Any

from agrimarket.config import get_settings
from agrimarket.observability import get_logger
from agrimarket.orders.inbox import (
    DRAIN_KIND,
    InboxDrainer,
    drain_next_turn,
    follow_up_drain,
    hold_drain,
    let_go_drain,
)
from agrimarket.orders.reconcile import (
    LOST_PUSHES_KIND,
    POLL_KIND,
    RECONCILE_KIND,
    LostPushCollector,
    OrderPoller,
    request_polls,
)
from agrimarket.sync.runtime import runtime
from agrimarket.worker import JobContext, every, handler

log = get_logger(__name__)


def _owner(ctx: JobContext) -> str:
    return f"{ctx.worker_id}/{ctx.job_id}"


@handler(DRAIN_KIND)
async def drain_inbox(ctx: JobContext, payload: dict[str, Any]) -> None:
    connection_id = uuid.UUID(payload["connection_id"])
    if not await hold_drain(
        ctx.sessionmaker, connection_id, job_id=ctx.job_id, worker_id=ctx.worker_id, attempt=ctx.attempt
    ):
        # Another drain of this shop is running: it reads what we would; a follow-up covers its last moments.
        await follow_up_drain(ctx.sessionmaker, connection_id, ctx.organization_id)
        log.debug("inbox_drain_busy", connection_id=payload["connection_id"])
        return
    parts = runtime(ctx.settings)
    drainer = InboxDrainer(ctx.sessionmaker, ctx.settings, channels=parts.channels, http=parts.http, owner=_owner(ctx))
    try:
        report = await drainer.drain(connection_id)
    except BaseException:
        # Waiting for a retry (or stopped): the key must not stay with a queued job. Done, it goes with the job.
        await let_go_drain(ctx.sessionmaker, connection_id, ctx.job_id)
        raise
    if report.handed_on:
        await drain_next_turn(ctx.sessionmaker, connection_id, ctx.organization_id, ctx.job_id)
    log.info(
        "inbox_drained",
        connection_id=payload["connection_id"],
        events=report.events,
        batches=report.batches,
        remote_calls=report.remote_calls,
        orders=report.orders_ingested,
        missing=report.orders_missing,
        handed_on=report.handed_on,
    )


@handler(RECONCILE_KIND)
async def reconcile_orders(ctx: JobContext, _payload: dict[str, Any]) -> None:
    async with ctx.transaction() as session:
        queued = await request_polls(session, runtime(ctx.settings).channels)
    log.info("order_polls_queued", count=queued)


@handler(POLL_KIND)
async def poll_orders(ctx: JobContext, payload: dict[str, Any]) -> None:
    parts = runtime(ctx.settings)
    poller = OrderPoller(ctx.sessionmaker, ctx.settings, channels=parts.channels, http=parts.http, owner=_owner(ctx))
    report = await poller.poll(uuid.UUID(payload["connection_id"]))
    log.info(
        "orders_polled",
        connection_id=payload["connection_id"],
        outcome=report.outcome,
        since=report.since.isoformat() if report.since else None,
        until=report.until.isoformat() if report.until else None,
        pages=report.pages,
        remote_calls=report.remote_calls,
        orders=report.orders_seen,
        advanced=report.advanced,
    )


@handler(LOST_PUSHES_KIND)
async def collect_lost_pushes(ctx: JobContext, payload: dict[str, Any]) -> None:
    parts = runtime(ctx.settings)
    collector = LostPushCollector(
        ctx.sessionmaker, ctx.settings, channels=parts.channels, http=parts.http, owner=_owner(ctx)
    )
    report = await collector.collect(uuid.UUID(payload["connection_id"]))
    log.info(
        "lost_pushes_collected",
        connection_id=payload["connection_id"],
        pages=report.pages,
        stored=report.stored,
        duplicates=report.duplicates,
        no_shop=report.no_shop,
        confirmed=report.confirmed,
    )


# The period is read once, when the worker imports its task modules.
every(get_settings().orders_poll_seconds, RECONCILE_KIND)
