"""Enqueue jobs inside the caller's transaction, and wake workers once that transaction commits.

Wake-up, two ways: in this process, a hook on SQLAlchemy's ``after_commit`` sets every running worker's event;
across processes on PostgreSQL, ``pg_notify`` sent in the same transaction (delivered only if it commits) reaches
the workers that LISTEN. Workers still poll now and then, in case a notification is lost.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from agrimarket.db import insert_or_nothing
from agrimarket.models import Job, JobStatus, utcnow

NOTIFY_CHANNEL = "agrimarket_jobs"
DEFAULT_MAX_ATTEMPTS = 10
_PENDING_WAKE = "agrimarket.jobs_enqueued"


@dataclass(frozen=True)
class NewJob:
    """One job for :func:`enqueue_many`; the fields mean what :func:`enqueue`'s arguments do."""

    kind: str
    payload: dict[str, Any] | None = None
    dedupe_key: str | None = None
    dedupe_while_running: bool = True
    run_at: datetime | None = None
    organization_id: uuid.UUID | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    job_id: uuid.UUID | None = None


def per_connection_jobs(
    kind: str,
    connections: Mapping[uuid.UUID, uuid.UUID | None],
    *,
    dedupe_key: Callable[[uuid.UUID], str],
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    run_at: datetime | None = None,
) -> list[NewJob]:
    """One ``kind`` job per shop (``connection id → organization id``), payload ``{"connection_id": …}``, keyed per
    shop while queued only (the job reads the latest state when it runs, so a change during a run queues the next),
    in connection id order: callers racing on the same keys take their locks in one order."""
    return [
        NewJob(
            kind,
            {"connection_id": str(connection_id)},
            dedupe_key=dedupe_key(connection_id),
            dedupe_while_running=False,
            organization_id=organization_id,
            max_attempts=max_attempts,
            run_at=run_at,
        )
        for connection_id, organization_id in sorted(connections.items())
    ]


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    dedupe_key: str | None = None,
    dedupe_while_running: bool = True,
    run_at: datetime | None = None,
    organization_id: uuid.UUID | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    job_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Add a job in the session's transaction (flushes, never commits). The job exists only if that commits.

    ``dedupe_key``: at most one queued-or-running job per key; while one is, this call does nothing and returns
    None. With ``dedupe_while_running=False`` the key holds only while the job is queued: once it starts, the
    next enqueue makes a new job (for work that reads the latest state when it runs, so a change made during a
    run must cause another). ``job_id``: a fixed id makes the enqueue happen at most once, ever. ``payload``
    holds JSON types only, ids rather than objects, and no secrets: the organization's admins can read it through
    the API.
    Returns the new job's id.
    """
    job = NewJob(kind, payload, dedupe_key, dedupe_while_running, run_at, organization_id, max_attempts, job_id)
    [inserted] = await enqueue_many(session, [job])
    return inserted


async def enqueue_last(session: AsyncSession, job: NewJob) -> None:
    """Queue ``job`` behind every job due now: a new one due now, or, where a queued job holds its key, that job due
    now if it was due sooner (workers take the oldest due first). For long work done in turns, so the other work
    waiting meanwhile gets its turn in between."""
    if await enqueue_many(session, [job]) != [None] or job.dedupe_key is None:
        return
    now = utcnow()
    await session.execute(
        update(Job)
        .where(Job.dedupe_key == job.dedupe_key, Job.status == JobStatus.queued, Job.run_at < now)
        .values(run_at=now)
        .execution_options(synchronize_session=False)
    )


async def enqueue_many(session: AsyncSession, jobs: Sequence[NewJob]) -> list[uuid.UUID | None]:
    """:func:`enqueue` for several jobs in one statement, in the order given (callers that may race on the same
    keys give them in one order, as every row lock is taken in it). Per job: its new id, or None where its key or
    id was taken."""
    for job in jobs:
        if job.run_at is not None and job.run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware")
        if job.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
    if not jobs:
        return []
    # Objects the jobs refer to (their organization) may still be pending in this session.
    await session.flush()
    now = utcnow()
    ids = [job.job_id or uuid.uuid4() for job in jobs]
    rows: list[dict[str, Any]] = [
        {
            "id": job_id,
            "kind": job.kind,
            "payload": job.payload or {},
            "status": JobStatus.queued,
            "organization_id": job.organization_id,
            "dedupe_key": job.dedupe_key,
            "dedupe_while_running": job.dedupe_while_running,
            "attempts": 0,
            "max_attempts": job.max_attempts,
            "run_at": job.run_at or now,
            "created_at": now,
        }
        for job, job_id in zip(jobs, ids, strict=True)
    ]
    # No conflict target: a taken id or a taken dedupe key both make a row insert-or-nothing.
    inserted = set(await insert_or_nothing(session, Job, rows, conflict=None, returning=Job.id))
    if inserted:
        await announce(session)
    return [job_id if job_id in inserted else None for job_id in ids]


async def announce(session: AsyncSession) -> None:
    """Wake workers when this session's transaction commits (new or retried jobs are ready)."""
    session.info[_PENDING_WAKE] = True
    if session.get_bind().dialect.name == "postgresql":
        # Transactional: delivered on commit, dropped on rollback; repeats within a transaction fold into one.
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


# -- the in-process wake-up ---------------------------------------------------------------------------------------


class _Waiters:
    """The asyncio events of the workers running in this process, each set on its own loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}

    def add(self, wake: asyncio.Event) -> None:
        with self._lock:
            self._events[wake] = asyncio.get_running_loop()

    def discard(self, wake: asyncio.Event) -> None:
        with self._lock:
            self._events.pop(wake, None)

    def wake_all(self) -> None:
        with self._lock:
            targets = list(self._events.items())
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for wake, loop in targets:
            if loop is running:
                wake.set()
            else:
                try:
                    loop.call_soon_threadsafe(wake.set)
                except RuntimeError:  # that loop is closed; its worker is gone
                    self.discard(wake)


waiters = _Waiters()


def wake_local_workers() -> None:
    """Wake this process's workers now (after a commit made without a session, e.g. raw SQL)."""
    waiters.wake_all()


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_PENDING_WAKE, False):
        waiters.wake_all()


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # Rolled back (or committed, after _after_commit above ran): forget the pending wake with the transaction.
    if transaction.parent is None:
        session.info.pop(_PENDING_WAKE, None)
