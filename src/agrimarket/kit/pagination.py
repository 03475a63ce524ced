"""Opaque cursors over (created_at, id): stable under inserts, no OFFSET scans."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel

from agrimarket.errors import Invalid

T = TypeVar("T")


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = json.dumps([self.created_at.isoformat(), str(self.id)]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        try:
            padded = value + "=" * (-len(value) % 4)
            created_at, id_ = json.loads(base64.urlsafe_b64decode(padded))
            return cls(datetime.fromisoformat(created_at), uuid.UUID(id_))
        except (ValueError, TypeError) as exc:
            raise Invalid("The page cursor is not valid; start again from the first page.", field="cursor") from exc


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None
