"""Connecting a shop through the marketplace's own authorisation page: a sealed, expiring, single-use state; the
code traded for credentials by the plugin over the process's HTTP client; refusals named, nothing half-written."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.channels.reference import ReferencePlugin
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.config import Environment, Settings
from agrimarket.kit.crypto import CredentialCipher
from agrimarket.media.storage import storage_for
from agrimarket.models import ChannelConnection, ConnectionStatus, Job, UsedConnectState
from agrimarket.sync.queue import SYNC_KIND, sync_dedupe_key
from agrimarket.sync.runtime import SyncRuntime, use_runtime
from tests.channels.oauth import CHANNEL, PLATFORM, REFUSAL, OAuthReferencePlugin, Platform, back_from
from tests.factories import Account, register


@pytest.fixture
def platform() -> Platform:
    return Platform()


@pytest.fixture
def plugin() -> OAuthReferencePlugin:
    return OAuthReferencePlugin()


def registry_of(plugin: OAuthReferencePlugin) -> ChannelRegistry:
    registry = ChannelRegistry()
    registry.add(ReferencePlugin())
    registry.add(plugin)
    return registry


@pytest.fixture
def app(app: FastAPI, plugin: OAuthReferencePlugin) -> FastAPI:
    """The app's channels for these tests: the reference market, and its twin connected by authorisation."""
    app.state.channels = registry_of(plugin)
    return app


@pytest.fixture(autouse=True)
def http(platform: Platform, settings: Settings) -> Iterator[httpx.AsyncClient]:
    """The process's HTTP client reaches the platform's token endpoint (and nothing else)."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(platform.handle))
    parts = SyncRuntime(
        channels=ChannelRegistry(), http=client, storage=storage_for(settings.media_storage_url, settings.data_dir)
    )
    with use_runtime(parts):
        yield client


@pytest.fixture
def clock(app: FastAPI) -> list[float]:
    """The app's time, moved by tests: ``clock[0]`` seconds since the epoch."""
    now = [time.time()]
    app.state.clock = lambda: now[0]
    return now


async def authorize(client: httpx.AsyncClient, account: Account, **fields: Any) -> httpx.Response:
    body: dict[str, Any] = {"channel": CHANNEL, "name": "Shop Sầu riêng Ri6", **fields}
    return await client.post(
        f"/api/v1/organizations/{account.organization_id}/connections/authorize", json=body, headers=account.headers
    )


async def authorization_url(client: httpx.AsyncClient, account: Account, **fields: Any) -> str:
    response = await authorize(client, account, **fields)
    assert response.status_code == 200, response.text
    url: str = response.json()["authorization_url"]
    return url


async def connections_of(session: AsyncSession, organization_id: str) -> list[ChannelConnection]:
    result = await session.execute(
        select(ChannelConnection)
        .where(ChannelConnection.organization_id == uuid.UUID(organization_id))
        .execution_options(populate_existing=True)
    )
    return list(result.scalars())


async def used_states(session: AsyncSession, organization_id: str) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(UsedConnectState)
        .where(UsedConnectState.organization_id == uuid.UUID(organization_id))
    )
    return int(result.scalar_one())


async def assert_nothing_written(session: AsyncSession, account: Account) -> None:
    assert await connections_of(session, account.organization_id) == []
    assert await used_states(session, account.organization_id) == 0


def state_of(url: str) -> str:
    redirect = dict(parse_qsl(urlsplit(url).query))["redirect"]
    return dict(parse_qsl(urlsplit(redirect).query))["state"]


# -- the happy path -------------------------------------------------------------------------------------------


