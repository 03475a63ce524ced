"""The runner's contract: transactional enqueue, dedupe, outcomes, backoff, leases, exclusivity, shutdown."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.models import Job, JobStatus, utcnow
from agrimarket.worker import (
    JobContext,
    NewJob,
    PermanentJobError,
    Registry,
    RetryLater,
    Worker,
    backoff_delay,
    enqueue,
    enqueue_many,
    retry_delay,
)
from agrimarket.worker.repository import JobRepository
from tests.worker.conftest import wait_for

Maker = async_sessionmaker[AsyncSession]


async def enqueue_committed(db: Maker, kind: str, payload: dict[str, Any] | None = None, **kw: Any) -> uuid.UUID:
    async with transaction(db) as session:
        job_id = await enqueue(session, kind, payload, **kw)
    assert job_id is not None
    return job_id


async def load(db: Maker, job_id: uuid.UUID) -> Job:
    async with transaction(db) as session:
        job = await session.get(Job, job_id)
    assert job is not None
    return job


async def jobs_of(db: Maker, kind: str) -> list[Job]:
    async with transaction(db) as session:
        return list((await session.execute(select(Job).where(Job.kind == kind))).scalars())


# -- enqueue ------------------------------------------------------------------------------------------------------


async def test_a_job_enqueued_in_a_rolled_back_transaction_never_runs(
    db: Maker, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    ran: list[dict[str, Any]] = []

    @registry.handler("test.ghost")
    async def ghost(_ctx: JobContext, payload: dict[str, Any]) -> None:
        ran.append(payload)

    async def a_change_that_fails() -> None:
        async with transaction(db) as session:
            await enqueue(session, "test.ghost", {"n": 1})
            raise RuntimeError("the change failed")

    async with make_worker():
        with pytest.raises(RuntimeError, match="the change failed"):
            await a_change_that_fails()
        await enqueue_committed(db, "test.ghost", {"n": 2})  # a committed one, to know the worker looked
        await wait_for(lambda: len(ran) >= 1, what="the committed job")
        await asyncio.sleep(0.2)
    assert ran == [{"n": 2}]
    assert len(await jobs_of(db, "test.ghost")) == 1


async def test_dedupe_key_allows_one_outstanding_job_and_frees_when_it_finishes(
    db: Maker, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    ran: list[int] = []

    @registry.handler("test.sync")
    async def sync(_ctx: JobContext, payload: dict[str, Any]) -> None:
        ran.append(payload["n"])

    first = await enqueue_committed(db, "test.sync", {"n": 1}, dedupe_key="sync:conn-1")
    async with transaction(db) as session:
        assert await enqueue(session, "test.sync", {"n": 2}, dedupe_key="sync:conn-1") is None
        assert await enqueue(session, "test.sync", {"n": 3}, dedupe_key="sync:conn-2") is not None
    assert len(await jobs_of(db, "test.sync")) == 2

    async with make_worker() as worker:
        await wait_for(lambda: len(ran) == 2, what="both jobs")
        await wait_for(lambda: worker.running_jobs == 0, what="their outcomes")
    assert sorted(ran) == [1, 3]
    done = await load(db, first)
    assert done.status is JobStatus.done
    assert done.dedupe_key is None
    assert done.finished_at is not None
    assert done.attempts == 1
    assert done.locked_by is None
    # Finished, so the key is free again.
    assert await enqueue_committed(db, "test.sync", {"n": 4}, dedupe_key="sync:conn-1") != first


async def test_enqueue_many_keeps_one_job_per_key_in_one_statement_and_answers_in_order(db: Maker) -> None:
    taken = await enqueue_committed(db, "test.sync", {"n": 0}, dedupe_key="sync:conn-1")
    async with transaction(db) as session:
        answers = await enqueue_many(
            session,
            [
                NewJob("test.sync", {"n": 1}, dedupe_key="sync:conn-1"),  # the key is taken: nothing
                NewJob("test.sync", {"n": 2}, dedupe_key="sync:conn-2"),
                NewJob("test.sync", {"n": 3}, dedupe_key="sync:conn-2"),  # taken by the row before it
                NewJob("test.other", {"n": 4}),
            ],
        )
    assert answers[0] is None
    assert answers[1] is not None
    assert answers[2] is None
    assert answers[3] is not None
    payloads = sorted(job.payload["n"] for job in [*await jobs_of(db, "test.sync"), *await jobs_of(db, "test.other")])
    assert payloads == [0, 2, 4]
    assert (await load(db, taken)).payload == {"n": 0}


async def test_a_fixed_job_id_enqueues_at_most_once_ever(db: Maker) -> None:
    job_id = uuid.uuid4()
    assert await enqueue_committed(db, "test.once", job_id=job_id) == job_id
    async with transaction(db) as session:
        await session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.done))
        assert await enqueue(session, "test.once", job_id=job_id) is None


async def test_enqueue_flushes_pending_objects_and_never_commits(db: Maker) -> None:
    async with db() as session:
        job_id = await enqueue(session, "test.uncommitted")
        assert job_id is not None
        assert (await session.get(Job, job_id)) is not None
        await session.rollback()
    async with transaction(db) as session:
        assert await session.get(Job, job_id) is None


# -- outcomes -----------------------------------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    rng = random.Random(7)
    for attempt in range(1, 30):
        ceiling = min(60.0, 0.5 * 2 ** (attempt - 1))
        delays = [backoff_delay(attempt, base=0.5, cap=60.0, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range, not clustered at the top
    assert backoff_delay(10_000, base=1, cap=30, rng=rng) <= 30  # no overflow on absurd attempt numbers
    assert 120 <= retry_delay(3, 120.0, base=1, cap=30, rng=rng) <= 121  # Retry-After wins over the cap
    assert retry_delay(3, None, base=1, cap=30, rng=rng) <= 4


async def test_failures_retry_with_backoff_then_succeed(
    db: Maker, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    attempts: list[int] = []

    @registry.handler("test.flaky")
    async def flaky(ctx: JobContext, _payload: dict[str, Any]) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"marketplace unreachable (try {ctx.attempt})")

    job_id = await enqueue_committed(db, "test.flaky", max_attempts=5)
    async with make_worker() as worker:
        await wait_for(lambda: len(attempts) == 3, what="third attempt")
        await wait_for(lambda: worker.running_jobs == 0, what="its outcome")
    assert attempts == [1, 2, 3]
    done = await load(db, job_id)
    assert done.status is JobStatus.done
    assert done.attempts == 3
    assert done.last_error == "ConnectionError: marketplace unreachable (try 2)"  # kept, for the record


class _Extreme(random.Random):
    """Jitter pinned to one end of its range, to check the bounds exactly."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


