"""Order reconciliation: poll each shop's orders to catch what its webhooks missed, and fetch the pushes a
platform kept because it could not deliver them (architecture §3, flow 3).

- ``orders.reconcile`` (every ``orders_poll_seconds``) queues one ``orders.poll`` per active shop whose channel
  declares :attr:`~agrimarket.channels.base.Feature.order_polling`, deduplicated per shop.
- ``orders.poll`` reads the window ``[cursor − overlap, now)`` (a shop's first poll: ``now − first lookback``):
  every page of ``list_orders``, then ``get_orders`` a batch at a time, each batch ingested in its own short write
  transaction (no call to the marketplace inside one). Ingest is idempotent, so an order seen by a webhook and again
  by a poll, or twice through the overlap, counts once. Only when the whole window went through does the cursor
  move to the window's end, by compare-and-set (:meth:`OrderRepository.advance_orders_cursor`).
- ``orders.lost_pushes``: a platform's list of undelivered pushes belongs to the app, not to a shop (Shopee's
  ``get_lost_push_message``), so several shops' polls would race on one list and its confirmation. Each poll of such
  a shop queues this job with a dedupe key per app (:attr:`LostPushSource.lost_push_key`), so at most one is queued
  or running per app. It stores each push in the inbox of the shop it names (insert-or-nothing, exactly as the
  webhook endpoint does, with a drain queued for a new row), and confirms the page only after it is stored. Even two
  runs at once (a worker presumed dead) lose nothing: each confirms only what it stored.

Failures: the marketplace down or throttling → :class:`RetryLater` (its ``Retry-After`` honoured), nothing
advanced; authorisation gone for good → the connection is marked ``auth_expired`` (as the sync engine does) and the
job retries after a full period, when it finds the shop inactive and stops.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.base import ChannelOrder, Feature, LostPush, LostPushSource, OrderRef
from agrimarket.channels.errors import AuthExpired, ChannelError, RateLimited, Retryable
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.channels.shop import ShopClient
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService
from agrimarket.models import ChannelConnection, ConnectionStatus, utcnow
from agrimarket.observability import counter, get_logger
from agrimarket.orders.repository import OrderRepository
from agrimarket.orders.service import OrderService
from agrimarket.webhooks.repository import InboxRepository
from agrimarket.webhooks.service import InboxService, VerifiedPush
from agrimarket.worker import PermanentJobError, RetryLater, enqueue

log = get_logger(__name__)

RECONCILE_KIND = "orders.reconcile"
POLL_KIND = "orders.poll"
LOST_PUSHES_KIND = "orders.lost_pushes"
BATCH_SIZE = 200  # orders per get_orders call and per write transaction
MAX_LOST_PUSH_PAGES = 50  # a run stops after this many pages; the next poll queues the rest

POLLS = counter(
    "order_polls",
    "Order polls of one shop, per channel and outcome (done, retry, auth_expired, failed, inactive).",
    ["channel", "outcome"],
)
POLLED_ORDERS = counter("polled_orders", "Orders read back by order polls, per channel.", ["channel"])
LOST_PUSHES = counter(
    "lost_pushes",
    "Pushes a platform kept undelivered and reconciliation fetched, per channel and outcome (stored, duplicate, "
    "no_shop).",
    ["channel", "outcome"],
)


def poll_dedupe_key(connection_id: uuid.UUID) -> str:
    return f"orders.poll:{connection_id}"


def lost_pushes_dedupe_key(key: str) -> str:
    return f"orders.lost_pushes:{key}"[:200]


async def request_polls(session: AsyncSession, channels: ChannelRegistry) -> int:
    """Queue one poll per active shop whose channel can list orders (one already queued or running absorbs it).
    How many were queued now."""
    queued = 0
    for connection_id, organization_id, channel in await OrderRepository(session).active_connections():
        if channel not in channels or not channels.get(channel).capabilities.supports(Feature.order_polling):
            continue
        job = await enqueue(
            session,
            POLL_KIND,
            {"connection_id": str(connection_id)},
            dedupe_key=poll_dedupe_key(connection_id),
            organization_id=organization_id,
        )
        queued += job is not None
    return queued


@dataclass
class PollReport:
    outcome: str = "done"  # done | inactive | unsupported | no_channel
    since: datetime | None = None
    until: datetime | None = None
    pages: int = 0
    remote_calls: int = 0
    orders_seen: int = 0
    orders_ingested: int = 0
    advanced: bool = False


@dataclass
class LostPushReport:
    pages: int = 0
    stored: int = 0
    duplicates: int = 0
    no_shop: int = 0
    confirmed: str | None = None


class _Base:
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

    async def _active(self, connection_id: uuid.UUID) -> ChannelConnection | None:
        async with transaction(self.sessionmaker) as session:
            connection = await OrderRepository(session).connection(connection_id)
        if connection is None or connection.status is not ConnectionStatus.active:
            return None
        return connection

    def _shop(self, connection: ChannelConnection) -> ShopClient:
        return ShopClient(
            self.sessionmaker, self.settings, connection, channels=self.channels, http=self.http, owner=self.owner
        )

    async def _auth_expired(self, connection: ChannelConnection, exc: AuthExpired) -> RetryLater:
        message = f"The shop's authorisation has expired; connect it again. ({exc.message})"
        async with transaction(self.sessionmaker) as session:
            await OrderRepository(session).mark_auth_expired(connection.id, connection.credentials_version, message)
        log.warning("order_poll_auth_expired", connection_id=str(connection.id), error=exc.message)
        return RetryLater(message, retry_after=self.settings.orders_poll_seconds)


def _retry(exc: ChannelError) -> RetryLater:
    if isinstance(exc, RateLimited):
        return RetryLater(f"The marketplace asked us to slow down. ({exc.message})", retry_after=exc.retry_after)
    return RetryLater(f"The marketplace did not answer; trying again later. ({exc.message})")


class OrderPoller(_Base):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        channels: ChannelRegistry,
        http: httpx.AsyncClient,
        owner: str,
        batch_size: int = BATCH_SIZE,
        now: datetime | None = None,
    ) -> None:
        super().__init__(sessionmaker, settings, channels=channels, http=http, owner=owner)
        self.batch_size = batch_size
        self.now = now  # tests fix the window's end

    def window(self, cursor: datetime | None, now: datetime) -> tuple[datetime, datetime]:
        if cursor is None:
            return now - timedelta(hours=self.settings.orders_poll_first_lookback_hours), now
        since = cursor - timedelta(seconds=self.settings.orders_poll_overlap_seconds)
        return min(since, now), now

    async def poll(self, connection_id: uuid.UUID) -> PollReport:
        report = PollReport()
        connection = await self._active(connection_id)
        if connection is None:
            report.outcome = "inactive"
            return report
        if connection.channel not in self.channels:
            report.outcome = "no_channel"
            return report
        if not self.channels.get(connection.channel).capabilities.supports(Feature.order_polling):
            report.outcome = "unsupported"
            return report
        try:
            shop = self._shop(connection)
        except AuthExpired as exc:
            POLLS.labels(channel=connection.channel, outcome="auth_expired").inc()
            raise await self._auth_expired(connection, exc) from exc
        seen = connection.orders_cursor
        report.since, report.until = since, until = self.window(seen, self.now or utcnow())
        try:
            if isinstance(shop.adapter, LostPushSource):
                await self._request_lost_pushes(connection, shop.adapter)
            refs = await self._list(shop, since, until, report)
            ids = list(dict.fromkeys(ref.external_id for ref in refs))
            report.orders_seen = len(ids)
            for start in range(0, len(ids), self.batch_size):
                batch = ids[start : start + self.batch_size]
                report.remote_calls += 1
                orders = await shop.call(lambda adapter, batch=batch: adapter.get_orders(batch))  # type: ignore[misc]
                await self._ingest(shop.connection, orders, report)
        except AuthExpired as exc:
            POLLS.labels(channel=connection.channel, outcome="auth_expired").inc()
            raise await self._auth_expired(shop.connection, exc) from exc
        except (Retryable, RateLimited) as exc:
            POLLS.labels(channel=connection.channel, outcome="retry").inc()
            log.warning("order_poll_failed", connection_id=str(connection.id), error=exc.message)
            raise _retry(exc) from exc
        except ChannelError as exc:
            POLLS.labels(channel=connection.channel, outcome="failed").inc()
            raise PermanentJobError(f"The marketplace refused to list the shop's orders: {exc.message}") from exc
        async with transaction(self.sessionmaker) as session:
            report.advanced = await OrderRepository(session).advance_orders_cursor(
                connection.id, since=since, until=until, first=seen is None
            )
        POLLS.labels(channel=connection.channel, outcome="done").inc()
        POLLED_ORDERS.labels(channel=connection.channel).inc(report.orders_seen)
        return report

    async def _list(self, shop: ShopClient, since: datetime, until: datetime, report: PollReport) -> list[OrderRef]:
        refs: list[OrderRef] = []
        cursor: str | None = None
        while True:
            report.pages += 1
            report.remote_calls += 1
            page = await shop.call(
                lambda adapter, cursor=cursor: adapter.list_orders(since=since, until=until, cursor=cursor)  # type: ignore[misc]
            )
            refs.extend(page.orders)
            if page.next_cursor is None or page.next_cursor == cursor:
                return refs
            cursor = page.next_cursor

    async def _ingest(self, connection: ChannelConnection, orders: Sequence[ChannelOrder], report: PollReport) -> None:
        if not orders:
            return
        async with transaction(self.sessionmaker) as session:
            service = OrderService(OrderRepository(session), InventoryService(InventoryRepository(session)))
            results = await service.ingest_many(connection, list(orders))
        report.orders_ingested += len(results)

    async def _request_lost_pushes(self, connection: ChannelConnection, source: LostPushSource) -> None:
        async with transaction(self.sessionmaker) as session:
            await enqueue(
                session,
                LOST_PUSHES_KIND,
                {"connection_id": str(connection.id)},
                dedupe_key=lost_pushes_dedupe_key(source.lost_push_key),
            )


class LostPushCollector(_Base):
    """Fetch an app's lost pushes with one of its shops' credentials, store each in its own shop's inbox, confirm."""

    async def collect(self, connection_id: uuid.UUID) -> LostPushReport:
        report = LostPushReport()
        connection = await self._active(connection_id)
        if connection is None or connection.channel not in self.channels:
            return report
        try:
            shop = self._shop(connection)
            if not isinstance(shop.adapter, LostPushSource):
                return report
            for _ in range(MAX_LOST_PUSH_PAGES):
                batch = await shop.call(lambda adapter: cast(LostPushSource, adapter).lost_pushes())
                report.pages += 1
                if batch.events:
                    await self._store(connection.channel, batch.events, report)
                last = batch.last_message_id
                if last is None:
                    break
                await shop.call(lambda adapter, last=last: cast(LostPushSource, adapter).confirm_lost_pushes(last))  # type: ignore[misc]
                report.confirmed = last
                if not batch.more:
                    break
        except AuthExpired as exc:
            raise await self._auth_expired(connection, exc) from exc
        except (Retryable, RateLimited) as exc:
            raise _retry(exc) from exc
        except ChannelError as exc:
            raise PermanentJobError(f"The marketplace refused to list its lost pushes: {exc.message}") from exc
        return report

    async def _store(self, channel: str, pushes: Sequence[LostPush], report: LostPushReport) -> None:
        outcomes: Counter[str] = Counter()
        async with transaction(self.sessionmaker) as session:
            shops = await OrderRepository(session).connections_by_shop(
                channel, [push.shop_id for push in pushes if push.shop_id is not None]
            )
            inbox = InboxService(InboxRepository(session))
            for push in pushes:
                target = shops.get(push.shop_id) if push.shop_id is not None else None
                if target is None:  # an app-level push, or a shop not connected here
                    outcomes["no_shop"] += 1
                    continue
                verified = VerifiedPush(
                    connection_id=target.id,
                    organization_id=target.organization_id,
                    channel=target.channel,
                    event=push.event,
                    headers={},
                    body=push.body,
                )
                outcomes["duplicate" if await inbox.receive(verified) is None else "stored"] += 1
        report.stored += outcomes["stored"]
        report.duplicates += outcomes["duplicate"]
        report.no_shop += outcomes["no_shop"]
        for outcome, count in outcomes.items():
            LOST_PUSHES.labels(channel=channel, outcome=outcome).inc(count)
