"""Draining one shop's webhook inbox: pushes are hints, the orders are re-fetched and ingested.

The webhook endpoint stores each verified push as an :class:`~agrimarket.models.InboundEvent` and, for a new row,
enqueues ``orders.drain_inbox`` for the shop (:func:`request_drain`). The drain reads the shop's unhandled events
oldest first, ``batch_size`` at a time; for each batch it re-fetches every order the order events name with **one**
``get_orders`` call (the adapter splits it into the platform's own batch size), outside any transaction, then
ingests what came back ``chunk_size`` events at a time, each chunk in a short write transaction of its own that
also marks its events handled (so pushes are stored in between). It loops until the inbox is empty, or its turn ends.

A drain takes turns with the worker's other jobs: every ``SLICE_SECONDS`` with events still coming it looks whether
other jobs are due and waiting for a slot, and if so ends after its current batch and queues the shop's next drain
behind them (:func:`drain_next_turn`). A worker runs a few jobs at once (``worker_concurrency``); under a flash sale
on as many shops, drains that looped until their inboxes were empty held every slot, and the sync runs that tell
the other marketplaces the new stock waited for the burst to end (bench.orders, SQLite: one stock push per shop in
the whole sustained phase). Where slots are free (more workers), nothing waits and the drain goes on.

One drain per shop at a time (:func:`hold_drain`): a drain job holds the key ``orders.inbox.running:<shop>`` on
its own job row while it runs (unique, like every ``dedupe_key``), so a second drain of the same shop never reads
the events the first is handling. The second, finding the key taken, queues a follow-up due
``FOLLOW_UP_SECONDS`` later and ends: nothing is lost, as the follow-up drains whatever the first did not see
(an event stored after its last read), and it costs no attempt of the job's own. The key goes with the job's end
(done, dead, or claimed again after its worker died), or when the drain fails and waits for a retry.

- An order the marketplace says does not exist: its events are handled, with ``last_error`` saying so; nothing else
  changes.
- The marketplace down or throttling (:class:`Retryable`, :class:`RateLimited`) or the shop's authorisation gone:
  the batch's order events stay unhandled (``attempts`` + 1, ``last_error`` set) and the job is retried later
  (:class:`~agrimarket.worker.RetryLater`, with the platform's ``Retry-After`` when it gave one).
- ``stock`` events: the shop's listings are marked dirty, so our absolute quantities are pushed again. ``listing``,
  ``auth`` and ``other`` events are handled with nothing more to do for now.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.base import ChannelOrder, EventKind
from agrimarket.channels.errors import (
    AuthExpired,
    ChannelError,
    ChannelNotFound,
    InvalidSignature,
    MalformedEvent,
    RateLimited,
    Rejected,
    Retryable,
)
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.channels.shop import ShopClient, callback_url
from agrimarket.config import Settings
from agrimarket.db import read_sessionmaker, transaction
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService
from agrimarket.models import ChannelConnection, utcnow
from agrimarket.observability import get_logger
from agrimarket.orders.repository import OrderRepository, PendingEvent
from agrimarket.orders.service import OrderService
from agrimarket.worker import RetryLater, enqueue, enqueue_last, enqueue_many, per_connection_jobs
from agrimarket.worker.repository import JobRepository

log = get_logger(__name__)

DRAIN_KIND = "orders.drain_inbox"
BATCH_SIZE = 200
CHUNK_SIZE = 25  # events ingested per write transaction: short, so a push waits little for the writer (SQLite)
FOLLOW_UP_SECONDS = 0.2
SLICE_SECONDS = 0.5  # how often a drain with more to read looks whether other jobs wait (see the docstring)


def drain_dedupe_key(connection_id: uuid.UUID) -> str:
    return f"orders.inbox:{connection_id}"


def drain_running_key(connection_id: uuid.UUID) -> str:
    return f"orders.inbox.running:{connection_id}"


async def hold_drain(
    sessionmaker: async_sessionmaker[AsyncSession],
    connection_id: uuid.UUID,
    *,
    job_id: uuid.UUID,
    worker_id: str,
    attempt: int,
) -> bool:
    """Take the shop's drain key on this running job's row; False when another drain of the shop holds it."""
    try:
        async with transaction(sessionmaker) as session:
            return await JobRepository(session).hold_key(job_id, worker_id, attempt, drain_running_key(connection_id))
    except IntegrityError:
        return False


async def let_go_drain(
    sessionmaker: async_sessionmaker[AsyncSession], connection_id: uuid.UUID, job_id: uuid.UUID
) -> None:
    async with transaction(sessionmaker) as session:
        await JobRepository(session).let_go_key(job_id, drain_running_key(connection_id))


async def follow_up_drain(
    sessionmaker: async_sessionmaker[AsyncSession], connection_id: uuid.UUID, organization_id: uuid.UUID | None
) -> None:
    """The shop's inbox is being drained by another job: look again shortly (folds into a drain already queued)."""
    async with transaction(sessionmaker) as session:
        await enqueue(
            session,
            DRAIN_KIND,
            {"connection_id": str(connection_id)},
            dedupe_key=drain_dedupe_key(connection_id),
            dedupe_while_running=False,
            organization_id=organization_id,
            run_at=utcnow() + timedelta(seconds=FOLLOW_UP_SECONDS),
        )