@pytest.mark.parametrize("top", [True, False], ids=["top", "bottom"])
async def test_a_failure_sets_run_at_within_the_backoff_range(
    db: Maker, registry: Registry, make_worker: Callable[..., Worker], worker_settings: Settings, top: bool
) -> None:
    calls: list[int] = []

    @registry.handler("test.failing")
    async def failing(ctx: JobContext, _payload: dict[str, Any]) -> None:
        calls.append(ctx.attempt)
        raise ConnectionError("timeout")

    slow = worker_settings.model_copy(update={"worker_backoff_base_seconds": 10.0, "worker_backoff_cap_seconds": 60.0})
    job_id = await enqueue_committed(db, "test.failing", max_attempts=4)
    async with transaction(db) as session:  # as if this were its third attempt: ceiling 10 × 2² = 40 s
        await session.execute(update(Job).where(Job.id == job_id).values(attempts=2))
    async with make_worker(settings=slow, rng=_Extreme(top)) as worker:
        await wait_for(lambda: bool(calls), what="the attempt")
        failed_at = utcnow()
        await wait_for(lambda: worker.running_jobs == 0, what="the outcome")
        if not top:
            await wait_for(lambda: len(calls) == 2, what="the immediate retry")
    job = await load(db, job_id)
    if top:
        assert calls == [3]
        assert 39.5 <= (job.run_at - failed_at).total_seconds() <= 40.5
    else:
        assert calls == [3, 4]  # full jitter's lower end: due at once (then dead: 4 of 4)
        assert job.status is JobStatus.dead


