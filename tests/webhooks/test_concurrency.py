"""Deliveries racing on real, committing transactions (SQLite's write lock; PostgreSQL's unique index)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agrimarket.db import make_sessionmaker, transaction
from agrimarket.sync.runtime import runtime
from agrimarket.webhooks.intake import PushIntake
from tests.webhooks.conftest import Shop, connect_shop, events_of, jobs_of


async def _shop(engine: AsyncEngine, app: FastAPI, channel: str) -> Shop:
    return await connect_shop(make_sessionmaker(engine), app.state.settings, channel, app)


async def test_fifty_concurrent_deliveries_of_one_push_store_one_row_and_queue_one_job(
    engine: AsyncEngine, committing_app: FastAPI, committing_client: httpx.AsyncClient
) -> None:
    db = make_sessionmaker(engine)
    for channel in ("shopee", "lazada"):
        shop = await _shop(engine, committing_app, channel)
        await shop.order()
        [push] = shop.sandbox.market.pushes
        assert push.delivered

        answers = await asyncio.gather(
            *(committing_client.post(push.url, content=push.body, headers=push.headers) for _ in range(50))
        )

        assert {(a.status_code, a.content) for a in answers} == {(200, b"")}
        assert len(await events_of(db, shop.connection.id)) == 1
        assert [job.payload["connection_id"] for job in await jobs_of(db)].count(str(shop.connection.id)) == 1


async def test_fifty_concurrent_different_pushes_are_all_kept_under_one_queued_drain(
    engine: AsyncEngine, committing_app: FastAPI, committing_client: httpx.AsyncClient
) -> None:
    db = make_sessionmaker(engine)
    shop = await _shop(engine, committing_app, "lazada")

    def body(i: int) -> bytes:
        data = {"trade_order_id": f"{9_000 + i}", "order_status": "pending", "status_update_time": i}
        return json.dumps({"seller_id": shop.shop_id, "message_type": 0, "data": data}).encode()

    answers = await asyncio.gather(
        *(committing_client.post(shop.url, content=body(i), headers=shop.sign(body(i))) for i in range(50))
    )

    assert {a.status_code for a in answers} == {200}
    assert len(await events_of(db, shop.connection.id)) == 50
    assert len(await jobs_of(db)) == 1


async def test_pushes_arriving_together_are_kept_in_fewer_transactions_each_with_its_own_answer(
    engine: AsyncEngine, committing_app: FastAPI, committing_client: httpx.AsyncClient
) -> None:
    """Group commit: concurrent pushes share transactions, and each still gets its own verdict: good ones 200 and
    kept once, a duplicate 200 and not kept again, a bad signature 401 and not kept, another shop's URL 404."""
    db = make_sessionmaker(engine)
    shop = await _shop(engine, committing_app, "lazada")

    def body(i: int) -> bytes:
        data = {"trade_order_id": f"{7_000 + i}", "order_status": "pending", "status_update_time": i}
        return json.dumps({"seller_id": shop.shop_id, "message_type": 0, "data": data}).encode()

    good = [(shop.url, body(i), shop.sign(body(i))) for i in range(40)]
    duplicate = [(shop.url, body(0), shop.sign(body(0)))]
    forged = [(shop.url, body(100 + i), {**shop.sign(body(100 + i)), "Authorization": "0" * 64}) for i in range(5)]
    elsewhere = [(shop.url.rsplit("/", 1)[0] + f"/{uuid.uuid4()}", body(200), shop.sign(body(200)))]
    sent = good + duplicate + forged + elsewhere

    answers = await asyncio.gather(
        *(committing_client.post(url, content=content, headers=headers) for url, content, headers in sent)
    )

    statuses = [a.status_code for a in answers]
    assert statuses == [200] * 41 + [401] * 5 + [404]
    kept = await events_of(db, shop.connection.id)
    assert sorted(e.order_ids or [] for e in kept) == sorted([[f"{7_000 + i}"] for i in range(40)])
    assert len(await jobs_of(db)) == 1
    intake = committing_app.state.push_intake
    assert 1 <= intake.batches < len(sent)  # shared: fewer transactions than pushes


