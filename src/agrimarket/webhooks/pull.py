"""Pulled events: for channels that queue their notifications for us to pull (Tiki's Event Queue) instead of
pushing signed webhooks, the worker pulls them into the same inbox the webhook endpoint fills.

- ``webhooks.pull_event_queues`` (every ``event_queue_pull_seconds``) queues one ``webhooks.pull_events`` per active
  shop whose adapter implements :class:`~agrimarket.channels.base.EventQueue`, deduplicated per shop (a pull still
  queued or running absorbs the next).
- ``webhooks.pull_events`` pulls the shop's queue a batch at a time: each batch is stored in the shop's inbox
  (insert-or-nothing on the event's id under ``source = "<channel>:<connection id>"``, order ids read now, a drain
  queued for every new row: :meth:`InboxService.receive`, exactly as for a push) and **committed**, and only then
  acknowledged. Delivery is at-least-once: a crash between the commit and the ack, or an ack that came too late,
  brings the batch again, and the inbox keeps each event once.

Failures: the platform down or throttling → :class:`RetryLater` (nothing acknowledged, so nothing lost); the shop's
authorisation gone for good → the connection is marked ``auth_expired`` (the pulls stop until it is connected again).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import cast

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.base import ConnectionInfo, EventQueue, PulledEvents
from agrimarket.channels.errors import AuthExpired, ChannelError, ChannelNotFound, RateLimited, Retryable
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.channels.shop import ShopClient
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.models import ConnectionStatus
from agrimarket.observability import counter, get_logger
from agrimarket.orders.repository import OrderRepository
from agrimarket.webhooks.repository import InboxRepository
from agrimarket.webhooks.service import InboxService, VerifiedPush
from agrimarket.worker import PermanentJobError, RetryLater, enqueue

log = get_logger(__name__)

PULL_ALL_KIND = "webhooks.pull_event_queues"
PULL_KIND = "webhooks.pull_events"
MAX_PULLS = 20  # batches per run; a fuller queue is read on by the next run, 15 s later

PULLED = counter(
    "pulled_events",
    "Events pulled from a channel's event queue, per channel and outcome (stored, duplicate).",
    ["channel", "outcome"],
)


def pull_dedupe_key(connection_id: uuid.UUID) -> str:
    return f"webhooks.pull:{connection_id}"


def pulls_events(registry: ChannelRegistry, channel: str, http: httpx.AsyncClient) -> bool:
    """Whether the channel's adapters implement :class:`EventQueue` (asked of an adapter built with no credentials:
    building one does no I/O)."""
    if channel not in registry:
        return False
    probe = ConnectionInfo(uuid.uuid4(), uuid.uuid4(), None, {}, {})
    try:
        return isinstance(registry.get(channel).adapter(probe, http), EventQueue)
    except Exception:  # a plugin that cannot build an adapter from nothing simply has no queue to pull
        return False


async def request_pulls(session: AsyncSession, registry: ChannelRegistry, http: httpx.AsyncClient) -> int:
    """Queue one pull per active shop whose channel pulls events; how many were queued now."""
    queued = 0
    known: dict[str, bool] = {}
    for connection_id, organization_id, channel in await OrderRepository(session).active_connections():
        if channel not in known:
            known[channel] = pulls_events(registry, channel, http)
        if not known[channel]:
            continue
        job = await enqueue(
            session,
            PULL_KIND,
            {"connection_id": str(connection_id)},
            dedupe_key=pull_dedupe_key(connection_id),
            organization_id=organization_id,
        )
        queued += job is not None
    return queued


@dataclass
class PullReport:
    outcome: str = "done"  # done | inactive | unsupported | no_channel
    pulls: int = 0
    stored: int = 0
    duplicates: int = 0
    acked: int = 0
    ack_expired: int = 0


class EventPuller:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        channels: ChannelRegistry,
        http: httpx.AsyncClient,
        owner: str,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.channels = channels
        self.http = http
        self.owner = owner
        self.batch = settings.event_queue_pull_batch

    async def pull(self, connection_id: uuid.UUID) -> PullReport:
        report = PullReport()
        async with transaction(self.sessionmaker) as session:
            connection = await OrderRepository(session).connection(connection_id)
        if connection is None or connection.status is not ConnectionStatus.active:
            report.outcome = "inactive"
            return report
        if connection.channel not in self.channels:
            report.outcome = "no_channel"
            return report
        try:
            shop = ShopClient(
                self.sessionmaker,
                self.settings,
                connection,
                channels=self.channels,
                http=self.http,
                owner=self.owner,
            )
            if not isinstance(shop.adapter, EventQueue):
                report.outcome = "unsupported"
                return report
            for _ in range(MAX_PULLS):
                pulled = await shop.call(lambda adapter: cast(EventQueue, adapter).pull_events(self.batch))
                report.pulls += 1
                if pulled.events:
                    await self._store(connection.id, connection.organization_id, connection.channel, pulled, report)
                if pulled.ack_token is not None:
                    # Only now, with the batch committed: an ack lost here brings the batch again, stored once.
                    await self._ack(shop, pulled.ack_token, len(pulled.events), report)
                if len(pulled.events) < self.batch:
                    break
        except AuthExpired as exc:
            message = f"The shop's authorisation has expired; connect it again. ({exc.message})"
            async with transaction(self.sessionmaker) as session:
                await OrderRepository(session).mark_auth_expired(connection.id, connection.credentials_version, message)
            log.warning("event_pull_auth_expired", connection_id=str(connection.id), error=exc.message)
            raise RetryLater(message, retry_after=self.settings.event_queue_pull_seconds) from exc
        except RateLimited as exc:
            message = f"The marketplace asked us to slow down. ({exc.message})"
            raise RetryLater(message, retry_after=exc.retry_after) from exc
        except Retryable as exc:
            raise RetryLater(f"The marketplace did not answer; trying again later. ({exc.message})") from exc
        except ChannelError as exc:
            raise PermanentJobError(f"The marketplace refused to give its events: {exc.message}") from exc
        return report

    async def _store(
        self,
        connection_id: uuid.UUID,
        organization_id: uuid.UUID,
        channel: str,
        pulled: PulledEvents,
        report: PullReport,
    ) -> None:
        stored = duplicates = 0
        async with transaction(self.sessionmaker) as session:
            inbox = InboxService(InboxRepository(session))
            for event in pulled.events:
                body = (
                    pulled.bodies.get(event.external_id)
                    or json.dumps(dict(event.data), ensure_ascii=False, default=str).encode()
                )
                push = VerifiedPush(
                    connection_id=connection_id,
                    organization_id=organization_id,
                    channel=channel,
                    event=event,
                    headers={"content-type": "application/json"},
                    body=body,
                )
                if await inbox.receive(push) is None:
                    duplicates += 1
                else:
                    stored += 1
        report.stored += stored
        report.duplicates += duplicates
        PULLED.labels(channel=channel, outcome="stored").inc(stored)
        PULLED.labels(channel=channel, outcome="duplicate").inc(duplicates)

    async def _ack(self, shop: ShopClient, token: str, count: int, report: PullReport) -> None:
        try:
            await shop.call(lambda adapter: cast(EventQueue, adapter).ack_events(token))
        except ChannelNotFound:
            # Too late: the platform put the batch back in the queue; the next pull brings it and it is stored once.
            report.ack_expired += count
            log.info("event_ack_expired", connection_id=str(shop.connection.id), events=count)
            return
        report.acked += count
