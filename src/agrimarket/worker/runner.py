"""The job runner: claims due jobs under a lease, runs up to N handlers at once, records each outcome.

Delivery is at least once: a worker that dies mid-job leaves a lease that expires, and another worker runs the
job again. Handlers are therefore idempotent. A running job's lease is renewed by a heartbeat; a worker that
cannot renew it (the job was taken over) stops the handler and leaves the job alone.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agrimarket.config import Settings
from agrimarket.db import make_sessionmaker, reader, transaction
from agrimarket.models import utcnow
from agrimarket.observability import get_logger
from agrimarket.worker import metrics
from agrimarket.worker.errors import PermanentJobError, RetryLater
from agrimarket.worker.queue import NOTIFY_CHANNEL, enqueue, waiters
from agrimarket.worker.registry import JobContext, Registry, Schedule, registry
from agrimarket.worker.repository import ClaimedJob, JobRepository

log = get_logger(__name__)

ERROR_LIMIT = 2000
# Fixed namespace for the ids of scheduled jobs: one id per (schedule, period), the same in every worker.
SCHEDULE_NAMESPACE = uuid.UUID("6f1d9a52-4c1e-4f7b-9a55-3b8f0c2d7e10")
Outcome = Literal["done", "retry", "dead", "released", "lost"]


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base × 2^(attempt−1))]."""
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(max(attempt - 1, 0), 60)))


def retry_delay(attempt: int, hint: float | None, *, base: float, cap: float, rng: random.Random) -> float:
    """The remote side's ``Retry-After`` when given (never sooner, plus a little spread so a crowd of jobs does
    not return in the same instant), else the backoff."""
    if hint is not None and math.isfinite(hint) and hint >= 0:
        return hint + rng.uniform(0.0, min(1.0, hint * 0.1))
    return backoff_delay(attempt, base=base, cap=cap, rng=rng)


def describe_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 1] + "…"


def new_worker_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class _Run:
    job: ClaimedJob
    lease_lost: bool = False


