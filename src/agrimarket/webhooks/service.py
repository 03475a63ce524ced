"""The inbox's rules: verify a push with its shop's adapter, keep it once, and hand it to the order pipeline.

A push is a hint, not the truth: the handler (``orders.drain_inbox``, in ``agrimarket.orders``) re-fetches the
order from the marketplace before anything changes. So the inbox only has to be fast and idempotent: one row per
(source, external id) whatever the redeliveries, and a job for a new row only, in the same transaction. Never
commits; the request or the command owns the transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from agrimarket.accounts.permissions import Access
from agrimarket.channels.base import ChannelAdapter, ChannelPlugin, Feature, WebhookEvent
from agrimarket.channels.errors import AuthExpired, InvalidSignature, MalformedEvent
from agrimarket.channels.shop import ShopRecord, adapter_for, callback_url
from agrimarket.config import Settings
from agrimarket.errors import AgriMarketError, Conflict, NotFound
from agrimarket.kit.crypto import CredentialCipher
from agrimarket.kit.pagination import Cursor
from agrimarket.models import ConnectionStatus, Role, utcnow
from agrimarket.observability import counter
from agrimarket.orders.inbox import request_drain, request_drains
from agrimarket.webhooks.repository import InboxRepository, InboxRow, PushTarget
from agrimarket.webhooks.schemas import InboxStatus

# Marketplace pushes are a few hundred bytes; anything near this is not a push.
MAX_PUSH_BYTES = 256 * 1024
# The only request headers kept with an event: never the signature (Authorization) or anything like it.
SAFE_HEADERS = ("content-type", "user-agent")
_SOURCE_MAX, _EXTERNAL_ID_MAX, _EVENT_TYPE_MAX = 60, 200, 100

PUSHES = counter(
    "webhooks",
    "Marketplace pushes received, per channel and outcome (stored, duplicate, invalid_signature, malformed, "
    "not_found, too_large).",
    ["channel", "outcome"],
)


class InvalidPushSignature(AgriMarketError):
    status_code = 401
    code = "invalid_signature"


class MalformedPush(AgriMarketError):
    status_code = 400
    code = "malformed_event"


def source_for(channel: str, connection_id: uuid.UUID) -> str:
    """The inbox's dedupe namespace: one per connection, so two shops' pushes never collide."""
    # A connection id is unique on its own; a channel name long enough to overflow the column is cut.
    return f"{channel[: _SOURCE_MAX - 37]}:{connection_id}"


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value[:300] for name, value in ((k.lower(), v) for k, v in headers.items()) if name in SAFE_HEADERS}


def status_of(row: InboxRow) -> InboxStatus:
    if row.event.handled_at is not None:
        return InboxStatus.handled
    return InboxStatus.failed if row.event.last_error is not None else InboxStatus.unhandled


@dataclass(frozen=True)
class VerifiedPush:
    """A push whose signature verified, read by its channel's adapter, ready for the inbox."""

    connection_id: uuid.UUID
    organization_id: uuid.UUID
    channel: str
    event: WebhookEvent
    headers: dict[str, str]  # the safe subset only
    body: bytes


def receivable(target: PushTarget | None, channel: str) -> PushTarget:
    """The shop a push to ``/webhooks/{channel}/{id}`` is for; a disconnected shop's pushes have no home."""
    if target is None or target.channel != channel or target.status is ConnectionStatus.disconnected:
        raise NotFound("No connected shop receives pushes here.")
    return target


def push_adapter(
    connection: ShopRecord, plugin: ChannelPlugin, *, settings: Settings, http: httpx.AsyncClient
) -> ChannelAdapter:
    """The shop's adapter, to verify its pushes with. Raises NotFound where the channel sends no pushes or the shop
    has no readable secret to verify with."""
    if not plugin.capabilities.supports(Feature.webhooks):
        raise NotFound("This channel sends no pushes.")
    try:
        return adapter_for(connection, plugin, CredentialCipher(settings.encryption_keys), http, settings)
    except AuthExpired as exc:  # credentials unreadable: nothing to verify with
        raise NotFound("This shop has no secret to verify pushes with; connect it again.") from exc


