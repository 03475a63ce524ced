"""Every inbox query: the insert-or-nothing of a push, and the reads and resets of the admin API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclasses_field
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Text, and_, bindparam, or_, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.db import insert_or_nothing, table_of
from agrimarket.kit.pagination import Cursor
from agrimarket.models import ChannelConnection, ConnectionStatus, InboundEvent
from agrimarket.webhooks.schemas import InboxStatus


@dataclass(frozen=True)
class InboxRow:
    """An event with what its connection says about it: whose it is and which channel sent it."""

    event: InboundEvent
    organization_id: uuid.UUID
    channel: str


def _status_filter(status: InboxStatus) -> ColumnElement[bool]:
    if status is InboxStatus.handled:
        return InboundEvent.handled_at.is_not(None)
    if status is InboxStatus.failed:
        return and_(InboundEvent.handled_at.is_(None), InboundEvent.last_error.is_not(None))
    return and_(InboundEvent.handled_at.is_(None), InboundEvent.last_error.is_(None))


@dataclass(frozen=True, slots=True)
class PushTarget:
    """The columns of a shop that a push batch reads: whether it takes pushes, and what its verifying adapter is
    made of. Equal exactly when those columns are, so it keys the intake's adapters: a changed secret, setting or
    status is a new key, and the adapter is made again."""

    id: uuid.UUID
    organization_id: uuid.UUID
    channel: str
    status: ConnectionStatus
    external_shop_id: str | None
    credentials_encrypted: bytes | None = dataclasses_field(repr=False)
    settings_json: str | None  # the column's JSON text, decoded only when an adapter is made

    @property
    def settings(self) -> dict[str, Any]:
        decoded = json.loads(self.settings_json) if self.settings_json else None
        return decoded if isinstance(decoded, dict) else {}


_SHOPS = table_of(ChannelConnection).c
# Every push batch's query, built once (building a statement cost about as much as running it). Core rows of the
# few columns verification needs, not entities: loading a whole connection (17 columns, six of them datetimes,
# into the identity map) cost three times the query.
_PUSH_TARGETS = select(
    _SHOPS.id,
    _SHOPS.organization_id,
    _SHOPS.channel,
    _SHOPS.status,
    _SHOPS.external_shop_id,
    _SHOPS.credentials_encrypted,
    sql_cast(_SHOPS.settings, Text),
).where(_SHOPS.id.in_(bindparam("ids", expanding=True)))


class InboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def connection(self, connection_id: uuid.UUID) -> ChannelConnection | None:
        return await self.session.get(ChannelConnection, connection_id)

    async def push_targets(self, connection_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, PushTarget]:
        result = await self.session.execute(_PUSH_TARGETS, {"ids": list(connection_ids)})
        return {row[0]: PushTarget(*row) for row in result.all()}

    async def insert(self, values: dict[str, Any]) -> uuid.UUID | None:
        """Insert the event unless (source, external_id) is taken; the new row's id, or None for a duplicate."""
        return values["id"] if values["id"] in await self.insert_many([values]) else None

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
        """Insert each event (each with its own new ``id``) unless its (source, external_id) is taken, in one
        statement; the ids of the rows inserted. A second row with the same key in ``rows`` is a duplicate too.

        ``ON CONFLICT DO NOTHING`` on both dialects: concurrent deliveries of one push never raise, the second
        waits for the first's commit (PostgreSQL) or for the write lock (SQLite) and then inserts nothing."""
        if not rows:
            return set()
        made = await insert_or_nothing(
            self.session,
            InboundEvent,
            rows,
            conflict=[InboundEvent.source, InboundEvent.external_id],
            returning=InboundEvent.id,
        )
        return set(made)

    def _rows(self) -> Any:
        return select(InboundEvent, ChannelConnection.organization_id, ChannelConnection.channel).join(
            ChannelConnection, ChannelConnection.id == InboundEvent.connection_id
        )

    async def get(self, event_id: uuid.UUID) -> InboxRow | None:
        """The event, if it still belongs to a connection (a deleted shop's events belong to nobody)."""
        found = (await self.session.execute(self._rows().where(InboundEvent.id == event_id))).one_or_none()
        return InboxRow(found[0], found[1], found[2]) if found is not None else None

    async def page(
        self,
        *,
        organization_id: uuid.UUID | None,
        status: InboxStatus | None = None,
        pending: bool = False,
        connection_id: uuid.UUID | None = None,
        after: Cursor | None = None,
        limit: int = 50,
    ) -> list[InboxRow]:
        """Newest first, on (received_at, id). ``organization_id`` None: every organization's (operators).
        ``pending``: everything not handled yet, failed or not."""
        statement = self._rows()
        if organization_id is not None:
            statement = statement.where(ChannelConnection.organization_id == organization_id)
        if connection_id is not None:
            statement = statement.where(InboundEvent.connection_id == connection_id)
        if status is not None:
            statement = statement.where(_status_filter(status))
        if pending:
            statement = statement.where(InboundEvent.handled_at.is_(None))
        if after is not None:
            statement = statement.where(
                or_(
                    InboundEvent.received_at < after.created_at,
                    and_(InboundEvent.received_at == after.created_at, InboundEvent.id < after.id),
                )
            )
        statement = statement.order_by(InboundEvent.received_at.desc(), InboundEvent.id.desc()).limit(limit)
        return [InboxRow(event, org_id, channel) for event, org_id, channel in await self.session.execute(statement)]

    async def reopen(self, event_id: uuid.UUID) -> bool:
        """Make the event unhandled again (its attempts stay, as its history)."""
        result = cast(
            CursorResult[Any],
            await self.session.execute(
                update(InboundEvent)
                .where(InboundEvent.id == event_id)
                .values(handled_at=None, last_error=None)
                .execution_options(synchronize_session=False)
            ),
        )
        return bool(result.rowcount)

    async def refresh(self, event: InboundEvent) -> None:
        await self.session.refresh(event)