async def drain_next_turn(
    sessionmaker: async_sessionmaker[AsyncSession],
    connection_id: uuid.UUID,
    organization_id: uuid.UUID | None,
    job_id: uuid.UUID,
) -> None:
    """A drain that ends its turn with other jobs waiting for a slot: let go of the shop's key and queue the shop's
    next drain behind the jobs due now (a sync run among them)."""
    async with transaction(sessionmaker) as session:
        await JobRepository(session).let_go_key(job_id, drain_running_key(connection_id))
        [job] = per_connection_jobs(DRAIN_KIND, {connection_id: organization_id}, dedupe_key=drain_dedupe_key)
        await enqueue_last(session, job)


async def request_drain(session: AsyncSession, connection_id: uuid.UUID, organization_id: uuid.UUID) -> None:
    """Make sure a drain of the shop's inbox is queued (in the caller's transaction, with the new event). Pushes
    arriving before it starts fold into it; one arriving while it runs queues the next."""
    await request_drains(session, {connection_id: organization_id})


async def request_drains(session: AsyncSession, shops: Mapping[uuid.UUID, uuid.UUID]) -> None:
    """:func:`request_drain` for several shops (``connection id → organization id``), in one statement."""
    await enqueue_many(session, per_connection_jobs(DRAIN_KIND, shops, dedupe_key=drain_dedupe_key))


@dataclass
class DrainReport:
    events: int = 0
    batches: int = 0
    remote_calls: int = 0
    orders_ingested: int = 0
    orders_missing: int = 0
    unreadable: int = 0
    handed_on: bool = False  # its turn ended with other jobs waiting: the shop's next drain is to be queued