def read_push(
    connection: ShopRecord,
    adapter: ChannelAdapter,
    *,
    settings: Settings,
    headers: Mapping[str, str],
    body: bytes,
) -> VerifiedPush:
    """Verify the push's signature with the shop's adapter and read it. The URL handed to the adapter is the
    configured callback URL, the one the marketplace signs (Shopee), never the request's own Host. Raises
    InvalidPushSignature, MalformedPush."""
    try:
        event = adapter.parse_webhook(url=callback_url(settings, connection) or "", headers=headers, body=body)
    except InvalidSignature as exc:
        raise InvalidPushSignature("The push's signature does not verify.", details={"reason": exc.code}) from exc
    except MalformedEvent as exc:
        raise MalformedPush(f"The push cannot be read: {exc.message}") from exc
    return VerifiedPush(
        connection_id=connection.id,
        organization_id=connection.organization_id,
        channel=connection.channel,
        event=event,
        headers=safe_headers(headers),
        body=body,
    )


def _external_id(value: str) -> str:
    # The column holds 200 characters; a longer id (none of today's adapters makes one) keeps its identity hashed.
    return value if len(value) <= _EXTERNAL_ID_MAX else f"sha256:{hashlib.sha256(value.encode()).hexdigest()}"


class InboxService:
    def __init__(self, repository: InboxRepository) -> None:
        self.repo = repository

    async def receive(self, push: VerifiedPush) -> uuid.UUID | None:
        """Keep the push once; queue its shop's drain only for a new row. The new event's id, or None for a
        duplicate. See :meth:`receive_many`."""
        return (await self.receive_many([push]))[0]

    async def receive_many(self, pushes: Sequence[VerifiedPush]) -> list[uuid.UUID | None]:
        """Keep each push once, in one statement; queue each shop's drain (``orders.drain_inbox``, deduplicated per
        shop) once, for the shops with a new row, in the same transaction. Per push, in order: the new event's id,
        or None for a duplicate (of a row already kept, or of an earlier push in ``pushes``)."""
        ids = [uuid.uuid4() for _push in pushes]
        rows = [
            {
                "id": event_id,
                "source": source_for(push.channel, push.connection_id),
                "external_id": _external_id(push.event.external_id),
                "connection_id": push.connection_id,
                "event_type": str(push.event.kind.value)[:_EVENT_TYPE_MAX],
                # Read now, while the signature is at hand: it is not kept, so the body cannot be verified again.
                "order_ids": [str(order_id) for order_id in push.event.order_ids],
                "headers": push.headers,
                "body": push.body,
                "received_at": utcnow(),
                "attempts": 0,
            }
            for push, event_id in zip(pushes, ids, strict=True)
        ]
        inserted = await self.repo.insert_many(rows)
        new = [push for push, event_id in zip(pushes, ids, strict=True) if event_id in inserted]
        await request_drains(self.repo.session, {push.connection_id: push.organization_id for push in new})
        return [event_id if event_id in inserted else None for event_id in ids]

    async def page(
        self,
        access: Access | None,
        *,
        organization_id: uuid.UUID | None,
        status: InboxStatus | None = None,
        pending: bool = False,
        connection_id: uuid.UUID | None = None,
        after: Cursor | None = None,
        limit: int = 50,
    ) -> list[InboxRow]:
        """With ``access``: one organization's events, for its members. Without: every event (operators)."""
        if access is not None:
            if organization_id is None:
                raise NotFound("Organization not found.")
            access.require(organization_id, Role.member)
        return await self.repo.page(
            organization_id=organization_id,
            status=status,
            pending=pending,
            connection_id=connection_id,
            after=after,
            limit=limit,
        )

    async def get(self, access: Access | None, event_id: uuid.UUID, at_least: Role = Role.member) -> InboxRow:
        row = await self.repo.get(event_id)
        if row is None or (access is not None and not access.can_reach(row.organization_id)):
            raise NotFound("Inbound event not found.")
        if access is not None:
            access.require(row.organization_id, at_least)
        return row

    async def replay(self, access: Access | None, event_id: uuid.UUID) -> InboxRow:
        """Hand the event to the order pipeline again: unhandled, no error, and its connection's drain queued.
        Safe on a handled event too: handling re-fetches the order and changes state at most once."""
        row = await self.get(access, event_id, Role.admin)
        if row.event.connection_id is None:  # pragma: no cover - get() finds events with a connection only
            raise Conflict("This event's shop is gone; there is nothing to handle it with.")
        await self.repo.reopen(row.event.id)
        await request_drain(self.repo.session, row.event.connection_id, row.organization_id)
        await self.repo.refresh(row.event)
        return row