async def test_a_shop_authorised_on_the_platform_is_connected_with_its_credentials_encrypted(
    client: httpx.AsyncClient,
    session: AsyncSession,
    settings: Settings,
    platform: Platform,
    plugin: OAuthReferencePlugin,
    clock: list[float],
) -> None:
    account = await register(client)
    channels = (await client.get("/api/v1/channels", headers=account.headers)).json()
    assert {c["name"]: c["connect_by_authorization"] for c in channels} == {CHANNEL: True, "reference": False}

    started = await authorize(client, account, settings={"latency_ms": 5}, category_map={"fruit": "trai-cay"})
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["authorization_url"].startswith(f"{PLATFORM}/authorize?")
    expires_at = body["expires_at"]
    assert abs(_epoch(expires_at) - (int(clock[0]) + 600)) < 1
    # The plugin was given our callback, carrying the state (Shopee echoes none), and the connection's settings.
    [request] = plugin.requests
    assert request.redirect_uri.startswith(f"http://127.0.0.1:8000/api/v1/connections/callback/{CHANNEL}?state=")
    assert dict(parse_qsl(urlsplit(request.redirect_uri).query)) == {"state": request.state}
    assert request.settings == {"latency_ms": 5}
    assert await connections_of(session, account.organization_id) == []  # nothing until the seller is back

    back = platform.grant(body["authorization_url"], shop_id="shop-ri6")
    answer = await client.get(back, headers=account.headers)
    assert answer.status_code == 200, answer.text
    connection = answer.json()
    assert connection["channel"] == CHANNEL
    assert connection["name"] == "Shop Sầu riêng Ri6"
    assert connection["external_shop_id"] == "shop-ri6"
    assert connection["status"] == "active"
    assert connection["settings"] == {"latency_ms": 5}
    assert connection["category_map"] == {"fruit": "trai-cay"}
    assert connection["credential_fields"] == ["access_token", "refresh_token", "shop_id", "webhook_secret"]
    assert "at-" not in answer.text
    # The code was traded with the same redirect URI the seller was sent off with, as OAuth platforms insist.
    assert platform.exchanged_with == [request.redirect_uri]

    [stored] = await connections_of(session, account.organization_id)
    assert stored.credentials_encrypted is not None
    assert b"at-" not in stored.credentials_encrypted
    credentials = CredentialCipher(settings.encryption_keys).decrypt_json(stored.credentials_encrypted)
    assert credentials["shop_id"] == "shop-ri6"
    assert credentials["access_token"].startswith("at-")
    assert await used_states(session, account.organization_id) == 1


async def test_with_a_done_page_configured_the_seller_is_sent_there_with_the_connection(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, platform: Platform
) -> None:
    app.state.settings = settings.model_copy(update={"connect_done_url": "https://app.agrimarket.test/shops?tab=1"})
    account = await register(client)
    back = platform.grant(await authorization_url(client, account), shop_id="shop-done")
    answer = await client.get(back, headers=account.headers)
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith("https://app.agrimarket.test/shops?tab=1&connection_id=")
    connection_id = dict(parse_qsl(urlsplit(location).query))["connection_id"]
    shown = await client.get(f"/api/v1/connections/{connection_id}", headers=account.headers)
    assert shown.json()["external_shop_id"] == "shop-done"


# -- states that must not connect anything --------------------------------------------------------------------