class InboxDrainer:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        channels: ChannelRegistry,
        http: httpx.AsyncClient,
        owner: str,
        batch_size: int = BATCH_SIZE,
        chunk_size: int = CHUNK_SIZE,
        slice_seconds: float | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.channels = channels
        self.http = http
        self.owner = owner
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.slice_seconds = SLICE_SECONDS if slice_seconds is None else slice_seconds

    async def drain(self, connection_id: uuid.UUID) -> DrainReport:
        """Handle the shop's unhandled events a batch at a time until none is left, or until a slice is used up
        while other jobs wait (``report.handed_on``: the caller queues the shop's next drain)."""
        started = time.monotonic()
        report = DrainReport()
        # What the drain reads alone (the shop, the next events: this drain is the only one handling them) it
        # reads beside the writer; each batch's writes are committed before the next read.
        reading = read_sessionmaker(self.sessionmaker)
        async with transaction(reading) as session:
            connection = await OrderRepository(session).connection(connection_id)
        if connection is None:
            return report  # disconnected and deleted: its events no longer name it
        try:
            shop = ShopClient(
                self.sessionmaker,
                self.settings,
                connection,
                channels=self.channels,
                http=self.http,
                owner=self.owner,
            )
        except AuthExpired as exc:
            await self._hold_all(connection_id, _auth_message(exc))
            raise RetryLater(_auth_message(exc)) from exc
        while True:
            async with transaction(reading) as session:
                events = await OrderRepository(session).unhandled_events(connection_id, self.batch_size)
            if not events:
                return report
            report.batches += 1
            report.events += len(events)
            await self._batch(shop, connection, events, report)
            if time.monotonic() - started >= self.slice_seconds:
                if await self._others_waiting(reading, connection_id):
                    report.handed_on = True
                    return report
                started = time.monotonic()

    async def _batch(
        self, shop: ShopClient, connection: ChannelConnection, events: Sequence[PendingEvent], report: DrainReport
    ) -> None:
        url = callback_url(self.settings, connection) or ""
        order_ids_of: dict[uuid.UUID, list[str]] = {}
        unreadable: dict[str, list[uuid.UUID]] = defaultdict(list)
        plain: list[uuid.UUID] = []
        stock_changed = False
        kept: dict[uuid.UUID, tuple[dict[str, str], bytes]] = {}
        to_read_again = [e.id for e in events if e.event_type == EventKind.order.value and e.order_ids is None]
        if to_read_again:  # rare: rows kept before the endpoint read the order numbers at receipt
            async with transaction(read_sessionmaker(self.sessionmaker)) as session:
                kept = await OrderRepository(session).event_bodies(to_read_again)
        for event in events:
            if event.event_type != EventKind.order.value:
                plain.append(event.id)
                stock_changed = stock_changed or event.event_type == EventKind.stock.value
                continue
            ids = event.order_ids
            if ids is None:
                # Read at receipt by the webhook endpoint; a row stored without them is read again, which only
                # works where its signature was kept with it.
                headers, body = kept.get(event.id, ({}, b""))
                try:
                    parsed = shop.adapter.parse_webhook(url=url, headers=httpx.Headers(headers), body=body)
                except (InvalidSignature, MalformedEvent) as exc:
                    unreadable[_unreadable_message(exc)].append(event.id)
                    continue
                ids = [str(i) for i in parsed.order_ids]
            if not ids:
                unreadable["The push names no order, so there was nothing to fetch."].append(event.id)
                continue
            order_ids_of[event.id] = [str(i) for i in ids]
        report.unreadable += sum(len(ids) for ids in unreadable.values())
        wanted = list(dict.fromkeys(i for ids in order_ids_of.values() for i in ids))
        try:
            fetched = await self._fetch(shop, wanted, report)
        except ChannelError as exc:
            message, retry_after = _failure(exc)
            async with transaction(self.sessionmaker) as session:
                repo = OrderRepository(session)
                await self._settle_plain(session, connection, plain, unreadable, stock_changed)
                await repo.note_failure(list(order_ids_of), message)
            log.warning("inbox_fetch_failed", connection_id=str(connection.id), error=message)
            raise RetryLater(message, retry_after=retry_after) from exc
        missing_word = shop.plugin.capabilities.display_name
        by_event = list(order_ids_of.items())
        if plain or unreadable:
            # Its own transaction: marking a whole shop's listings dirty and an ingest's variants' listings in one
            # would lock two sets of listings one after the other, not in one id order.
            async with transaction(self.sessionmaker) as session:
                await self._settle_plain(session, connection, plain, unreadable, stock_changed)
        # Short write transactions: a chunk of events with their orders each, so pushes (and every other writer)
        # get the write lock in between. An event is handled in the transaction that ingests its orders.
        for start in range(0, len(by_event), self.chunk_size):
            chunk = by_event[start : start + self.chunk_size]
            # SQLite's writer runs inline: a chunk's statements never give the event loop back, so a drain of
            # many chunks would hold it throughout. Requests waiting (a push's answer) go between two chunks.
            await asyncio.sleep(0)
            async with transaction(self.sessionmaker) as session:
                repo = OrderRepository(session)
                names = list(dict.fromkeys(i for _event, ids in chunk for i in ids))
                if names:
                    service = OrderService(repo, InventoryService(InventoryRepository(session)))
                    results = await service.ingest_many(connection, [fetched[i] for i in names if i in fetched])
                    report.orders_ingested += len(results)
                now = utcnow()
                found_ok: list[uuid.UUID] = []
                by_error: dict[str, list[uuid.UUID]] = defaultdict(list)
                for event_id, ids in chunk:
                    missing = [i for i in ids if i not in fetched]
                    if missing:
                        report.orders_missing += len(missing)
                        by_error[_missing_message(missing_word, missing)].append(event_id)
                    else:
                        found_ok.append(event_id)
                await repo.mark_handled(found_ok, now)
                for message, event_ids in by_error.items():
                    await repo.mark_handled(event_ids, now, message)

    async def _fetch(self, shop: ShopClient, wanted: list[str], report: DrainReport) -> dict[str, ChannelOrder]:
        """One ``get_orders`` for the batch. Should the platform refuse the whole request (one malformed id spoils
        it), each id is asked alone, so the others still go through and the refused one is reported."""
        if not wanted:
            return {}
        try:
            report.remote_calls += 1
            orders = await shop.call(lambda adapter: adapter.get_orders(wanted))
        except (Rejected, ChannelNotFound):
            if len(wanted) == 1:
                return {}
            orders = []
            for one in wanted:
                try:
                    report.remote_calls += 1
                    orders.extend(await shop.call(lambda adapter, i=one: adapter.get_orders([i])))  # type: ignore[misc]
                except (Rejected, ChannelNotFound):
                    continue
        asked = set(wanted)
        return {order.external_id: order for order in orders if order.external_id in asked}

    async def _settle_plain(
        self,
        session: AsyncSession,
        connection: ChannelConnection,
        plain: list[uuid.UUID],
        unreadable: dict[str, list[uuid.UUID]],
        stock_changed: bool,
    ) -> None:
        repo = OrderRepository(session)
        now = utcnow()
        await repo.mark_handled(plain, now)
        for message, ids in unreadable.items():
            await repo.mark_handled(ids, now, message)
        if stock_changed:
            await repo.mark_shop_listings_dirty(connection)

    async def _others_waiting(self, reading: async_sessionmaker[AsyncSession], connection_id: uuid.UUID) -> bool:
        async with transaction(reading) as session:
            return await JobRepository(session).others_due(utcnow(), besides=drain_dedupe_key(connection_id))

    async def _hold_all(self, connection_id: uuid.UUID, message: str) -> None:
        async with transaction(self.sessionmaker) as session:
            repo = OrderRepository(session)
            events = await repo.unhandled_events(connection_id, self.batch_size)
            await repo.note_failure([e.id for e in events], message)


def _unreadable_message(exc: ChannelError) -> str:
    return (
        "The push's order number was not kept with it and the push cannot be read again "
        f"({exc.message}); the next reconciliation of the shop's orders will catch the order."
    )


def _auth_message(exc: ChannelError) -> str:
    return f"The marketplace no longer accepts the shop's authorisation: connect the shop again. ({exc.message})"


def _failure(exc: ChannelError) -> tuple[str, float | None]:
    if isinstance(exc, RateLimited):
        return f"The marketplace asked us to slow down; trying again later. ({exc.message})", exc.retry_after
    if isinstance(exc, Retryable):
        return f"The marketplace did not answer; trying again later. ({exc.message})", None
    if isinstance(exc, AuthExpired):
        return _auth_message(exc), None
    return f"The marketplace refused to give the orders: {exc.message}", None


def _missing_message(channel: str, missing: list[str]) -> str:
    if len(missing) == 1:
        return f"{channel} says order {missing[0]} does not exist, so nothing was changed."
    return f"{channel} says orders {', '.join(missing)} do not exist, so nothing was changed."