async def test_pushes_arriving_while_the_writer_is_busy_go_in_one_transaction_once_it_is_free(
    engine: AsyncEngine, committing_app: FastAPI, committing_client: httpx.AsyncClient
) -> None:
    """SQLite has one writer: while another transaction (a drain's) holds it, the first push waits for it, and the
    pushes that arrive meanwhile are taken with it once it is free, not one transaction later."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's one writer connection; PostgreSQL's pushes each find a connection of their own")
    db = make_sessionmaker(engine)
    shop = await _shop(engine, committing_app, "lazada")

    def body(i: int) -> bytes:
        data = {"trade_order_id": f"{8_000 + i}", "order_status": "pending", "status_update_time": i}
        return json.dumps({"seller_id": shop.shop_id, "message_type": 0, "data": data}).encode()

    first = await committing_client.post(shop.url, content=body(99), headers=shop.sign(body(99)))
    assert first.status_code == 200
    intake = committing_app.state.push_intake

    async with transaction(db) as busy:
        await busy.execute(text("SELECT 1"))  # the writer connection is this transaction's until it ends
        before = intake.batches
        sending = [
            asyncio.create_task(committing_client.post(shop.url, content=body(i), headers=shop.sign(body(i))))
            for i in range(12)
        ]
        for _ in range(500):
            if intake.queued == 12:
                break
            await asyncio.sleep(0.01)
        assert intake.queued == 12  # all of them waiting: the leader for the writer, the rest for the leader

    answers = await asyncio.gather(*sending)

    assert {a.status_code for a in answers} == {200}
    assert intake.batches == before + 1
    assert len(await events_of(db, shop.connection.id)) == 13


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never came to pass")


async def _lingering(
    engine: AsyncEngine, app: FastAPI, linger_seconds: float
) -> tuple[Shop, Callable[[int], bytes], PushIntake]:
    """A Lazada shop, its pushes' bodies by number, and the app's intake made anew with this linger."""
    shop = await _shop(engine, app, "lazada")

    def body(i: int) -> bytes:
        data = {"trade_order_id": f"{6_000 + i}", "order_status": "pending", "status_update_time": i}
        return json.dumps({"seller_id": shop.shop_id, "message_type": 0, "data": data}).encode()

    settings = app.state.settings
    app.state.push_intake = PushIntake(settings, runtime(settings).http, linger_seconds=linger_seconds)
    return shop, body, app.state.push_intake


async def test_a_leader_waits_for_a_push_still_being_read_and_takes_it_in_its_transaction(
    engine: AsyncEngine, committing_app: FastAPI, committing_client: httpx.AsyncClient
) -> None:
    """Group commit with a linger: the first push holds the write connection and waits while another push's body
    is being read; once that one is queued, both go in one transaction, long before the linger's limit."""
    db = make_sessionmaker(engine)
    shop, body, intake = await _lingering(engine, committing_app, linger_seconds=30)
    loop = asyncio.get_running_loop()
    started = loop.time()

    with intake.expecting():  # a push on its way: its body being read
        first = asyncio.create_task(committing_client.post(shop.url, content=body(1), headers=shop.sign(body(1))))
        await _until(lambda: intake.queued == 1)
        await asyncio.sleep(0.05)
        assert not first.done()  # the leader lingers for it
        assert intake.batches == 0
        second = asyncio.create_task(committing_client.post(shop.url, content=body(2), headers=shop.sign(body(2))))
        await _until(lambda: intake.queued == 2)
    answers = await asyncio.gather(first, second)

    assert [a.status_code for a in answers] == [200, 200]
    assert intake.batches == 1
    assert loop.time() - started < 10  # woken by the arrivals, not by the limit
    assert len(await events_of(db, shop.connection.id)) == 2


async def test_a_leader_lingers_no_longer_than_its_limit_for_a_push_that_never_comes(
    engine: AsyncEngine, committing_app: FastAPI, committing_client: httpx.AsyncClient
) -> None:
    db = make_sessionmaker(engine)
    shop, body, intake = await _lingering(engine, committing_app, linger_seconds=0.2)
    loop = asyncio.get_running_loop()

    with intake.expecting():  # announced, never submitted
        started = loop.time()
        answer = await committing_client.post(shop.url, content=body(1), headers=shop.sign(body(1)))
        waited = loop.time() - started

    assert answer.status_code == 200
    assert intake.batches == 1
    assert 0.2 <= waited < 5
    assert len(await events_of(db, shop.connection.id)) == 1


async def test_a_push_alone_is_kept_without_lingering(
    engine: AsyncEngine, committing_app: FastAPI, committing_client: httpx.AsyncClient
) -> None:
    shop, body, intake = await _lingering(engine, committing_app, linger_seconds=30)
    loop = asyncio.get_running_loop()

    started = loop.time()
    answer = await committing_client.post(shop.url, content=body(1), headers=shop.sign(body(1)))

    assert answer.status_code == 200
    assert intake.batches == 1
    assert loop.time() - started < 10  # nothing else being read: no wait for company
