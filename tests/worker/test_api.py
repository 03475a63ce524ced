"""Dead jobs are visible and retryable by hand: through the API (own organizations only) and the CLI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.cli import build_parser
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.models import Job, JobStatus, utcnow
from agrimarket.worker import JobContext, Registry, Worker, enqueue
from tests.factories import Account, register
from tests.worker.conftest import wait_for

Maker = async_sessionmaker[AsyncSession]


async def a_job(db: Maker, kind: str, organization_id: str | None, status: JobStatus = JobStatus.dead) -> uuid.UUID:
    async with transaction(db) as session:
        job_id = await enqueue(
            session,
            kind,
            {"listing": "sầu riêng Ri6"},
            organization_id=uuid.UUID(organization_id) if organization_id else None,
            max_attempts=3,
        )
        assert job_id is not None
        if status is JobStatus.dead:
            await session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status=status, attempts=3, finished_at=utcnow(), last_error="HTTPError: 503 from Shopee")
            )
    return job_id


async def load(db: Maker, job_id: uuid.UUID) -> Job:
    async with transaction(db) as session:
        job = await session.get(Job, job_id)
    assert job is not None
    return job


async def member_of(client: httpx.AsyncClient, owner: Account) -> Account:
    member = await register(client, name="Hộ Xã Viên")
    response = await client.post(
        f"/api/v1/organizations/{owner.organization_id}/memberships",
        json={"phone": member.phone, "role": "member"},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    return member


async def test_people_see_only_the_jobs_of_organizations_they_run(
    db: Maker, committing_client: httpx.AsyncClient
) -> None:
    client = committing_client
    owner = await register(client)
    stranger = await register(client, name="Hộ Người Lạ")
    member = await member_of(client, owner)
    own_dead = await a_job(db, "sync.push", owner.organization_id)
    own_queued = await a_job(db, "sync.push", owner.organization_id, JobStatus.queued)
    foreign_dead = await a_job(db, "sync.push", stranger.organization_id)
    await a_job(db, "jobs.purge_done", None)  # the system's own: operators only

    response = await client.get("/api/v1/jobs", params={"status": "dead"}, headers=owner.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["id"] for item in body["items"]] == [str(own_dead)]
    assert body["items"][0]["last_error"] == "HTTPError: 503 from Shopee"
    assert body["items"][0]["payload"] == {"listing": "sầu riêng Ri6"}
    assert stranger.organization_id not in response.text

    everything = (await client.get("/api/v1/jobs", headers=owner.headers)).json()["items"]
    assert {item["id"] for item in everything} == {str(own_dead), str(own_queued)}
    first = (await client.get("/api/v1/jobs", params={"limit": 1}, headers=owner.headers)).json()
    assert len(first["items"]) == 1
    second = (
        await client.get("/api/v1/jobs", params={"limit": 1, "cursor": first["next_cursor"]}, headers=owner.headers)
    ).json()
    assert {first["items"][0]["id"], second["items"][0]["id"]} == {str(own_dead), str(own_queued)}
    assert second["next_cursor"] is None

    stranger_sees = (await client.get("/api/v1/jobs", headers=stranger.headers)).json()["items"]
    assert [item["id"] for item in stranger_sees] == [str(foreign_dead)]
    # A plain member does not run the organization: its jobs are not listed, and asking for them is refused.
    assert (await client.get("/api/v1/jobs", headers=member.headers)).json()["items"] == []
    refused = await client.get(
        "/api/v1/jobs", params={"organization_id": owner.organization_id}, headers=member.headers
    )
    assert refused.status_code == 403
    hidden = await client.get(
        "/api/v1/jobs", params={"organization_id": stranger.organization_id}, headers=owner.headers
    )
    assert hidden.status_code == 404
    assert (await client.get(f"/api/v1/jobs/{foreign_dead}", headers=owner.headers)).status_code == 404
    assert (await client.get(f"/api/v1/jobs/{own_dead}", headers=owner.headers)).json()["status"] == "dead"
    assert (await client.get("/api/v1/jobs")).status_code == 401


async def test_retrying_a_dead_job_through_the_api_runs_it(
    db: Maker,
    committing_client: httpx.AsyncClient,
    registry: Registry,
    make_worker: Callable[..., Worker],
) -> None:
    client = committing_client
    owner = await register(client)
    stranger = await register(client, name="Hộ Người Lạ")
    member = await member_of(client, owner)
    dead = await a_job(db, "test.api.push", owner.organization_id)
    foreign = await a_job(db, "test.api.push", stranger.organization_id)
    queued = await a_job(db, "test.api.push", owner.organization_id, JobStatus.queued)
    ran: list[uuid.UUID] = []

    @registry.handler("test.api.push")
    async def push(ctx: JobContext, _payload: dict[str, Any]) -> None:
        ran.append(ctx.job_id)

    assert (await client.post(f"/api/v1/jobs/{foreign}/retry", headers=owner.headers)).status_code == 404
    assert (await client.post(f"/api/v1/jobs/{uuid.uuid4()}/retry", headers=owner.headers)).status_code == 404
    assert (await client.post(f"/api/v1/jobs/{dead}/retry", headers=member.headers)).status_code == 403
    not_dead = await client.post(f"/api/v1/jobs/{queued}/retry", headers=owner.headers)
    assert not_dead.status_code == 409
    assert "Only a dead job" in not_dead.json()["message"]

    async with make_worker() as worker:
        await wait_for(lambda: queued in ran, what="the queued job")
        response = await client.post(f"/api/v1/jobs/{dead}/retry", headers=owner.headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"
        assert response.json()["attempts"] == 0
        await wait_for(lambda: dead in ran, within=1, what="the retried job (woken by the commit)")
        await wait_for(lambda: worker.running_jobs == 0, what="its outcome")
    assert foreign not in ran
    retried = await load(db, dead)
    assert retried.status is JobStatus.done
    assert retried.attempts == 1
    assert (await load(db, foreign)).status is JobStatus.dead


async def run_cli(argv: list[str], settings: Settings) -> int:
    args = build_parser().parse_args(argv)
    # The CLI runs its own event loop (asyncio.run), so it goes on a thread of its own, as from a shell.
    result: int = await asyncio.to_thread(args.handler, args, settings)
    return result


async def test_cli_lists_dead_jobs_and_retries_one(
    db: Maker,
    registry: Registry,
    make_worker: Callable[..., Worker],
    worker_settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead = await a_job(db, "test.cli.import", None)
    done = await a_job(db, "test.cli.import", None, JobStatus.queued)
    async with transaction(db) as session:
        await session.execute(update(Job).where(Job.id == done).values(status=JobStatus.done))
    ran: list[uuid.UUID] = []

    @registry.handler("test.cli.import")
    async def work(ctx: JobContext, _payload: dict[str, Any]) -> None:
        ran.append(ctx.job_id)

    assert await run_cli(["jobs", "list", "--status", "dead"], worker_settings) == 0
    listed = capsys.readouterr().out
    assert str(dead) in listed
    assert "HTTPError: 503 from Shopee" in listed
    assert str(done) not in listed

    assert await run_cli(["jobs", "retry", str(uuid.uuid4())], worker_settings) == 1
    assert "Job not found" in capsys.readouterr().err
    assert await run_cli(["jobs", "retry", str(done)], worker_settings) == 1
    assert "Only a dead job" in capsys.readouterr().err

    async with make_worker():
        assert await run_cli(["jobs", "retry", str(dead)], worker_settings) == 0
        assert f"job {dead} (test.cli.import) is queued again" in capsys.readouterr().out
        # Another process's commit: the worker finds it by NOTIFY on PostgreSQL, by its poll on SQLite.
        await wait_for(lambda: ran == [dead], within=3, what="the retried job")
    assert (await load(db, dead)).status is JobStatus.done
