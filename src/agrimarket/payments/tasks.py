"""The storefront's background work: Stripe's events handled, preempted checkouts expired, overdue ones swept."""

from __future__ import annotations

import uuid
from typing import Any

from agrimarket.observability import get_logger
from agrimarket.payments import gateway
from agrimarket.payments.events import HANDLE_KIND, SWEEP_KIND, StripeEvents
from agrimarket.payments.holds import EXPIRE_KIND
from agrimarket.sync.runtime import runtime
from agrimarket.worker import JobContext, every, handler

log = get_logger(__name__)

SWEEP_SECONDS = 300.0


def _events(ctx: JobContext) -> StripeEvents:
    gateway.configure(ctx.settings)  # the storefront adapter's cancel reads it
    return StripeEvents(ctx.sessionmaker, ctx.settings, runtime(ctx.settings).http)


@handler(HANDLE_KIND)
async def handle_stripe_events(ctx: JobContext, _payload: dict[str, Any]) -> None:
    report = await _events(ctx).handle_pending()
    log.info(
        "stripe_events_handled",
        events=report.events,
        checkouts=report.checkouts,
        ignored=report.ignored,
        unknown=report.unknown,
    )


@handler(EXPIRE_KIND)
async def expire_checkout(ctx: JobContext, payload: dict[str, Any]) -> None:
    await _events(ctx).expire(uuid.UUID(payload["checkout_id"]))


@handler(SWEEP_KIND)
async def sweep_checkouts(ctx: JobContext, _payload: dict[str, Any]) -> None:
    swept = await _events(ctx).sweep()
    if swept:
        log.info("storefront_checkouts_swept", count=swept)


every(SWEEP_SECONDS, SWEEP_KIND)
