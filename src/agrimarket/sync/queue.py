"""Asking for a push: one queued sync job per connection, enqueued in the transaction that made listings dirty."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.worker import enqueue_many, per_connection_jobs

SYNC_KIND = "sync.connection"
SYNC_MAX_ATTEMPTS = 12


def sync_dedupe_key(connection_id: uuid.UUID) -> str:
    return f"sync:{connection_id}"


async def request_sync(
    session: AsyncSession, connections: Mapping[uuid.UUID, uuid.UUID], *, run_at: datetime | None = None
) -> None:
    """Make sure a sync job is queued for each connection (``connection id → organization id``).

    Ten changes before the job starts fold into that one job: it reads the latest state when it runs. The key
    is let go when the job starts, so a change made during a push queues the next run, which pushes it.
    ``run_at``: not before then (a shop whose circuit is open).
    """
    jobs = per_connection_jobs(
        SYNC_KIND, connections, dedupe_key=sync_dedupe_key, max_attempts=SYNC_MAX_ATTEMPTS, run_at=run_at
    )
    await enqueue_many(session, jobs)


async def sync_after_lease(
    session: AsyncSession, connection_id: uuid.UUID, organization_id: uuid.UUID, at: datetime
) -> None:
    """A shop found busy: its holder looks for new work when it lets go, unless it died first. This job, due
    when the holder's lease lapses, covers that case. Its own key, so it never holds back the ordinary job a live
    holder queues on its way out."""
    await _one_sync(session, connection_id, organization_id, at, lambda shop: f"sync-after-lease:{shop}")


def review_check_key(connection_id: uuid.UUID) -> str:
    return f"sync-review:{connection_id}"


async def request_review_check(
    session: AsyncSession, connection_id: uuid.UUID, organization_id: uuid.UUID, at: datetime
) -> None:
    """A shop with listings the platform is still reviewing (Tiki): a run at ``at`` asks how the reviews went. Its
    own key, at most one queued per shop, so an ordinary run never folds it away (nor waits for it)."""
    await _one_sync(session, connection_id, organization_id, at, review_check_key)


async def _one_sync(
    session: AsyncSession,
    connection_id: uuid.UUID,
    organization_id: uuid.UUID,
    at: datetime,
    key: Callable[[uuid.UUID], str],
) -> None:
    jobs = per_connection_jobs(
        SYNC_KIND, {connection_id: organization_id}, dedupe_key=key, max_attempts=SYNC_MAX_ATTEMPTS, run_at=at
    )
    await enqueue_many(session, jobs)
