"""Asking for a push: one queued sync job per connection, enqueued in the transaction that made listings dirty."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.worker import NewJob, enqueue, enqueue_many

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
    await enqueue_many(
        session,
        [
            NewJob(
                SYNC_KIND,
                {"connection_id": str(connection_id)},
                dedupe_key=sync_dedupe_key(connection_id),
                dedupe_while_running=False,
                organization_id=organization_id,
                max_attempts=SYNC_MAX_ATTEMPTS,
                run_at=run_at,
            )
            for connection_id, organization_id in sorted(connections.items())  # one order: keys locked in it
        ],
    )


async def sync_after_lease(
    session: AsyncSession, connection_id: uuid.UUID, organization_id: uuid.UUID, at: datetime
) -> None:
    """A shop found busy: its holder looks for new work when it lets go, unless it died first. This job, due
    when the holder's lease lapses, covers that case. Its own key, so it never holds back the ordinary job a live
    holder queues on its way out."""
    await enqueue(
        session,
        SYNC_KIND,
        {"connection_id": str(connection_id)},
        dedupe_key=f"sync-after-lease:{connection_id}",
        dedupe_while_running=False,
        organization_id=organization_id,
        max_attempts=SYNC_MAX_ATTEMPTS,
        run_at=at,
    )


def review_check_key(connection_id: uuid.UUID) -> str:
    return f"sync-review:{connection_id}"


async def request_review_check(
    session: AsyncSession, connection_id: uuid.UUID, organization_id: uuid.UUID, at: datetime
) -> None:
    """A shop with listings the platform is still reviewing (Tiki): a run at ``at`` asks how the reviews went. Its
    own key, at most one queued per shop, so an ordinary run never folds it away (nor waits for it)."""
    await enqueue(
        session,
        SYNC_KIND,
        {"connection_id": str(connection_id)},
        dedupe_key=review_check_key(connection_id),
        dedupe_while_running=False,
        organization_id=organization_id,
        max_attempts=SYNC_MAX_ATTEMPTS,
        run_at=at,
    )