class Worker:
    """One job runner. ``async with Worker(engine, settings): ...`` runs it until the block ends, then shuts
    down gracefully: stop claiming, let running jobs finish within the shutdown timeout, give back the rest."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        *,
        registry: Registry = registry,
        worker_id: str | None = None,
        concurrency: int | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        listen: bool | None = None,
        wake_in_process: bool = True,
        scheduler: bool | None = None,
        metrics: bool = True,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.registry = registry
        self.worker_id = (worker_id or new_worker_id())[:100]
        self.concurrency = concurrency or settings.worker_concurrency
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.sessionmaker = make_sessionmaker(engine)
        self._read_sessionmaker = make_sessionmaker(reader(engine))
        is_postgres = engine.dialect.name == "postgresql"
        self._listen = (settings.worker_listen if listen is None else listen) and is_postgres
        self._wake_in_process = wake_in_process
        self._scheduler = settings.worker_scheduler if scheduler is None else scheduler
        self._metrics = metrics
        self._lease = timedelta(seconds=settings.worker_lease_seconds)
        self._wake = asyncio.Event()
        self.listening = asyncio.Event()  # set while the LISTEN connection is up (PostgreSQL)
        self._runs: dict[asyncio.Task[None], _Run] = {}
        self._main: asyncio.Task[None] | None = None
        self._helpers: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- life cycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._main is not None:
            raise RuntimeError("This worker is already started.")
        self._stopping = False
        busy_timeout = self.settings.sqlite_busy_timeout_ms / 1000
        if self.engine.dialect.name == "sqlite" and self._lease.total_seconds() <= busy_timeout:
            # A write may wait that long for SQLite's lock; a lease that runs out meanwhile means a second run.
            log.warning("worker_lease_within_busy_timeout", lease=self._lease.total_seconds(), busy=busy_timeout)
        if self._wake_in_process:
            waiters.add(self._wake)
        self._main = asyncio.create_task(self._claim_loop(), name=f"worker {self.worker_id}")
        if self._listen:
            self._helpers.append(asyncio.create_task(self._listen_loop(), name="worker listen"))
        if self._scheduler:
            retention = self.settings.job_retention_days * 86400
            for schedule in self.registry.schedules:
                if schedule.seconds >= retention:
                    # One job per period rests on the period's finished job still being there.
                    log.warning("schedule_longer_than_retention", schedule=schedule.name, seconds=schedule.seconds)
            self._helpers.append(asyncio.create_task(self._schedule_loop(), name="worker scheduler"))
        if self._metrics:
            self._helpers.append(asyncio.create_task(self._metrics_loop(), name="worker metrics"))
        log.info(
            "worker_started",
            worker_id=self.worker_id,
            concurrency=self.concurrency,
            kinds=self.registry.kinds,
            listen=self._listen,
            event_loop=type(asyncio.get_running_loop()).__module__.partition(".")[0],  # uvloop, or asyncio's own
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; wait up to ``grace`` seconds (default: the shutdown timeout setting) for running jobs;
        interrupt the rest and give them back to the queue."""
        if self._main is None:
            return
        self._stopping = True
        self._wake.set()
        waiters.discard(self._wake)
        try:
            await self._main
        finally:
            self._main = None
            for helper in self._helpers:
                helper.cancel()
            await asyncio.gather(*self._helpers, return_exceptions=True)
            self._helpers.clear()
            self.listening.clear()
        grace = self.settings.worker_shutdown_timeout_seconds if grace is None else grace
        running = list(self._runs)
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        log.info("worker_stopped", worker_id=self.worker_id, interrupted=len(running))

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def wake(self) -> None:
        self._wake.set()

    @property
    def running_jobs(self) -> int:
        return len(self._runs)

    @property
    def is_running(self) -> bool:
        return self._main is not None

    # -- claiming -----------------------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        poll = self.settings.worker_poll_interval_seconds
        while not self._stopping:
            # Cleared before looking, so a wake-up that arrives while we claim is not lost.
            self._wake.clear()
            free = self.concurrency - len(self._runs)
            try:
                claimed = await self._claim(free) if free > 0 else []
                for job in claimed:
                    self._spawn(job)
                timeout = poll if free <= 0 or len(claimed) == free else await self._until_next_due(poll)
            except Exception:
                log.exception("job_claim_failed", worker_id=self.worker_id)
                timeout = poll
            if self._stopping:
                break
            if timeout > 0:
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def _claim(self, limit: int) -> list[ClaimedJob]:
        kinds = self.registry.kinds
        if not kinds:
            return []
        async with transaction(self.sessionmaker) as session:
            now = await self._locked_now(session)
            return await JobRepository(session).claim(
                kinds=kinds, limit=limit, worker_id=self.worker_id, now=now, lease=self._lease
            )

    async def _locked_now(self, session: AsyncSession) -> datetime:
        """The time once the transaction has begun: on SQLite that is after ``BEGIN IMMEDIATE`` got the write lock,
        so a lease is not shortened by the wait for it."""
        await session.connection()
        return self.clock()

    async def _until_next_due(self, poll: float) -> float:
        async with transaction(self._read_sessionmaker) as session:
            next_due = await JobRepository(session).next_due(self.registry.kinds)
        if next_due is None:
            return poll
        # Due already but not ours (locked by another claimer this instant): look again very soon, not busily.
        return min(poll, max((next_due - self.clock()).total_seconds(), 0.02))

    def _spawn(self, job: ClaimedJob) -> None:
        run = _Run(job)
        task = asyncio.create_task(self._execute(run), name=f"job {job.kind} {job.id}")
        self._runs[task] = run

        def finished(done: asyncio.Task[None]) -> None:
            self._runs.pop(done, None)
            self._wake.set()  # a slot is free

        task.add_done_callback(finished)

    # -- running one job ----------------------------------------------------------------------------------------

    async def _execute(self, run: _Run) -> None:
        job = run.job
        this = asyncio.current_task()
        assert this is not None
        ctx = JobContext(
            job_id=job.id,
            kind=job.kind,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            organization_id=job.organization_id,
            worker_id=self.worker_id,
            settings=self.settings,
            sessionmaker=self.sessionmaker,
        )
        handler = self.registry.get(job.kind)
        heartbeat = asyncio.create_task(self._heartbeat(run, this), name=f"heartbeat {job.id}")
        started = time.monotonic()
        metrics.START_DELAY.labels(kind=job.kind).observe(max((self.clock() - job.run_at).total_seconds(), 0.0))
        log.debug("job_started", job_id=str(job.id), kind=job.kind, attempt=job.attempt)
        try:
            try:
                if handler is None:
                    raise PermanentJobError(f"No handler is registered for job kind {job.kind!r}.")
                await handler(ctx, dict(job.payload))
            finally:
                # Before the outcome is written, so a late beat cannot mistake our own outcome for a lost lease.
                heartbeat.cancel()
                metrics.DURATION.labels(kind=job.kind).observe(time.monotonic() - started)
        except asyncio.CancelledError:
            if run.lease_lost:
                this.uncancel()
                log.warning("job_lease_lost", job_id=str(job.id), kind=job.kind, worker_id=self.worker_id)
                metrics.PROCESSED.labels(kind=job.kind, outcome="lost").inc()
                return
            if self._stopping or this.cancelling() > 0:
                await self._record(job, "released", None)
                raise
            # A CancelledError the handler raised on its own account (not ours): an ordinary failure.
            await self._failed(job, asyncio.CancelledError("the handler was cancelled"), None)
        except PermanentJobError as exc:
            log.warning("job_dead", job_id=str(job.id), kind=job.kind, error=describe_error(exc))
            await self._record(job, "dead", describe_error(exc))
        except RetryLater as exc:
            await self._failed(job, exc, exc.retry_after)
        except Exception as exc:
            log.warning("job_failed", job_id=str(job.id), kind=job.kind, attempt=job.attempt, exc_info=True)
            await self._failed(job, exc, None)
        else:
            await self._record(job, "done", None)

    async def _failed(self, job: ClaimedJob, exc: BaseException, hint: float | None) -> None:
        error = describe_error(exc)
        if job.attempt >= job.max_attempts:
            log.warning("job_dead", job_id=str(job.id), kind=job.kind, attempts=job.attempt, error=error)
            await self._record(job, "dead", error)
            return
        delay = retry_delay(
            job.attempt,
            hint,
            base=self.settings.worker_backoff_base_seconds,
            cap=self.settings.worker_backoff_cap_seconds,
            rng=self.rng,
        )
        await self._record(job, "retry", error, run_at=self.clock() + timedelta(seconds=delay))

    async def _record(
        self, job: ClaimedJob, outcome: Outcome, error: str | None, *, run_at: datetime | None = None
    ) -> None:
        """Write the outcome, fenced by our lease. A few tries, since losing it means running the job again."""
        for attempt in range(3):
            try:
                async with transaction(self.sessionmaker) as session:
                    repo = JobRepository(session)
                    now = await self._locked_now(session)
                    if outcome == "done":
                        written = await repo.complete(job, self.worker_id, now)
                    elif outcome == "retry":
                        assert run_at is not None
                        assert error is not None
                        written = await repo.reschedule(job, self.worker_id, run_at, error)
                    elif outcome == "dead":
                        written = await repo.bury(job, self.worker_id, now, error or "dead")
                    else:
                        written = await repo.release(job, self.worker_id, now)
                break
            except Exception:
                log.warning("job_outcome_not_saved", job_id=str(job.id), try_=attempt + 1, exc_info=True)
                if attempt == 2:
                    return  # the lease will expire and another run will settle it
                await asyncio.sleep(0.2 * (attempt + 1))
        if not written:
            outcome = "lost"
            log.warning("job_lease_lost", job_id=str(job.id), kind=job.kind, worker_id=self.worker_id)
        metrics.PROCESSED.labels(kind=job.kind, outcome=outcome).inc()

    async def _heartbeat(self, run: _Run, target: asyncio.Task[None]) -> None:
        interval = max(self._lease.total_seconds() / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                async with transaction(self.sessionmaker) as session:
                    until = await self._locked_now(session) + self._lease
                    renewed = await JobRepository(session).renew_lease(run.job, self.worker_id, until)
            except Exception:
                log.warning("job_lease_not_renewed", job_id=str(run.job.id), exc_info=True)
                continue  # the lease still holds for a while; try again on the next beat
            if not renewed:
                run.lease_lost = True
                target.cancel()
                return

    # -- helpers: wake-up by NOTIFY, the scheduler, metrics ------------------------------------------------------

    async def _listen_loop(self) -> None:
        import psycopg
        from psycopg import sql

        dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
                    await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
                    self.listening.set()
                    self._wake.set()  # whatever was enqueued while we were not listening
                    delay = 0.5
                    while True:
                        async for _ in connection.notifies(timeout=30):
                            self._wake.set()
                        await connection.execute("SELECT 1")  # fails if the connection died quietly
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                log.warning("job_listen_failed", error=describe_error(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _schedule_loop(self) -> None:
        while True:
            now = self.clock()
            sleep_for = 60.0
            for schedule in self.registry.schedules:
                period = math.floor(now.timestamp() / schedule.seconds)
                try:
                    await self.schedule_period(schedule, period)
                except Exception:
                    log.exception("schedule_failed", schedule=schedule.name)
                sleep_for = min(sleep_for, (period + 1) * schedule.seconds - now.timestamp())
            await asyncio.sleep(max(sleep_for, 0.0) + 0.005)

    async def schedule_period(self, schedule: Schedule, period: int) -> uuid.UUID | None:
        """Enqueue the schedule's job for one period. The id is derived from (schedule, period), so however many
        workers try, the period gets one job, ever; the dedupe key skips it while the last one is unfinished."""
        async with transaction(self.sessionmaker) as session:
            return await enqueue(
                session,
                schedule.kind,
                schedule.payload(),
                job_id=uuid.uuid5(SCHEDULE_NAMESPACE, f"{schedule.name}:{period}"),
                dedupe_key=f"every:{schedule.name}"[:200],
                run_at=datetime.fromtimestamp(period * schedule.seconds, UTC),
            )

    async def _metrics_loop(self) -> None:
        while True:
            try:
                async with transaction(self._read_sessionmaker) as session:
                    now = self.clock()
                    stats = await JobRepository(session).stats(now)
                metrics.publish_stats(stats, now)
            except Exception:
                log.warning("job_metrics_failed", exc_info=True)
            await asyncio.sleep(self.settings.worker_metrics_interval_seconds)