async def test_retry_after_hint_sets_run_at_no_sooner_than_asked(
    db: Maker, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    calls: list[int] = []

    @registry.handler("test.rate_limited")
    async def rate_limited(ctx: JobContext, _payload: dict[str, Any]) -> None:
        calls.append(ctx.attempt)
        raise RetryLater("HTTP 429 from the marketplace", retry_after=30)

    job_id = await enqueue_committed(db, "test.rate_limited")
    async with make_worker() as worker:
        await wait_for(lambda: len(calls) == 1, what="the attempt")
        failed_at = utcnow()
        await wait_for(lambda: worker.running_jobs == 0, what="the outcome")
    job = await load(db, job_id)
    assert calls == [1]  # not retried within the backoff cap (0.2 s): the hint won
    assert job.status is JobStatus.queued
    wait = (job.run_at - failed_at).total_seconds()
    assert 29.5 <= wait <= 33.5, wait
    assert job.last_error == "RetryLater: HTTP 429 from the marketplace"


async def test_dead_after_max_attempts_and_permanent_errors_at_once(
    db: Maker, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    calls: Counter[str] = Counter()

    @registry.handler("test.broken")
    async def broken(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        calls["broken"] += 1
        raise ValueError("x" * 5000)

    @registry.handler("test.rejected")
    async def rejected(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        calls["rejected"] += 1
        raise PermanentJobError("Lazada rejected the listing: category is required")

    broken_id = await enqueue_committed(db, "test.broken", max_attempts=3, dedupe_key="broken")
    rejected_id = await enqueue_committed(db, "test.rejected", max_attempts=5)
    async with make_worker() as worker:
        await wait_for(lambda: calls["broken"] == 3 and calls["rejected"] == 1, what="all attempts")
        await wait_for(lambda: worker.running_jobs == 0, what="outcomes")
        await asyncio.sleep(0.5)  # nothing more happens to a dead job
    assert calls == {"broken": 3, "rejected": 1}
    dead = await load(db, broken_id)
    assert dead.status is JobStatus.dead
    assert dead.attempts == 3
    assert dead.dedupe_key is None
    assert dead.finished_at is not None
    assert dead.last_error is not None
    assert len(dead.last_error) == 2000
    assert dead.last_error.startswith("ValueError: xxx")
    permanent = await load(db, rejected_id)
    assert permanent.status is JobStatus.dead
    assert permanent.attempts == 1
    assert permanent.last_error == "PermanentJobError: Lazada rejected the listing: category is required"


# -- leases -------------------------------------------------------------------------------------------------------


async def test_a_job_whose_worker_vanished_is_taken_up_after_its_lease_expires(
    db: Maker, registry: Registry, make_worker: Callable[..., Worker], worker_settings: Settings
) -> None:
    """The claim without an outcome is what a killed worker leaves behind (see test_kill for a real SIGKILL)."""
    ran: list[tuple[str, int]] = []

    @registry.handler("test.orphan")
    async def orphan(ctx: JobContext, _payload: dict[str, Any]) -> None:
        ran.append((ctx.worker_id, ctx.attempt))

    job_id = await enqueue_committed(db, "test.orphan")
    async with transaction(db) as session:
        (claimed,) = await JobRepository(session).claim(
            kinds=["test.orphan"],
            limit=5,
            worker_id="vanished",
            now=utcnow(),
            lease=timedelta(seconds=worker_settings.worker_lease_seconds),
        )
    assert claimed.id == job_id
    claimed_at = asyncio.get_running_loop().time()
    async with make_worker(worker_id="rescuer"):
        await wait_for(lambda: bool(ran), within=10, what="the rescue")
        waited = asyncio.get_running_loop().time() - claimed_at
    assert ran == [("rescuer", 2)]
    assert waited >= worker_settings.worker_lease_seconds - 0.1  # not before the lease ran out
    job = await load(db, job_id)
    assert job.status is JobStatus.done
    assert job.attempts == 2


async def test_an_expired_lease_on_the_last_attempt_makes_the_job_dead(
    db: Maker, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    @registry.handler("test.crasher")
    async def crasher(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        raise AssertionError("must not run a fourth time")

    job_id = await enqueue_committed(db, "test.crasher", max_attempts=3)
    async with transaction(db) as session:
        await session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=JobStatus.running, attempts=3, locked_by="oom-killed", lease_expires_at=utcnow())
        )
    async with make_worker():
        await asyncio.sleep(0.3)
    job = await load(db, job_id)
    assert job.status is JobStatus.dead
    assert job.last_error is not None
    assert "lease expired" in job.last_error


async def test_heartbeats_keep_a_long_job_to_its_worker(
    db: Maker, registry: Registry, make_worker: Callable[..., Worker], engine_b: Any
) -> None:
    starts: list[str] = []
    finished = asyncio.Event()

    @registry.handler("test.long")
    async def long(ctx: JobContext, _payload: dict[str, Any]) -> None:
        starts.append(ctx.worker_id)
        await asyncio.sleep(4.0)  # over 2½ leases
        finished.set()

    job_id = await enqueue_committed(db, "test.long")
    async with make_worker(worker_id="a"):
        await wait_for(lambda: bool(starts), what="the start")
        async with make_worker(worker_id="b", engine=engine_b):
            await asyncio.wait_for(finished.wait(), 10)
            await asyncio.sleep(0.3)
    assert starts == ["a"]
    job = await load(db, job_id)
    assert job.status is JobStatus.done
    assert job.attempts == 1


async def test_a_worker_that_lost_its_lease_stops_the_handler_and_leaves_the_job_alone(
    db: Maker, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    cancelled = asyncio.Event()
    started = asyncio.Event()

    @registry.handler("test.usurped")
    async def usurped(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = await enqueue_committed(db, "test.usurped")
    async with make_worker(worker_id="slow") as worker:
        await asyncio.wait_for(started.wait(), 5)
        async with transaction(db) as session:  # another worker took it over (our lease had expired)
            await session.execute(
                update(Job).where(Job.id == job_id).values(locked_by="other", attempts=Job.attempts + 1)
            )
        await asyncio.wait_for(cancelled.wait(), 5)  # the next heartbeat noticed
        await wait_for(lambda: worker.running_jobs == 0, what="the handler to end")
    job = await load(db, job_id)
    assert job.status is JobStatus.running
    assert job.locked_by == "other"
    assert job.attempts == 2


# -- concurrency --------------------------------------------------------------------------------------------------


async def test_two_workers_never_run_the_same_job(
    db: Maker, registry: Registry, make_worker: Callable[..., Worker], engine_b: Any, worker_settings: Settings
) -> None:
    runs: Counter[int] = Counter()
    by_worker: Counter[str] = Counter()
    in_flight: set[int] = set()
    overlaps: list[int] = []

    @registry.handler("test.many")
    async def many(ctx: JobContext, payload: dict[str, Any]) -> None:
        n = payload["n"]
        if n in in_flight:
            overlaps.append(n)
        in_flight.add(n)
        await asyncio.sleep(0.002)
        runs[n] += 1
        by_worker[ctx.worker_id] += 1
        in_flight.discard(n)

    total = 300
    async with transaction(db) as session:
        for n in range(total):
            await enqueue(session, "test.many", {"n": n})
    # A production-like lease: longer than SQLite's busy timeout, so no write can outwait it and every run here
    # ends in its own outcome (the short test lease would expire under this much write contention on SQLite).
    settings = worker_settings.model_copy(update={"worker_lease_seconds": 30.0})
    started = time.monotonic()
    async with (
        make_worker(worker_id="one", concurrency=8, settings=settings),
        make_worker(worker_id="two", engine=engine_b, concurrency=8, settings=settings),
    ):
        await wait_for(lambda: sum(runs.values()) >= total, within=60, what="every job")
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.3)
    assert overlaps == []
    assert runs == dict.fromkeys(range(total), 1)
    assert by_worker["one"] > 0
    assert by_worker["two"] > 0
    assert {job.status for job in await jobs_of(db, "test.many")} == {JobStatus.done}
    print(f"\n{total} jobs, two workers: {elapsed:.2f} s; {dict(by_worker)}")  # noqa: T201 - shown with -s


# -- shutdown -----------------------------------------------------------------------------------------------------


async def test_graceful_shutdown_waits_then_gives_back_what_did_not_finish(
    db: Maker, registry: Registry, make_worker: Callable[..., Worker]
) -> None:
    started: list[str] = []

    @registry.handler("test.quick")
    async def quick(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        started.append("quick")
        await asyncio.sleep(0.2)

    @registry.handler("test.stuck")
    async def stuck(_ctx: JobContext, _payload: dict[str, Any]) -> None:
        started.append("stuck")
        await asyncio.sleep(60)

    quick_id = await enqueue_committed(db, "test.quick")
    stuck_id = await enqueue_committed(db, "test.stuck")
    worker = make_worker()
    await worker.start()
    await wait_for(lambda: len(started) == 2, what="both jobs to start")
    await worker.stop(grace=0.6)
    finished = await load(db, quick_id)
    assert finished.status is JobStatus.done
    released = await load(db, stuck_id)
    assert released.status is JobStatus.queued
    assert released.attempts == 0  # the interrupted run does not count
    assert released.locked_by is None
    assert released.lease_expires_at is None
    assert released.run_at <= utcnow()
