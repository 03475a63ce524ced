"""The inbox as people see it: an organization's received pushes, their state, and replay through the API and CLI."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine

from agrimarket.cli import build_parser
from agrimarket.config import Settings
from agrimarket.db import make_sessionmaker, transaction
from agrimarket.models import InboundEvent, Job, JobStatus, Membership, Role, utcnow
from tests.factories import Account, register
from tests.webhooks.conftest import Maker, Shop, connect_shop, events_of, jobs_of


async def own(db: Maker, shop: Shop, account: Account, role: Role = Role.owner) -> None:
    """Give ``account`` a role in the shop's organization."""
    async with transaction(db) as session:
        session.add(
            Membership(user_id=uuid.UUID(account.user_id), organization_id=shop.connection.organization_id, role=role)
        )


async def handled(db: Maker, event_id: uuid.UUID, *, error: str | None = None) -> None:
    """As the order pipeline leaves an event: handled, or failed with its error; its drain finished."""
    async with transaction(db) as session:
        values = {"last_error": error, "attempts": 1} if error else {"handled_at": utcnow(), "attempts": 1}
        await session.execute(update(InboundEvent).where(InboundEvent.id == event_id).values(**values))
        await session.execute(update(Job).values(status=JobStatus.done, dedupe_key=None, finished_at=utcnow()))


async def test_an_organizations_inbox_lists_its_pushes_newest_first_by_status_and_page(
    shop: Shop, sessionmaker: Maker, client: httpx.AsyncClient
) -> None:
    owner = await register(client)
    await own(sessionmaker, shop, owner)
    first = await shop.order()
    await shop.order()
    await shop.order()
    oldest, middle, newest = await events_of(sessionmaker, shop.connection.id)
    await handled(sessionmaker, oldest.id)
    await handled(sessionmaker, middle.id, error="ChannelNotFound: order gone")
    inbox = f"/api/v1/organizations/{shop.connection.organization_id}/inbox"

    everything = (await client.get(inbox, headers=owner.headers)).json()["items"]

    assert [item["id"] for item in everything] == [str(newest.id), str(middle.id), str(oldest.id)]
    assert [item["status"] for item in everything] == ["unhandled", "failed", "handled"]
    last = everything[2]
    assert first in last["external_id"]
    assert (last["channel"], last["event_type"], last["connection_id"]) == (
        shop.channel,
        "order",
        str(shop.connection.id),
    )
    assert last["order_ids"] == [first]
    assert last["body"] == oldest.body.decode()
    assert last["body_size"] == len(oldest.body)
    assert not last["body_truncated"]
    assert set(last["headers"]) == {"content-type", "user-agent"}
    for status, expected in (("unhandled", newest), ("failed", middle), ("handled", oldest)):
        page = (await client.get(inbox, params={"status": status}, headers=owner.headers)).json()["items"]
        assert [item["id"] for item in page] == [str(expected.id)]
    page_one = (await client.get(inbox, params={"limit": 2}, headers=owner.headers)).json()
    page_two = (
        await client.get(inbox, params={"limit": 2, "cursor": page_one["next_cursor"]}, headers=owner.headers)
    ).json()
    assert [i["id"] for i in page_one["items"] + page_two["items"]] == [i["id"] for i in everything]
    assert page_two["next_cursor"] is None
    other = (await client.get(inbox, params={"connection_id": str(uuid.uuid4())}, headers=owner.headers)).json()
    assert other["items"] == []


async def test_the_api_never_answers_a_signature_header(
    shop: Shop, sessionmaker: Maker, client: httpx.AsyncClient
) -> None:
    owner = await register(client)
    await own(sessionmaker, shop, owner)
    await shop.order()
    [event] = await events_of(sessionmaker, shop.connection.id)
    signature = shop.sandbox.market.pushes[0].headers["Authorization"]
    async with transaction(sessionmaker) as session:  # a row some other writer kept with every header
        await session.execute(
            update(InboundEvent)
            .where(InboundEvent.id == event.id)
            .values(headers={"authorization": signature, "content-type": "application/json"})
        )

    answer = await client.get(f"/api/v1/inbox/{event.id}", headers=owner.headers)

    assert answer.status_code == 200
    assert answer.json()["headers"] == {"content-type": "application/json"}
    assert signature not in answer.text


async def test_replay_through_the_api_reopens_the_event_and_queues_its_drain_once(
    shop: Shop, sessionmaker: Maker, client: httpx.AsyncClient
) -> None:
    owner, member = await register(client), await register(client, name="Hộ Xã Viên")
    await own(sessionmaker, shop, owner)
    await own(sessionmaker, shop, member, Role.member)
    await shop.order()
    [event] = await events_of(sessionmaker, shop.connection.id)
    await handled(sessionmaker, event.id, error="Retryable: Shopee 503")
    replay = f"/api/v1/inbox/{event.id}/replay"

    refused = await client.post(replay, headers=member.headers)
    answer = await client.post(replay, headers=owner.headers)
    again = await client.post(replay, headers=owner.headers)  # the drain still queued absorbs it

    assert refused.status_code == 403
    assert answer.status_code == again.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["last_error"]) == ("unhandled", None)
    jobs = await jobs_of(sessionmaker)
    assert [job.status for job in jobs] == [JobStatus.done, JobStatus.queued]
    assert jobs[1].payload == {"connection_id": str(shop.connection.id)}
    assert jobs[1].organization_id == shop.connection.organization_id
    assert (await client.get(f"/api/v1/inbox/{event.id}", headers=member.headers)).status_code == 200


async def run_cli(argv: list[str], settings: Settings) -> int:
    args = build_parser().parse_args(argv)
    # The CLI runs its own event loop (asyncio.run), so it goes on a thread of its own, as from a shell.
    result: int = await asyncio.to_thread(args.handler, args, settings)
    return result


async def test_cli_lists_unhandled_pushes_and_replays_one(
    engine: AsyncEngine, committing_app: FastAPI, public_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    db = make_sessionmaker(engine)
    shop = await connect_shop(db, public_settings, "shopee", committing_app)
    await shop.order()
    await shop.order()
    done, waiting = await events_of(db, shop.connection.id)
    await handled(db, done.id)

    assert await run_cli(["inbox", "list", "--unhandled"], public_settings) == 0
    listed = capsys.readouterr().out
    assert str(waiting.id) in listed
    assert str(done.id) not in listed
    assert await run_cli(["inbox", "list"], public_settings) == 0
    assert str(done.id) in capsys.readouterr().out

    assert await run_cli(["inbox", "replay", str(done.id)], public_settings) == 0
    assert "handed to the order pipeline again" in capsys.readouterr().out
    [reopened, _] = await events_of(db, shop.connection.id)
    assert reopened.handled_at is None
    assert [job.status for job in await jobs_of(db)] == [JobStatus.done, JobStatus.queued]

    async with transaction(db) as session:
        await session.execute(delete(Job))
    assert await run_cli(["inbox", "replay", str(uuid.uuid4())], public_settings) == 1
    assert "not found" in capsys.readouterr().err
