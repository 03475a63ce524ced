"""One connected shop as code outside the sync engine speaks to it: the webhook inbox, the order pipeline,
reconciliation and fulfilment.

:func:`adapter_for` builds a connection's adapter (credentials decrypted, settings, the callback URL its pushes are
signed over). :class:`ShopClient` makes calls through it and mends an expired token the way the sync engine does,
under the same per-shop lease, so a single-use refresh token (Shopee) is never spent twice, whichever process or
job notices the expiry first.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.base import ChannelAdapter, ChannelPlugin, ConnectionInfo
from agrimarket.channels.errors import AuthExpired, Retryable
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.kit.crypto import CredentialCipher
from agrimarket.models import ChannelConnection, utcnow
from agrimarket.observability import get_logger
from agrimarket.sync.repository import SyncRepository

log = get_logger(__name__)

T = TypeVar("T")
WEBHOOK_PATH = "/webhooks/{channel}/{connection_id}"
REFRESH_LEASE = timedelta(seconds=30)


class ShopRecord(Protocol):
    """What an adapter is made of: a stored connection, or the few columns of it a push batch reads
    (:class:`agrimarket.webhooks.repository.PushTarget`)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def organization_id(self) -> uuid.UUID: ...
    @property
    def channel(self) -> str: ...
    @property
    def external_shop_id(self) -> str | None: ...
    @property
    def credentials_encrypted(self) -> bytes | None: ...
    @property
    def settings(self) -> Mapping[str, Any]: ...


def webhook_path(channel: str, connection_id: uuid.UUID) -> str:
    return WEBHOOK_PATH.format(channel=channel, connection_id=connection_id)


def callback_url(settings: Settings, connection: ShopRecord) -> str | None:
    """Where the marketplace sends this shop's pushes (register it in the marketplace's console). Shopee signs it
    as part of each push, so it is built from the configured public address, never from a request's Host header."""
    base = settings.public_url
    return f"{base}{webhook_path(connection.channel, connection.id)}" if base else None


def adapter_for(
    connection: ShopRecord,
    plugin: ChannelPlugin,
    cipher: CredentialCipher,
    http: httpx.AsyncClient,
    settings: Settings,
) -> ChannelAdapter:
    """The connection's adapter. Unreadable credentials (keys rotated away, a corrupted row) raise
    :class:`AuthExpired`: only a new authorisation mends them."""
    try:
        credentials = cipher.decrypt_json(connection.credentials_encrypted) if connection.credentials_encrypted else {}
    except ValueError as exc:
        raise AuthExpired(str(exc)) from exc
    info = ConnectionInfo(
        connection_id=connection.id,
        organization_id=connection.organization_id,
        external_shop_id=connection.external_shop_id,
        credentials=credentials,
        settings=(connection.settings or {}).get("channel") or {},
        callback_url=callback_url(settings, connection),
    )
    return plugin.adapter(info, http)


class ShopBusy(Retryable):
    """Another worker holds the shop's lease (it may be refreshing the token right now): try again shortly."""


class ShopClient:
    """Calls to one shop outside the sync engine. An expired token is refreshed once, under the shop's lease, and
    the call made again; if another process refreshed meanwhile, its credentials are used instead."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        connection: ChannelConnection,
        *,
        channels: ChannelRegistry,
        http: httpx.AsyncClient,
        owner: str,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.connection = connection
        self.plugin = channels.get(connection.channel)
        self.http = http
        self.owner = owner[:100]
        self.cipher = CredentialCipher(settings.encryption_keys)
        self.adapter = adapter_for(connection, self.plugin, self.cipher, http, settings)

    async def call(self, fn: Callable[[ChannelAdapter], Awaitable[T]]) -> T:
        try:
            return await fn(self.adapter)
        except AuthExpired:
            await self._refresh()
        return await fn(self.adapter)

    async def _reload(self, session: AsyncSession) -> ChannelConnection:
        current = await SyncRepository(session).connection(self.connection.id)
        if current is None:
            raise AuthExpired("The shop was disconnected.")
        return current

    async def _refresh(self) -> None:
        seen = self.connection.credentials_version
        async with transaction(self.sessionmaker) as session:
            current = await self._reload(session)
        if current.credentials_version != seen:  # refreshed (or reconnected) elsewhere since we read it
            self._use(current)
            return
        now = utcnow()
        async with transaction(self.sessionmaker) as session:
            leased = await SyncRepository(session).acquire_lease(
                self.connection.id, self.owner, now, now + REFRESH_LEASE
            )
        if leased is None:
            raise ShopBusy("The shop is busy with another worker; its token may be being refreshed.")
        try:
            if leased.credentials_version != seen:
                self._use(leased)
                return
            credentials = dict(await self.adapter.refresh_credentials())
            encrypted = self.cipher.encrypt_json(credentials)
            async with transaction(self.sessionmaker) as session:
                saved = await SyncRepository(session).save_credentials(self.connection.id, encrypted, seen, None)
            if not saved:  # pragma: no cover - the lease makes this a narrow race with a reconnect by hand
                raise Retryable("The shop's credentials changed while they were being refreshed.")
            leased.credentials_encrypted = encrypted
            leased.credentials_version = seen + 1
            self._use(leased)
            log.info("shop_token_refreshed", connection_id=str(self.connection.id), owner=self.owner)
        finally:
            async with transaction(self.sessionmaker) as session:
                await SyncRepository(session).release_lease(self.connection.id, self.owner)

    def _use(self, connection: ChannelConnection) -> None:
        self.connection = connection
        self.adapter = adapter_for(connection, self.plugin, self.cipher, self.http, self.settings)
