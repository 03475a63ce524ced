"""Durable background jobs: rows in the app database, enqueued in the transaction that causes them, run at least
once by workers that claim them under a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
SQLite), retried with backoff, dead after ``max_attempts`` and retryable by hand.

Write a handler in your package's ``tasks.py`` (imported by every worker)::

    from agrimarket.worker import JobContext, RetryLater, enqueue, every, handler

    @handler("orders.fetch")
    async def fetch_order(ctx: JobContext, payload: dict[str, Any]) -> None:
        async with ctx.transaction() as session:
            ...

    every(600, "orders.reconcile")  # once per 10 minutes, however many workers run

and enqueue in the same transaction as the change: ``await enqueue(session, "orders.fetch", {"id": ...})``.
"""

from agrimarket.worker.errors import PermanentJobError, RetryLater
from agrimarket.worker.queue import (
    DEFAULT_MAX_ATTEMPTS,
    NOTIFY_CHANNEL,
    NewJob,
    announce,
    enqueue,
    enqueue_last,
    enqueue_many,
    per_connection_jobs,
    wake_local_workers,
)
from agrimarket.worker.registry import (
    JobContext,
    JobHandler,
    Registry,
    Schedule,
    every,
    handler,
    load_task_modules,
    register,
    registry,
)
from agrimarket.worker.runner import Worker, backoff_delay, retry_delay

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "NOTIFY_CHANNEL",
    "JobContext",
    "JobHandler",
    "NewJob",
    "PermanentJobError",
    "Registry",
    "RetryLater",
    "Schedule",
    "Worker",
    "announce",
    "backoff_delay",
    "enqueue",
    "enqueue_last",
    "enqueue_many",
    "every",
    "handler",
    "load_task_modules",
    "per_connection_jobs",
    "register",
    "registry",
    "retry_delay",
    "wake_local_workers",
]
