"""Connecting shops: credentials checked by the channel's schema, encrypted at rest, never given back."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.channels.reference import ReferencePlugin
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.config import Settings
from agrimarket.kit.crypto import CredentialCipher
from agrimarket.models import ChannelConnection, ConnectionStatus, Job, Listing
from agrimarket.sync.queue import SYNC_KIND
from tests.factories import Account, create_product, register

ACCESS_TOKEN = "at-bi-mat-9f2c71"
REFRESH_TOKEN = "rt-bi-mat-04ad5e"


@pytest.fixture(autouse=True)
def registry(app: FastAPI) -> ChannelRegistry:
    """The app's channels for these tests: the reference market only, whatever is installed."""
    registry = ChannelRegistry()
    registry.add(ReferencePlugin())
    app.state.channels = registry
    return registry


def credentials(shop_id: str | None = None, **changes: Any) -> dict[str, Any]:
    return {
        "shop_id": shop_id or f"shop-{uuid.uuid4().hex[:8]}",
        "access_token": ACCESS_TOKEN,
        "refresh_token": REFRESH_TOKEN,
        **changes,
    }


def connection_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": "reference", "name": "Shop Sầu riêng Ri6", "credentials": credentials()}
    body.update(fields)
    return body


async def connect(client: httpx.AsyncClient, account: Account, **fields: Any) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/organizations/{account.organization_id}/connections",
        json=connection_body(**fields),
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored(session: AsyncSession, connection_id: str) -> ChannelConnection:
    result = await session.execute(
        select(ChannelConnection)
        .where(ChannelConnection.id == uuid.UUID(connection_id))
        .execution_options(populate_existing=True)
    )
    return result.scalar_one()


async def raw_credentials(session: AsyncSession, connection_id: str) -> bytes | None:
    """The column as the database holds it, not through the ORM object."""
    result = await session.execute(
        select(ChannelConnection.credentials_encrypted).where(ChannelConnection.id == uuid.UUID(connection_id))
    )
    return result.scalar_one()


