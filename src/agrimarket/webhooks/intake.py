"""Pushes in, by group commit: the pushes that arrive together are verified and kept in one transaction.

A push costs little to check (an HMAC) and a few bytes to keep, but a transaction of its own costs a round of
statements and, on SQLite, a turn at the one writer connection. Marketplaces push in bursts (a flash sale), so the
pushes waiting at one moment are taken together: the first to find the intake free leads, begins a write
transaction, and once the write connection is its (on SQLite it may wait for a drain's transaction to end) takes
every push waiting by then (up to ``max_batch``), reads their shops, verifies each push with its shop's adapter,
keeps the good ones (one insert, a drain queued once per shop) and commits; then every push of the batch gets its
answer. Pushes arriving meanwhile wait for the next batch, which the next of them leads. While other pushes' bodies
are still being read (:meth:`PushIntake.expecting`), the leader waits for them, ``LINGER_SECONDS`` at most, so they
share its commit (PostgreSQL's ``commit_delay``, taken only with ``commit_siblings`` active, makes the same trade); a
push alone is a batch of one, taken at once: no timer, no waiting for company.

Its transaction goes ahead of the worker's in the queue for SQLite's one writer connection
(:func:`agrimarket.db.urgent_writes`). Nothing is acknowledged before its commit: a push is answered 200 only once
its row is kept, and a transaction that fails fails every push of its batch (each answered 500, to be sent again
by its marketplace); refusals (unknown shop, bad signature, unreadable body) are decided per push and store
nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.base import ChannelAdapter, ChannelPlugin
from agrimarket.config import Settings
from agrimarket.db import transaction, urgent_writes
from agrimarket.errors import AgriMarketError
from agrimarket.observability import histogram
from agrimarket.webhooks.repository import InboxRepository, PushTarget
from agrimarket.webhooks.service import InboxService, VerifiedPush, push_adapter, read_push, receivable

MAX_BATCH = 200
# How long a leader holding the write connection waits for pushes already being read (their bodies on the way) to
# join its batch: a commit shared by more, at the price of this much latency at most (PostgreSQL's commit_delay,
# taken only when commit_siblings are active, is the same trade).
LINGER_SECONDS = 0.002
PUSH_BATCHES = histogram(
    "webhook_push_batch_size",
    "Pushes per intake transaction (group commit): how many shared one write, refusals included.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, MAX_BATCH),
)
ADAPTERS_KEPT = 256  # shops' verifying adapters remembered between batches (all forgotten when full)


@dataclass(frozen=True)
class RawPush:
    """A push as received: not yet verified."""

    channel: str
    connection_id: uuid.UUID
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Kept:
    push: VerifiedPush
    event_id: uuid.UUID | None  # None: a duplicate of an event already kept


@dataclass(eq=False)
class _Waiting:
    push: RawPush
    plugin: ChannelPlugin
    sessionmaker: async_sessionmaker[AsyncSession]
    future: asyncio.Future[Kept] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _retrieved(future: asyncio.Future[Kept]) -> None:
    # A waiter that went away (its request cancelled) never reads its answer; asyncio must not warn about it.
    if not future.cancelled():
        future.exception()


class PushIntake:
    """One per app: the pushes waiting to be kept, and the lock the batch leader holds."""

    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient,
        *,
        max_batch: int = MAX_BATCH,
        linger_seconds: float = LINGER_SECONDS,
    ) -> None:
        self.settings = settings
        self.http = http
        self.max_batch = max_batch
        self.linger_seconds = linger_seconds
        self._waiting: list[_Waiting] = []
        self._expected = 0  # pushes whose bodies are being read, to be submitted next
        self._news: asyncio.Future[None] | None = None  # a leader lingering for them
        self._lock = asyncio.Lock()
        self._adapters: dict[tuple[int, PushTarget], tuple[ChannelPlugin, ChannelAdapter]] = {}
        self.batches = 0  # for tests and curiosity: transactions written

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Around reading a push's body: a leader about to take its batch may wait a moment for this one."""
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1
            self._tell()

    def _tell(self) -> None:
        if self._news is not None and not self._news.done():
            self._news.set_result(None)

    async def _linger(self) -> None:
        """Wait, ``linger_seconds`` at most, while pushes are being read that would join the batch."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.linger_seconds
        while self._expected and len(self._waiting) < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._news = loop.create_future()
            try:
                async with asyncio.timeout(remaining):
                    await self._news
            except TimeoutError:
                return
            finally:
                self._news = None

    @property
    def queued(self) -> int:
        """Pushes waiting for a batch to take them."""
        return len(self._waiting)

    def _adapter(self, target: PushTarget, plugin: ChannelPlugin) -> ChannelAdapter:
        """The shop's adapter to verify with, made again only when what it is made of changes (its credentials,
        as stored encrypted, its settings, or its plugin): making one decrypts the credentials and validates them,
        which cost more than the push's own check."""
        key = (id(plugin), target)
        known = self._adapters.get(key)
        if known is not None and known[0] is plugin:
            return known[1]
        adapter = push_adapter(target, plugin, settings=self.settings, http=self.http)
        if len(self._adapters) >= ADAPTERS_KEPT:
            self._adapters.clear()
        self._adapters[key] = (plugin, adapter)
        return adapter

    async def submit(
        self, push: RawPush, plugin: ChannelPlugin, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> Kept:
        """Verify and keep the push (with whatever else is waiting); raises the refusal (NotFound,
        InvalidPushSignature, MalformedPush) or the transaction's error."""
        waiting = _Waiting(push, plugin, sessionmaker)
        waiting.future.add_done_callback(_retrieved)
        self._waiting.append(waiting)
        self._tell()
        try:
            while not waiting.future.done():
                async with self._lock:
                    if waiting.future.done():
                        break
                    await self._write(sessionmaker)
        finally:
            if not waiting.future.done():  # cancelled while waiting its turn: take it out of the queue
                self._waiting = [w for w in self._waiting if w is not waiting]
        return waiting.future.result()

    def _take(self, sessionmaker: async_sessionmaker[AsyncSession]) -> list[_Waiting]:
        # One transaction per sessionmaker (tests swap an app's between requests; production has one).
        batch = [w for w in self._waiting if w.sessionmaker is sessionmaker][: self.max_batch]
        taken = {id(w) for w in batch}
        self._waiting = [w for w in self._waiting if id(w) not in taken]
        return batch

    async def _write(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        batch: list[_Waiting] = []
        kept: list[tuple[_Waiting, VerifiedPush]] = []
        try:
            with urgent_writes():  # the marketplace waits for the answer: ahead of the worker's transactions
                async with transaction(sessionmaker) as session:
                    # The batch is taken once the write connection is ours, not before: the pushes that arrived
                    # while the leader waited for it (SQLite's one writer, busy with a drain's transaction) go in
                    # this transaction too, instead of waiting for the next.
                    await session.connection()
                    await self._linger()
                    batch = self._take(sessionmaker)
                    repo = InboxRepository(session)
                    targets = await repo.push_targets({w.push.connection_id for w in batch})
                    for waiting in batch:
                        push = waiting.push
                        try:
                            target = receivable(targets.get(push.connection_id), push.channel)
                            adapter = self._adapter(target, waiting.plugin)
                            verified = read_push(
                                target, adapter, settings=self.settings, headers=push.headers, body=push.body
                            )
                        except AgriMarketError as refusal:  # this push's own: nothing of it is stored
                            waiting.future.set_exception(refusal)
                            continue
                        kept.append((waiting, verified))
                    event_ids = await InboxService(repo).receive_many([verified for _waiting, verified in kept])
            self.batches += 1
            PUSH_BATCHES.observe(len(batch))
        except Exception as exc:
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            raise
        except BaseException:
            # The leader's request was cancelled: the others go back to the head of the queue, and the next of them
            # leads (the leader takes itself out). Should the commit have happened after all, they are duplicates
            # the second time, and still answered 200.
            self._waiting[:0] = [w for w in batch if not w.future.done()]
            raise
        for (waiting, verified), event_id in zip(kept, event_ids, strict=True):
            waiting.future.set_result(Kept(verified, event_id))
