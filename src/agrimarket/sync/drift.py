"""Drift repair: read back the stock a channel shows for our live listings and push ours again where it differs.

A channel's stock can move without us: a seller edits it in the platform's own back office, a campaign holds some,
a push of ours was lost on the way. Pushes are absolute, so the repair is to make the listing dirty again.

``sync.drift`` (every ``sync_drift_check_seconds``) queues one ``sync.check_drift`` per active shop with live
listings. The check runs **under the shop's sync lease**, so it never reads while a push is in flight (a push and a
read at once would see a half-applied batch) and so its reads share the shop's rate limit with the pushes: the
engine's GCRA limiter, its state taken from and saved back to ``channel_connections.rate_next_at``. It asks the
adapter (:class:`~agrimarket.channels.base.StockReader`) one item at a time, one request per item on every platform
so far, each waiting its turn; then, fenced by the lease, records for each listing whose shown stock differs from
``pushed_state["stock"]`` what the channel shows and bumps ``desired_version``. The engine's planner then sees our
quantity differ from the channel's and pushes it. Each repair counts in ``agrimarket_sync_drift_repairs_total``.

Which way it drifted matters. A channel showing **more** than we pushed can sell what we do not have: repaired at
once. A channel showing **less** is most often a sale we have not recorded yet (its push lost or still on the way),
and pushing our higher quantity back would offer that unit again: so the first time, the check only notes the low
value in ``pushed_state["drift_low"]`` and queues an order poll for the shop (which records the sale, and the sale
marks the listing dirty anyway); only if the next check still sees the same low value is it repaired.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.base import StockReader, StockRef
from agrimarket.channels.errors import AuthExpired, ChannelError, RateLimited, Retryable
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.channels.shop import adapter_for
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.kit.crypto import CredentialCipher
from agrimarket.models import ChannelConnection, ConnectionStatus, Listing, utcnow
from agrimarket.observability import counter, get_logger
from agrimarket.sync.engine import LeaseLost
from agrimarket.sync.queue import request_sync
from agrimarket.sync.ratelimit import Gcra
from agrimarket.sync.repository import SyncRepository
from agrimarket.worker import RetryLater, enqueue

log = get_logger(__name__)

DRIFT_ALL_KIND = "sync.drift"
DRIFT_KIND = "sync.check_drift"

REPAIRS = counter(
    "sync_drift_repairs",
    "Listings whose stock on the channel differed from what we pushed, made dirty to push ours again, per channel.",
    ["channel"],
)


def drift_dedupe_key(connection_id: uuid.UUID) -> str:
    return f"sync.drift:{connection_id}"


async def request_drift_checks(session: AsyncSession) -> int:
    """One check per active shop with live listings (one already queued or running absorbs it)."""
    queued = 0
    for connection_id, organization_id in await SyncRepository(session).active_connections():
        job = await enqueue(
            session,
            DRIFT_KIND,
            {"connection_id": str(connection_id)},
            dedupe_key=drift_dedupe_key(connection_id),
            organization_id=organization_id,
        )
        queued += job is not None
    return queued


@dataclass
class DriftReport:
    connection_id: uuid.UUID
    outcome: str = "done"  # done | inactive | unsupported | no_channel | lease_lost
    checked: int = 0  # listings compared
    repaired: int = 0  # listings made dirty
    missing: int = 0  # listings the channel no longer shows (left to the next push, which publishes them again)
    suspected: int = 0  # listings showing less than we pushed: probably a sale not recorded yet; orders polled
    calls: int = 0


class DriftChecker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        channels: ChannelRegistry,
        http: httpx.AsyncClient,
        owner: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.channels = channels
        self.http = http
        self.owner = owner[:100]
        self.clock = clock
        self.lease = timedelta(seconds=settings.sync_lease_seconds)
        self._renewed = 0.0

    async def check(self, connection_id: uuid.UUID) -> DriftReport:
        report = DriftReport(connection_id)
        now = self.clock()
        async with transaction(self.sessionmaker) as session:
            connection = await SyncRepository(session).acquire_lease(connection_id, self.owner, now, now + self.lease)
        if connection is None:
            # A push is in flight: check after it, when the channel shows what it was sent.
            message = "The shop is being pushed to; checking its stock after."
            raise RetryLater(message, retry_after=self.lease.total_seconds())
        self._renewed = time.monotonic()
        limiter: Gcra | None = None
        released: dict[str, Any] = {}
        try:
            if connection.status is not ConnectionStatus.active:
                report.outcome = "inactive"
                return report
            if connection.channel not in self.channels:
                report.outcome = "no_channel"
                return report
            plugin = self.channels.get(connection.channel)
            cipher = CredentialCipher(self.settings.encryption_keys)
            adapter = adapter_for(connection, plugin, cipher, self.http, self.settings)
            if not isinstance(adapter, StockReader):
                report.outcome = "unsupported"
                return report
            limiter = Gcra(plugin.capabilities.rate_limit, connection.rate_next_at)
            drifted = await self._compare(connection, adapter, limiter, report)
            if drifted:
                await self._repair(connection, drifted, limiter, report)
            log.info(
                "stock_drift_checked",
                connection_id=str(connection_id),
                channel=connection.channel,
                checked=report.checked,
                repaired=report.repaired,
                suspected=report.suspected,
                missing=report.missing,
                calls=report.calls,
            )
            return report
        except LeaseLost:
            report.outcome = "lease_lost"
            log.warning("drift_lease_lost", connection_id=str(connection_id), owner=self.owner)
            return report
        except RateLimited as exc:
            if limiter is not None and exc.retry_after is not None:
                limiter.hold_until(time.time() + exc.retry_after)
            message = f"The marketplace asked us to slow down. ({exc.message})"
            raise RetryLater(message, retry_after=exc.retry_after) from exc
        except AuthExpired as exc:
            # Tokens are mended by the order poll and the sync engine, which refresh under this same lease.
            raise RetryLater(f"The shop's token was refused; checking later. ({exc.message})", retry_after=60) from exc
        except (Retryable, ChannelError) as exc:
            raise RetryLater(f"The marketplace did not answer the stock check. ({exc.message})") from exc
        finally:
            if report.outcome != "lease_lost":
                if limiter is not None:
                    released["rate_next_at"] = limiter.next_at
                await self._release(connection, released)

    async def _compare(
        self, connection: ChannelConnection, reader: StockReader, limiter: Gcra, report: DriftReport
    ) -> list[tuple[Listing, int]]:
        async with transaction(self.sessionmaker) as session:
            rows = await SyncRepository(session).live_listings(connection.id)
        by_item: dict[str, list[Listing]] = defaultdict(list)
        for row in rows:
            if (row.pushed_state or {}).get("stock") is not None:
                by_item[str(row.external_item_id)].append(row)
        drifted: list[tuple[Listing, int]] = []
        suspected: list[tuple[Listing, int]] = []
        for item_id, item_rows in by_item.items():
            await self._keep_lease(connection, limiter)
            refs: list[StockRef] = [(item_id, str(row.external_sku_id)) for row in item_rows]
            await limiter.acquire()
            report.calls += 1
            shown = await reader.read_stock(refs)
            for row, ref in zip(item_rows, refs, strict=True):
                report.checked += 1
                quantity = shown.get(ref)
                pushed = int((row.pushed_state or {})["stock"])  # rows without it were left out above
                if quantity is None:
                    report.missing += 1
                elif quantity > pushed or (quantity < pushed and (row.pushed_state or {}).get("drift_low") == quantity):
                    drifted.append((row, quantity))
                elif quantity < pushed:
                    suspected.append((row, quantity))
        if suspected:
            await self._suspect_sales(connection, suspected, report)
        return drifted

    async def _suspect_sales(
        self, connection: ChannelConnection, suspected: list[tuple[Listing, int]], report: DriftReport
    ) -> None:
        """Less on the channel than we pushed: probably a sale not recorded yet. Note it and poll the orders first;
        the next check repairs it if the poll explained nothing."""
        from agrimarket.orders.reconcile import POLL_KIND, poll_dedupe_key  # the order pipeline imports the sync side

        async with transaction(self.sessionmaker) as session:
            repo = SyncRepository(session)
            for listing, shown in suspected:
                report.suspected += await repo.note_low_stock(listing, shown)
            await enqueue(
                session,
                POLL_KIND,
                {"connection_id": str(connection.id)},
                dedupe_key=poll_dedupe_key(connection.id),
                organization_id=connection.organization_id,
            )
        log.info("stock_drift_low_polling_orders", connection_id=str(connection.id), listings=len(suspected))

    async def _repair(
        self, connection: ChannelConnection, drifted: list[tuple[Listing, int]], limiter: Gcra, report: DriftReport
    ) -> None:
        async with transaction(self.sessionmaker) as session:
            repo = SyncRepository(session)
            now = self.clock()
            if not await repo.renew_lease(connection.id, self.owner, now, now + self.lease, limiter.next_at):
                raise LeaseLost
            for listing, shown in drifted:
                if await repo.repair_drift(listing, shown):
                    report.repaired += 1
                    log.info(
                        "stock_drift_repaired",
                        connection_id=str(connection.id),
                        listing_id=str(listing.id),
                        pushed=(listing.pushed_state or {}).get("stock"),
                        shown=shown,
                    )
        REPAIRS.labels(channel=connection.channel).inc(report.repaired)

    async def _keep_lease(self, connection: ChannelConnection, limiter: Gcra) -> None:
        if time.monotonic() - self._renewed < self.lease.total_seconds() / 3:
            return
        async with transaction(self.sessionmaker) as session:
            now = self.clock()
            if not await SyncRepository(session).renew_lease(
                connection.id, self.owner, now, now + self.lease, limiter.next_at
            ):
                raise LeaseLost
        self._renewed = time.monotonic()

    async def _release(self, connection: ChannelConnection, values: dict[str, Any]) -> None:
        async with transaction(self.sessionmaker) as session:
            repo = SyncRepository(session)
            await repo.release_lease(connection.id, self.owner, **values)
            # Pushes that found the shop busy while we held it, and the repairs: the engine takes them now.
            if connection.status is ConnectionStatus.active and await repo.has_dirty(connection.id):
                await request_sync(session, {connection.id: connection.organization_id})
