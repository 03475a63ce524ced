"""What the reference marketplace keeps for one shop, and where it keeps it: in memory, or in a JSON file shared
by every process that names the same file (read and written under an ``fcntl`` lock, replaced atomically so a
process killed mid-write leaves the previous state)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pydantic import TypeAdapter

DEFAULT_WEBHOOK_SECRET = "reference-webhook-secret"  # noqa: S105 - the reference market's published test secret


@dataclass
class Sku:
    external_sku_id: str
    sku: str  # the seller's SKU (ours)
    name: str
    price_vnd: int
    stock: int
    weight_grams: int


@dataclass
class Item:
    external_item_id: str
    title: str
    description: str
    category: str | None
    attributes: dict[str, str]
    image_ids: list[str]
    skus: dict[str, Sku]  # by external_sku_id
    status: str = "live"  # or "unlisted"


@dataclass
class OrderLine:
    line_id: str
    sku: str
    name: str
    quantity: int
    unit_price_vnd: int
    external_item_id: str | None = None
    external_sku_id: str | None = None


@dataclass
class Order:
    external_id: str
    status: str  # the platform's word: see ``market.ORDER_STATUSES``
    created_at: datetime
    updated_at: datetime
    lines: list[OrderLine]
    shipping_fee_vnd: int = 0
    buyer_name: str | None = None
    tracking_number: str | None = None
    carrier: str | None = None
    cancel_reason: str | None = None
    version: int = 1  # bumped on every change: a webhook's event id, so a redelivery keeps its id

    @property
    def total_vnd(self) -> int:
        return sum(line.quantity * line.unit_price_vnd for line in self.lines) + self.shipping_fee_vnd


@dataclass
class Call:
    """One API call as the marketplace saw it. ``started``/``ended`` are ``time.monotonic()`` (system-wide on
    Linux, so comparable across processes)."""

    op: str
    size: int
    item_ids: list[str]
    started: float
    ended: float
    outcome: str  # "ok", "partial", "rate_limited", "retryable", "auth_expired", "rejected", "not_found", …


@dataclass
class InFlight:
    pid: int
    call_id: str
    op: str
    started: float


@dataclass
class TitleRule:
    text: str
    message: str


@dataclass
class ShopState:
    shop_id: str
    items: dict[str, Item] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # content hash → image id
    orders: dict[str, Order] = field(default_factory=dict)
    # None until the first call: the shop trusts the tokens it first sees (the authorisation that issued them).
    access_token: str | None = None
    refresh_token: str | None = None
    used_refresh_tokens: list[str] = field(default_factory=list)
    token_expired: bool = False
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    banned_titles: list[TitleRule] = field(default_factory=list)
    latency: float = 0.0
    calls: list[Call] = field(default_factory=list)
    in_flight: list[InFlight] = field(default_factory=list)
    max_in_flight_seen: int = 0
    rate_tat: float = 0.0  # GCRA's theoretical arrival time, monotonic seconds
    next_id: int = 100_001

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


class Store(Protocol):
    def read(self) -> ShopState: ...

    def write(self) -> AbstractContextManager[ShopState]: ...


class MemoryStore:
    def __init__(self, shop_id: str) -> None:
        self.state = ShopState(shop_id)

    def read(self) -> ShopState:
        return self.state

    @contextmanager
    def write(self) -> Iterator[ShopState]:
        yield self.state


_SHOPS = TypeAdapter(dict[str, ShopState])


class FileStore:
    """Every shop of one file; each read and each write takes the lock, so processes see one marketplace. A write
    that raises is not saved."""

    def __init__(self, path: Path, shop_id: str) -> None:
        self.path = path
        self.shop_id = shop_id
        self._lock_path = path.with_name(path.name + ".lock")

    @contextmanager
    def _locked(self, mode: int) -> Iterator[dict[str, ShopState]]:
        with self._lock_path.open("a") as lock:
            fcntl.flock(lock, mode)
            try:
                yield _SHOPS.validate_json(self.path.read_bytes()) if self.path.exists() else {}
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> ShopState:
        with self._locked(fcntl.LOCK_SH) as shops:
            return shops.get(self.shop_id) or ShopState(self.shop_id)

    @contextmanager
    def write(self) -> Iterator[ShopState]:
        with self._locked(fcntl.LOCK_EX) as shops:
            state = shops.setdefault(self.shop_id, ShopState(self.shop_id))
            yield state
            temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            temporary.write_bytes(_SHOPS.dump_json(shops))
            os.replace(temporary, self.path)
