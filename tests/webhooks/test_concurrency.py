"""Deliveries racing on real, committing transactions (SQLite's write lock; PostgreSQL's unique index)."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from agrimarket.db import make_sessionmaker
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
