"""The operators' ``agrimarket inbox list|replay``: every organization's pushes, outside any request."""

from __future__ import annotations

import uuid

from agrimarket.config import Settings
from agrimarket.db import create_engine, make_sessionmaker, reader, transaction
from agrimarket.webhooks.repository import InboxRepository, InboxRow
from agrimarket.webhooks.service import InboxService


async def list_events(settings: Settings, *, pending: bool = False, limit: int = 50) -> list[InboxRow]:
    """Newest first; ``pending``: only those not handled yet (waiting or failed)."""
    engine = create_engine(settings)
    try:
        async with transaction(make_sessionmaker(reader(engine))) as session:
            return await InboxService(InboxRepository(session)).page(
                None, organization_id=None, pending=pending, limit=limit
            )
    finally:
        await engine.dispose()


async def replay_event(settings: Settings, event_id: uuid.UUID) -> InboxRow:
    """As the API's replay; raises NotFound. Workers on PostgreSQL wake through NOTIFY, others poll."""
    engine = create_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            return await InboxService(InboxRepository(session)).replay(None, event_id)
    finally:
        await engine.dispose()