async def test_a_tampered_state_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, session: AsyncSession, platform: Platform
) -> None:
    account = await register(client)
    url = await authorization_url(client, account)
    state = state_of(url)
    back = platform.grant(url, shop_id="shop-x")
    flipped = state[:40] + ("A" if state[40] != "A" else "B") + state[41:]
    for bad in (flipped, "not-a-state", state + "x"):
        answer = await client.get(
            back.replace(urlencode({"state": state}), urlencode({"state": bad})), headers=account.headers
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "state"
        assert "not valid" in answer.json()["message"]
    missing = await client.get(f"/api/v1/connections/callback/{CHANNEL}?code=abc", headers=account.headers)
    assert missing.status_code == 422
    assert missing.json()["field"] == "state"
    assert "without the authorisation's state" in missing.json()["message"]
    # A state made for another channel does not open this one.
    other = await client.get(back.replace(f"/callback/{CHANNEL}", "/callback/reference"), headers=account.headers)
    assert other.status_code == 422
    assert other.json()["field"] == "channel"
    await assert_nothing_written(session, account)
    assert platform.exchanged_with == []  # the platform was never asked


async def test_an_expired_state_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, platform: Platform, clock: list[float]
) -> None:
    account = await register(client)
    back = platform.grant(await authorization_url(client, account), shop_id="shop-late")
    clock[0] += 601
    answer = await client.get(back, headers=account.headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "state"
    assert "expired" in answer.json()["message"]
    assert "10 minutes" in answer.json()["message"]
    await assert_nothing_written(session, account)
    assert platform.exchanged_with == []


async def test_a_state_connects_once(client: httpx.AsyncClient, session: AsyncSession, platform: Platform) -> None:
    account = await register(client)
    url = await authorization_url(client, account)
    back = platform.grant(url, shop_id="shop-once")
    assert (await client.get(back, headers=account.headers)).status_code == 200
    [connection] = await connections_of(session, account.organization_id)
    version = connection.credentials_version

    # The same page again (a reload): the platform refuses the used code; we say why.
    again = await client.get(back, headers=account.headers)
    assert again.status_code == 422, again.text
    assert again.json()["field"] == "state"
    assert "works once" in again.json()["message"]
    # The same state with a fresh code (the platform sends the seller back again): still refused.
    fresh = await client.get(platform.grant(url, shop_id="shop-once"), headers=account.headers)
    assert fresh.status_code == 422, fresh.text
    assert "works once" in fresh.json()["message"]
    [after] = await connections_of(session, account.organization_id)
    assert after.credentials_version == version


async def test_a_state_is_only_good_for_the_person_who_started_it(
    client: httpx.AsyncClient, session: AsyncSession, platform: Platform
) -> None:
    account = await register(client)
    stranger = await register(client, name="Hộ Lạ")
    back = platform.grant(await authorization_url(client, account), shop_id="shop-mine")
    answer = await client.get(back, headers=stranger.headers)
    assert answer.status_code == 403, answer.text
    assert answer.json()["field"] == "state"
    assert "another AgriMarket account" in answer.json()["message"]
    await assert_nothing_written(session, account)
    await assert_nothing_written(session, stranger)
    logged_out = await client.get(back)
    assert logged_out.status_code == 401
    # The one who started it can still finish.
    assert (await client.get(back, headers=account.headers)).status_code == 200


async def test_the_role_is_checked_again_when_the_seller_comesback_from(
    client: httpx.AsyncClient, session: AsyncSession, platform: Platform
) -> None:
    owner = await register(client, kind="cooperative", name="HTX Điều")
    helper = await register(client, name="Hộ Phó")
    added = await client.post(
        f"/api/v1/organizations/{owner.organization_id}/memberships",
        json={"phone": helper.phone, "role": "admin"},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text
    as_admin = Account(helper.phone, helper.user_id, owner.organization_id, helper.session_token)
    back = platform.grant(await authorization_url(client, as_admin), shop_id="shop-coop")

    demoted = await client.patch(
        f"/api/v1/memberships/{added.json()['id']}", json={"role": "member"}, headers=owner.headers
    )
    assert demoted.status_code == 200, demoted.text
    answer = await client.get(back, headers=helper.headers)
    assert answer.status_code == 403, answer.text
    assert "admin role" in answer.json()["message"]
    await assert_nothing_written(session, owner)
    assert platform.exchanged_with == []

    member = await authorize(client, as_admin)
    assert member.status_code == 403


# -- the platform's answers -----------------------------------------------------------------------------------


async def test_a_code_the_platform_refuses_is_a_422_with_its_message_and_the_state_stays_usable(
    client: httpx.AsyncClient, session: AsyncSession, platform: Platform
) -> None:
    account = await register(client)
    url = await authorization_url(client, account)
    back = platform.grant(url, shop_id="shop-refused")
    code = dict(parse_qsl(urlsplit(back).query))["code"]
    answer = await client.get(back.replace(code, "code-forged"), headers=account.headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "code"
    assert REFUSAL in answer.json()["message"]
    await assert_nothing_written(session, account)
    # Nothing was used up: the seller goes back to the platform and authorises again with the same state.
    assert (await client.get(platform.grant(url, shop_id="shop-refused"), headers=account.headers)).status_code == 200


async def test_a_seller_who_declines_on_the_platform_is_told_nothing_was_connected(
    client: httpx.AsyncClient, session: AsyncSession, platform: Platform
) -> None:
    account = await register(client)
    url = await authorization_url(client, account)
    redirect = dict(parse_qsl(urlsplit(url).query))["redirect"]
    back = back_from(redirect, error="access_denied", error_description="The seller refused the authorisation")
    answer = await client.get(back, headers=account.headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "error"
    assert "not authorised (The seller refused the authorisation)" in answer.json()["message"]
    assert "nothing was connected" in answer.json()["message"]
    no_code = await client.get(back_from(redirect), headers=account.headers)
    assert no_code.status_code == 422
    assert no_code.json()["field"] == "code"
    await assert_nothing_written(session, account)
    assert platform.exchanged_with == []


async def test_a_platform_that_does_not_answer_is_a_503_to_try_again(
    client: httpx.AsyncClient, session: AsyncSession, platform: Platform
) -> None:
    account = await register(client)
    back = platform.grant(await authorization_url(client, account), shop_id="shop-later")
    platform.down = True
    answer = await client.get(back, headers=account.headers)
    assert answer.status_code == 503, answer.text
    assert "did not answer" in answer.json()["message"]
    await assert_nothing_written(session, account)
    platform.down = False
    assert (await client.get(back, headers=account.headers)).status_code == 200


async def test_a_channel_without_an_authorisation_page_is_refused_naming_the_field(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    account = await register(client)
    answer = await authorize(client, account, channel="reference")
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "channel"
    assert "entering the shop's credentials" in answer.json()["message"]
    unknown = await authorize(client, account, channel="khong_co")
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "channel"
    bad_settings = await authorize(client, account, settings={"latency_ms": -1})
    assert bad_settings.status_code == 422
    assert bad_settings.json()["field"] == "settings.latency_ms"
    await assert_nothing_written(session, account)


async def test_in_production_the_public_address_must_be_configured(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await register(client)
    app.state.settings = settings.model_copy(update={"env": Environment.production})
    answer = await authorize(client, account)
    assert answer.status_code == 409, answer.text
    assert "AGRIMARKET_PUBLIC_BASE_URL" in answer.json()["message"]
    app.state.settings = settings.model_copy(
        update={"env": Environment.production, "public_base_url": "https://agrimarket.example.vn"}
    )
    assert (await authorize(client, account)).status_code == 200


# -- the same shop again --------------------------------------------------------------------------------------


async def test_authorising_a_connected_shop_again_renews_its_credentials(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, platform: Platform
) -> None:
    account = await register(client)
    back = platform.grant(await authorization_url(client, account, settings={"latency_ms": 5}), shop_id="shop-renew")
    first = (await client.get(back, headers=account.headers)).json()
    [connection] = await connections_of(session, account.organization_id)
    assert connection.credentials_encrypted is not None
    cipher = CredentialCipher(settings.encryption_keys)
    old_token = cipher.decrypt_json(connection.credentials_encrypted)["access_token"]
    # The platform's authorisation lapsed (the sync engine marks it so).
    await session.execute(
        update(ChannelConnection)
        .where(ChannelConnection.id == connection.id)
        .values(status=ConnectionStatus.auth_expired, last_error="Token hết hạn")
    )
    await session.flush()

    # No settings given: the connection keeps its own.
    back = platform.grant(await authorization_url(client, account, name="Shop Ri6 mới"), shop_id="shop-renew")
    renewed = await client.get(back, headers=account.headers)
    assert renewed.status_code == 200, renewed.text
    body = renewed.json()
    assert body["id"] == first["id"]
    assert body["status"] == "active"
    assert body["last_error"] is None
    assert body["name"] == "Shop Ri6 mới"
    assert body["settings"] == {"latency_ms": 5}
    assert body["credentials_version"] == first["credentials_version"] + 1
    [after] = await connections_of(session, account.organization_id)
    assert after.credentials_encrypted is not None
    assert cipher.decrypt_json(after.credentials_encrypted)["access_token"] != old_token
    jobs = await session.execute(
        select(Job).where(Job.kind == SYNC_KIND, Job.dedupe_key == sync_dedupe_key(uuid.UUID(first["id"])))
    )
    assert jobs.scalars().first() is not None  # the shop is synced again with its new credentials

    # A disconnected connection to the shop comes back too.
    assert (await client.delete(f"/api/v1/connections/{first['id']}", headers=account.headers)).status_code == 204
    back = platform.grant(await authorization_url(client, account), shop_id="shop-renew")
    revived = await client.get(back, headers=account.headers)
    assert revived.status_code == 200, revived.text
    assert revived.json()["id"] == first["id"]
    assert revived.json()["status"] == "active"
    assert len(await connections_of(session, account.organization_id)) == 1


async def test_a_shop_connected_to_another_organization_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, platform: Platform
) -> None:
    first = await register(client)
    second = await register(client, name="Hộ Hai")
    back = platform.grant(await authorization_url(client, first), shop_id="shop-shared")
    assert (await client.get(back, headers=first.headers)).status_code == 200
    back = platform.grant(await authorization_url(client, second), shop_id="shop-shared")
    answer = await client.get(back, headers=second.headers)
    assert answer.status_code == 409, answer.text
    assert "another organization" in answer.json()["message"]
    await assert_nothing_written(session, second)


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def test_two_returns_racing_with_one_state_connect_once(
    committing_app: FastAPI, committing_client: httpx.AsyncClient, plugin: OAuthReferencePlugin, platform: Platform
) -> None:
    """Real transactions on their own connections: whichever commits first wins; the other is told why."""
    committing_app.state.channels = registry_of(plugin)
    account = await register(committing_client)
    url = await authorization_url(committing_client, account)
    backs = [platform.grant(url, shop_id="shop-race-1"), platform.grant(url, shop_id="shop-race-2")]
    answers = await asyncio.gather(*(committing_client.get(back, headers=account.headers) for back in backs))
    assert sorted(a.status_code for a in answers) == [200, 422], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 422)
    assert "works once" in refused.json()["message"]
    async with committing_app.state.sessionmaker() as fresh:
        found = await fresh.execute(
            select(func.count())
            .select_from(ChannelConnection)
            .where(ChannelConnection.organization_id == uuid.UUID(account.organization_id))
        )
        assert found.scalar_one() == 1
