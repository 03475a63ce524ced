"""What the inbox API answers: one received push, its handling state, and its body as text."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class InboxStatus(StrEnum):
    """``unhandled``: waiting for the order pipeline; ``failed``: its last handling raised (``last_error``) and it
    is tried again; ``handled``: done."""

    unhandled = "unhandled"
    handled = "handled"
    failed = "failed"


class InboundEventOut(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    connection_id: uuid.UUID
    channel: str
    source: str
    external_id: str = Field(description="The push's identity on its channel: a redelivery has the same one.")
    event_type: str = Field(description="order, stock, listing, auth or other")
    order_ids: list[str] | None = Field(description="The orders the push names, read when it was verified.")
    status: InboxStatus
    received_at: datetime
    handled_at: datetime | None
    attempts: int
    last_error: str | None
    headers: dict[str, str] = Field(description="Only harmless headers (content type, user agent); never a signature.")
    body: str = Field(description="The raw body as UTF-8 text, cut at `body_truncated`.")
    body_size: int = Field(description="The raw body's size in bytes.")
    body_truncated: bool