async def test_a_connected_shop_keeps_its_credentials_encrypted_and_never_shows_them(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    account = await register(client)
    creds = credentials("shop-ri6")
    created = await connect(
        client, account, credentials=creds, settings={"latency_ms": 5}, category_map={"fruit": "trai-cay"}
    )
    assert created["channel"] == "reference"
    assert created["external_shop_id"] == "shop-ri6"
    assert created["status"] == "active"
    assert created["settings"] == {"latency_ms": 5}
    assert created["category_map"] == {"fruit": "trai-cay"}
    assert created["credential_fields"] == ["access_token", "refresh_token", "shop_id", "webhook_secret"]
    assert created["credentials_version"] == 1
    assert created["listings"] == {}
    assert "credentials" not in created
    assert "credentials_encrypted" not in created

    url = f"/api/v1/connections/{created['id']}"
    answers = [
        await client.get(url, headers=account.headers),
        await client.get(f"/api/v1/organizations/{account.organization_id}/connections", headers=account.headers),
        await client.patch(url, json={"name": "Shop mới"}, headers=account.headers),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert ACCESS_TOKEN not in answer.text
        assert REFRESH_TOKEN not in answer.text
    assert [c["id"] for c in answers[1].json()] == [created["id"]]

    token = await raw_credentials(session, created["id"])
    assert token is not None
    assert ACCESS_TOKEN.encode() not in token
    assert REFRESH_TOKEN.encode() not in token
    assert b"shop-ri6" not in token
    assert CredentialCipher(settings.encryption_keys).decrypt_json(token) == {
        **creds,
        "webhook_secret": "reference-webhook-secret",
    }
    # The layout the sync engine reads.
    assert (await stored(session, created["id"])).settings == {
        "channel": {"latency_ms": 5},
        "category_map": {"fruit": "trai-cay"},
    }


async def test_credentials_still_decrypt_after_a_new_key_is_put_in_front(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    account = await register(client)
    created = await connect(client, account)
    token = await raw_credentials(session, created["id"])
    assert token is not None

    newest = SecretStr(Fernet.generate_key().decode())
    rotated_keys = CredentialCipher([newest, *settings.encryption_keys])
    assert rotated_keys.decrypt_json(token)["access_token"] == ACCESS_TOKEN
    rotated = rotated_keys.rotate(token)
    assert CredentialCipher([newest]).decrypt_json(rotated)["access_token"] == ACCESS_TOKEN
    with pytest.raises(ValueError, match="cannot be decrypted"):
        CredentialCipher(settings.encryption_keys).decrypt_json(rotated)


async def test_the_same_shop_cannot_be_connected_twice(client: httpx.AsyncClient) -> None:
    account = await register(client)
    other = await register(client, name="Hộ Trần Thị Bình")
    creds = credentials("shop-trung")
    first = await connect(client, account, credentials=creds)

    again = await client.post(
        f"/api/v1/organizations/{account.organization_id}/connections",
        json=connection_body(credentials=creds, name="Lần hai"),
        headers=account.headers,
    )
    assert again.status_code == 409, again.text
    assert again.json()["field"] == "credentials"
    assert f"already connected here, as “{first['name']}”" in again.json()["message"]

    elsewhere = await client.post(
        f"/api/v1/organizations/{other.organization_id}/connections",
        json=connection_body(credentials=creds),
        headers=other.headers,
    )
    assert elsewhere.status_code == 409, elsewhere.text
    assert "another organization" in elsewhere.json()["message"]
    assert account.organization_id not in elsewhere.text


async def test_an_unknown_channel_is_refused_naming_the_channels_available(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post(
        f"/api/v1/organizations/{account.organization_id}/connections",
        json=connection_body(channel="lazada"),
        headers=account.headers,
    )
    assert response.status_code == 404, response.text
    assert response.json()["field"] == "channel"
    assert "'lazada'" in response.json()["message"]
    assert "reference" in response.json()["message"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"credentials": {"shop_id": "shop-x", "refresh_token": REFRESH_TOKEN}}, "credentials.access_token"),
        ({"credentials": credentials(access_token="")}, "credentials.access_token"),
        ({"settings": {"latency_ms": -1}}, "settings.latency_ms"),
        ({"settings": {"colour": "green"}}, "settings.colour"),
    ],
)
async def test_credentials_and_settings_the_channel_refuses_name_the_field(
    client: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    account = await register(client)
    response = await client.post(
        f"/api/v1/organizations/{account.organization_id}/connections",
        json=connection_body(**changes),
        headers=account.headers,
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field
    assert body["details"]["errors"][0]["field"] == field
    assert REFRESH_TOKEN not in response.text  # refusals never echo a secret back


async def test_a_missing_credential_is_asked_for_in_words(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.post(
        f"/api/v1/organizations/{account.organization_id}/connections",
        json=connection_body(credentials={"shop_id": "shop-y", "access_token": ACCESS_TOKEN}),
        headers=account.headers,
    )
    assert response.status_code == 422
    assert response.json()["message"] == (
        "credentials.refresh_token: Enter refresh_token: Reference market (in memory) needs it."
    )


async def test_new_credentials_replace_the_old_bump_their_version_and_revive_an_expired_shop(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    account = await register(client)
    created = await connect(client, account, credentials=credentials("shop-het-han"))
    row = await stored(session, created["id"])
    row.status = ConnectionStatus.auth_expired
    row.last_error = "The shop's authorisation has expired; connect it again."
    await session.commit()

    url = f"/api/v1/connections/{created['id']}"
    still_expired = await client.patch(url, json={"status": "active"}, headers=account.headers)
    assert still_expired.status_code == 409, still_expired.text
    assert still_expired.json()["field"] == "credentials"

    fresh = credentials("shop-het-han", access_token="at-moi", refresh_token="rt-moi")
    response = await client.patch(url, json={"credentials": fresh}, headers=account.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["last_error"], body["credentials_version"]) == ("active", None, 2)
    assert "at-moi" not in response.text
    token = await raw_credentials(session, created["id"])
    assert token is not None
    assert CredentialCipher(settings.encryption_keys).decrypt_json(token)["access_token"] == "at-moi"

    another_shop = await client.patch(url, json={"credentials": credentials("shop-khac")}, headers=account.headers)
    assert another_shop.status_code == 422, another_shop.text
    assert "another Reference market (in memory) shop" in another_shop.json()["message"]


async def _listed(client: httpx.AsyncClient, account: Account, connection_id: str) -> dict[str, Any]:
    product = await create_product(client, account, variants=2, initial_stock=5)
    response = await client.post(
        f"/api/v1/connections/{connection_id}/listings", json={"product_id": product["id"]}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    return product


async def desired_versions(session: AsyncSession, connection_id: str) -> list[int]:
    result = await session.execute(
        select(Listing.desired_version)
        .where(Listing.connection_id == uuid.UUID(connection_id))
        .order_by(Listing.created_at, Listing.id)
    )
    return list(result.scalars())


async def queued_syncs(session: AsyncSession, connection_id: str) -> list[Job]:
    result = await session.execute(select(Job).where(Job.kind == SYNC_KIND))
    return [job for job in result.scalars() if job.payload == {"connection_id": connection_id}]


async def test_a_new_category_map_marks_every_listing_dirty_and_queues_a_sync(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    account = await register(client)
    created = await connect(client, account)
    await _listed(client, account, created["id"])
    for job in await queued_syncs(session, created["id"]):
        await session.delete(job)  # as if the sync had run
    await session.commit()
    assert await desired_versions(session, created["id"]) == [1, 1]

    url = f"/api/v1/connections/{created['id']}"
    response = await client.patch(url, json={"category_map": {"fruit": "100629"}}, headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json()["category_map"] == {"fruit": "100629"}
    assert response.json()["listings"] == {"pending": 1}
    assert await desired_versions(session, created["id"]) == [2, 2]
    assert len(await queued_syncs(session, created["id"])) == 1

    unchanged = await client.patch(url, json={"category_map": {"fruit": "100629"}}, headers=account.headers)
    assert unchanged.status_code == 200
    assert await desired_versions(session, created["id"]) == [2, 2]


async def test_a_paused_shop_is_left_alone_and_resuming_it_pushes_everything_again(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    account = await register(client)
    created = await connect(client, account)
    await _listed(client, account, created["id"])
    for job in await queued_syncs(session, created["id"]):
        await session.delete(job)
    await session.commit()
    url = f"/api/v1/connections/{created['id']}"

    paused = await client.patch(url, json={"status": "paused"}, headers=account.headers)
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert await desired_versions(session, created["id"]) == [1, 1]
    assert await queued_syncs(session, created["id"]) == []

    resumed = await client.patch(url, json={"status": "active"}, headers=account.headers)
    assert resumed.json()["status"] == "active"
    assert await desired_versions(session, created["id"]) == [2, 2]
    assert len(await queued_syncs(session, created["id"])) == 1


async def test_disconnecting_keeps_the_row_erases_the_credentials_and_can_be_undone(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    account = await register(client)
    creds = credentials("shop-ngat")
    created = await connect(client, account, credentials=creds)
    url = f"/api/v1/connections/{created['id']}"

    assert (await client.delete(url, headers=account.headers)).status_code == 204
    assert (await client.delete(url, headers=account.headers)).status_code == 204  # twice: a no-op
    gone = (await client.get(url, headers=account.headers)).json()
    assert (gone["status"], gone["credential_fields"], gone["credentials_version"]) == ("disconnected", [], 2)
    assert await raw_credentials(session, created["id"]) is None

    refused = await client.patch(url, json={"name": "Lại"}, headers=account.headers)
    assert refused.status_code == 409, refused.text
    assert "disconnected" in refused.json()["message"]

    back = await connect(client, account, credentials=creds, name="Shop trở lại")
    assert back["id"] == created["id"]
    assert (back["status"], back["name"], back["credentials_version"]) == ("active", "Shop trở lại", 3)
    assert back["credential_fields"] == ["access_token", "refresh_token", "shop_id", "webhook_secret"]


async def test_the_channels_list_declares_each_channels_limits(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await client.get("/api/v1/channels", headers=account.headers)
    assert response.status_code == 200, response.text
    (channel,) = response.json()
    assert channel["name"] == "reference"
    assert channel["display_name"] == "Reference market (in memory)"
    assert channel["stock_batch"] == {"max_size": 50, "per_item": False}
    assert channel["rate_limit"]["calls"] == 20
    assert channel["rate_limit"]["documented"] is False
    assert channel["rate_limit"]["source"]
    assert channel["limits"]["title_max"] == 120
    assert "delist" in channel["features"]
    assert channel["credential_fields"] == ["shop_id", "access_token", "refresh_token", "webhook_secret"]
    assert channel["setting_fields"] == ["store", "latency_ms"]


async def test_the_channels_list_needs_a_login(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/channels")).status_code == 401
