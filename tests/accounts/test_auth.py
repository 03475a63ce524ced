from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from agrimarket.accounts.security import hash_password, verify_password
from agrimarket.db import make_sessionmaker, transaction
from agrimarket.models import User
from tests.factories import PASSWORD, SESSION_COOKIE, register


async def test_register_normalises_the_phone_and_makes_the_user_owner(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "phone": "0987 654 321",
            "password": PASSWORD,
            "full_name": "Tra\u0302\u0300n Thi\u0323 Bi\u0300nh",  # decomposed (NFD) input
            "organization_name": "Hộ Trần Thị Bình",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user"]["phone"] == "+84987654321"
    assert body["user"]["full_name"] == "Trần Thị Bình"
    assert body["organizations"][0]["role"] == "owner"
    assert body["organizations"][0]["kind"] == "household"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()


@pytest.mark.parametrize("phone", ["0283 823 4567", "12345", "+1 202 555 0143", "không có số"])
async def test_register_refuses_anything_but_a_vietnamese_mobile(client: httpx.AsyncClient, phone: str) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"phone": phone, "password": PASSWORD, "full_name": "An", "organization_name": "Hộ An"},
    )
    assert response.status_code == 422
    assert response.json()["field"] == "phone"
    assert "Vietnamese mobile number" in response.json()["message"]


async def test_register_twice_with_one_phone_is_a_conflict(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post(
        "/api/v1/auth/register",
        json={"phone": account.phone, "password": PASSWORD, "full_name": "B", "organization_name": "Hộ B"},
    )
    assert response.status_code == 409
    assert response.json()["field"] == "phone"


async def test_short_password_is_refused_naming_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"phone": "0912000001", "password": "short", "full_name": "An", "organization_name": "Hộ An"},
    )
    assert response.status_code == 422
    assert response.json()["field"] == "password"


async def test_login_with_any_spelling_of_the_phone_and_read_me(client: httpx.AsyncClient) -> None:
    account = await register(client)
    international = "+84 " + account.phone[1:]
    response = await client.post("/api/v1/auth/login", json={"phone": international, "password": PASSWORD})
    assert response.status_code == 200, response.text
    token = response.cookies[SESSION_COOKIE]
    client.cookies.clear()
    me = await client.get("/api/v1/me", headers={"Cookie": f"{SESSION_COOKIE}={token}"})
    assert me.status_code == 200
    assert me.json()["user"]["id"] == account.user_id


async def test_wrong_password_and_unknown_phone_get_the_same_answer(client: httpx.AsyncClient) -> None:
    account = await register(client)
    wrong = await client.post("/api/v1/auth/login", json={"phone": account.phone, "password": "sai-mat-khau"})
    unknown = await client.post("/api/v1/auth/login", json={"phone": "0919999999", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    account = await register(client)
    assert (await client.post("/api/v1/auth/logout", headers=account.headers)).status_code == 204
    client.cookies.clear()
    assert (await client.get("/api/v1/me", headers=account.headers)).status_code == 401


async def test_api_token_is_shown_once_stored_hashed_and_revocable(client: httpx.AsyncClient) -> None:
    account = await register(client)
    created = await client.post(
        "/api/v1/tokens",
        json={"name": "Sổ sách", "organization_id": account.organization_id},
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    secret = created.json()["token"]
    bearer = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/api/v1/me", headers=bearer)).status_code == 200
    listed = await client.get("/api/v1/tokens", headers=account.headers)
    assert secret not in listed.text
    assert listed.json()[0]["prefix"] == secret[:10]
    token_id = created.json()["id"]
    assert (await client.delete(f"/api/v1/tokens/{token_id}", headers=account.headers)).status_code == 204
    assert (await client.get("/api/v1/me", headers=bearer)).status_code == 401


async def test_api_token_cannot_mint_more_tokens(client: httpx.AsyncClient) -> None:
    account = await register(client)
    created = await client.post(
        "/api/v1/tokens",
        json={"name": "ERP", "organization_id": account.organization_id},
        headers=account.headers,
    )
    bearer = {"Authorization": f"Bearer {created.json()['token']}"}
    again = await client.post(
        "/api/v1/tokens", json={"name": "more", "organization_id": account.organization_id}, headers=bearer
    )
    assert again.status_code == 403


async def test_cross_site_write_with_a_session_cookie_is_refused(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post(
        "/api/v1/organizations",
        json={"name": "HTX mới", "kind": "cooperative"},
        headers={**account.headers, "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403


async def test_a_read_with_an_api_token_records_when_it_was_last_used(client: httpx.AsyncClient) -> None:
    account = await register(client)
    created = await client.post(
        "/api/v1/tokens", json={"name": "ERP", "organization_id": account.organization_id}, headers=account.headers
    )
    assert created.json()["last_used_at"] is None
    assert (await client.get("/api/v1/me", headers={"Authorization": f"Bearer {created.json()['token']}"})).is_success
    listed = await client.get("/api/v1/tokens", headers=account.headers)
    assert listed.json()[0]["last_used_at"] is not None


async def test_password_hashing_leaves_the_event_loop_free_for_other_requests(client: httpx.AsyncClient) -> None:
    """Argon2 takes tens of milliseconds: a login must not stall every other request (a push waiting for its
    answer) meanwhile. The loop's longest stall during a login stays well under one hash's time."""
    account = await register(client)
    started = time.perf_counter()
    verify_password(PASSWORD, hash_password(PASSWORD))
    one_hash = (time.perf_counter() - started) / 2
    longest = 0.0
    login_done = asyncio.Event()

    async def watch_the_loop() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not login_done.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    watcher = asyncio.create_task(watch_the_loop())
    answer = await client.post("/api/v1/auth/login", json={"phone": account.phone, "password": PASSWORD})
    login_done.set()
    await watcher

    assert answer.status_code == 200
    assert longest < one_hash / 2, (longest, one_hash)


async def test_a_login_does_not_hold_back_other_writers_while_it_checks_the_password(
    engine: AsyncEngine, committing_client: httpx.AsyncClient
) -> None:
    """On SQLite every write waits for the process's one writer connection: the password is checked before the
    login's own transaction starts, so a write meanwhile goes through at once, not after Argon2."""
    account = await register(committing_client)
    started = time.perf_counter()
    verify_password(PASSWORD, hash_password(PASSWORD))
    one_hash = (time.perf_counter() - started) / 2

    login = asyncio.create_task(
        committing_client.post("/api/v1/auth/login", json={"phone": account.phone, "password": PASSWORD})
    )
    await asyncio.sleep(one_hash / 4)  # the login is checking the password now
    began = time.perf_counter()
    async with transaction(make_sessionmaker(engine)) as session:
        await session.execute(
            update(User).where(User.id == uuid.UUID(account.user_id)).values(full_name="Nguyễn Văn Bình")
        )
    waited = time.perf_counter() - began
    answer = await login

    assert answer.status_code == 200
    assert waited < one_hash / 2, (waited, one_hash)
