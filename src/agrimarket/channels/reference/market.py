"""The reference marketplace: shops that behave like a strict real platform, and the handles tests steer them by.

Every adapter call goes through :meth:`Shop.call`, which does what a platform's front door does: enforce the shop's
rate limit (GCRA over the declared calls, period and burst), count the call in flight, wait the shop's latency,
fire an injected fault, check the access token, then apply the operation and log it.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from agrimarket.channels.base import BatchResult, ImageRef, RateLimit
from agrimarket.channels.errors import (
    AuthExpired,
    ChannelError,
    ChannelNotFound,
    RateLimited,
    Rejected,
    Retryable,
)
from agrimarket.channels.reference.state import (
    Call,
    FileStore,
    InFlight,
    Item,
    MemoryStore,
    Order,
    OrderLine,
    ShopState,
    Store,
    TitleRule,
)

T = TypeVar("T")
Fault = ChannelError | Callable[[], ChannelError]

OPS = frozenset(
    (
        "publish",
        "upload_image",
        "set_stock",
        "set_prices",
        "delist",
        "list_orders",
        "get_orders",
        "ship",
        "cancel",
        "refresh",
    )
)
ORDER_STATUSES = ("UNPAID", "READY_TO_SHIP", "SHIPPED", "TO_CONFIRM_RECEIVE", "COMPLETED", "CANCELLED", "TO_RETURN")
SIGNATURE_HEADER = "X-Reference-Signature"
# Our limiter and the shop's clock never agree to the microsecond; a real platform allows some slack too.
RATE_TOLERANCE = 0.2  # of one interval


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def outcome_of(error: BaseException) -> str:
    for kind, word in (
        (RateLimited, "rate_limited"),
        (Retryable, "retryable"),
        (AuthExpired, "auth_expired"),
        (Rejected, "rejected"),
        (ChannelNotFound, "not_found"),
    ):
        if isinstance(error, kind):
            return word
    return "error"


@dataclass(frozen=True)
class WebhookPush:
    """A push as the platform would send it: give ``headers`` and ``body`` to ``parse_webhook`` or the endpoint."""

    headers: dict[str, str]
    body: bytes


@dataclass
class _Injection:
    op: str
    fault: Fault
    times: int


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _admit(state: ShopState, limit: RateLimit, now: float) -> float | None:
    """GCRA: None if the call may go now (and it is counted), else the seconds until it may."""
    interval = limit.interval
    allowance = (limit.burst - 1) * interval + RATE_TOLERANCE * interval
    tat = max(state.rate_tat, now)
    if tat - now > allowance:
        return tat - allowance - now
    state.rate_tat = tat + interval
    return None


class Shop:
    """One shop on the reference marketplace. Read its state through the properties (in file mode each read sees
    the file as it is now); change it through the methods, which every process sharing the store then sees.
    ``gate`` and injected faults belong to this process only."""

    def __init__(self, shop_id: str, store: Store) -> None:
        self.shop_id = shop_id
        self._store = store
        self.gate: asyncio.Event | None = None  # not None: every call, counted in flight, waits until it is set
        self._injections: list[_Injection] = []

    # -- what tests read ------------------------------------------------------------------------------------

    @property
    def state(self) -> ShopState:
        return self._store.read()

    @property
    def items(self) -> dict[str, Item]:
        return self.state.items

    @property
    def images(self) -> dict[str, str]:
        return self.state.images

    @property
    def orders(self) -> dict[str, Order]:
        return self.state.orders

    @property
    def calls(self) -> list[Call]:
        return self.state.calls

    @property
    def in_flight(self) -> int:
        """Calls being served now, by processes still alive (a killed worker's call is not in flight)."""
        return sum(1 for entry in self.state.in_flight if _alive(entry.pid))

    @property
    def max_in_flight_seen(self) -> int:
        return self.state.max_in_flight_seen

    @property
    def access_token(self) -> str | None:
        return self.state.access_token

    @property
    def refresh_token(self) -> str | None:
        return self.state.refresh_token

    @property
    def latency(self) -> float:
        return self.state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        with self.edit() as state:
            state.latency = seconds

    # -- what tests do ---------------------------------------------------------------------------------------

    def edit(self) -> AbstractContextManager[ShopState]:
        """Change the state by hand (``with shop.edit() as state: ...``); saved when the block ends."""
        return self._store.write()

    def inject(self, op: str, error: Fault, *, times: int = 1) -> None:
        """The next ``times`` calls of ``op`` (or of any op, for ``"*"``) raise ``error`` (an instance, or a
        factory called each time). Injections queue: the first injected is the first raised."""
        if op != "*" and op not in OPS:
            raise ValueError(f"unknown op {op!r}; one of {', '.join(sorted(OPS))} or '*'")
        if times < 1:
            raise ValueError("a fault is injected for at least one call")
        self._injections.append(_Injection(op, error, times))

    def reject_titles_containing(self, text: str, message: str) -> None:
        """Publishing a title that contains ``text`` (case-insensitive) is refused with ``message``."""
        with self.edit() as state:
            state.banned_titles.append(TitleRule(text, message))

    def expire_token(self) -> None:
        """The current access token stops working until the adapter refreshes it."""
        with self.edit() as state:
            state.token_expired = True

    def delete_item(self, external_item_id: str) -> None:
        """What a seller deleting the item in the platform's own seller centre does."""
        with self.edit() as state:
            del state.items[external_item_id]

    def clear_calls(self) -> None:
        """Forget the call log and the most calls seen in flight at once (say, after setting a test up)."""
        with self.edit() as state:
            state.calls.clear()
            state.max_in_flight_seen = len(state.in_flight)

    def place_order(
        self,
        sku: str,
        quantity: int = 1,
        *,
        also: Sequence[tuple[str, int]] = (),
        buyer_name: str | None = "Nguyễn Thị Lan",
        shipping_fee_vnd: int = 30_000,
        unit_price_vnd: int | None = None,
        paid: bool = True,
        at: datetime | None = None,
    ) -> Order:
        """A buyer's order for ``quantity`` of our ``sku`` (and the ``also`` lines). It takes the platform's stock
        (never below zero) and is never refused: the platform may sell what we no longer have. A SKU the shop
        does not list still makes a line (sold from the seller centre, say) at ``unit_price_vnd``."""
        when = at or datetime.now(UTC)
        with self.edit() as state:
            number = state.new_id()
            lines = [
                self._line(state, f"{number}-{i}", line_sku, line_quantity, unit_price_vnd)
                for i, (line_sku, line_quantity) in enumerate([(sku, quantity), *also], start=1)
            ]
            order = Order(
                external_id=f"RF{number}",
                status="READY_TO_SHIP" if paid else "UNPAID",
                created_at=when,
                updated_at=when,
                lines=lines,
                shipping_fee_vnd=shipping_fee_vnd,
                buyer_name=buyer_name,
            )
            state.orders[order.external_id] = order
        return copy.deepcopy(order)

    @staticmethod
    def _line(state: ShopState, line_id: str, sku: str, quantity: int, unit_price_vnd: int | None) -> OrderLine:
        for item in state.items.values():
            for found in item.skus.values():
                if found.sku == sku:
                    found.stock = max(found.stock - quantity, 0)
                    return OrderLine(
                        line_id,
                        sku,
                        f"{item.title} - {found.name}",
                        quantity,
                        unit_price_vnd or found.price_vnd,
                        item.external_item_id,
                        found.external_sku_id,
                    )
        return OrderLine(line_id, sku, sku, quantity, unit_price_vnd or 10_000)

    def set_order_status(self, external_id: str, status: str, *, at: datetime | None = None) -> Order:
        """What the buyer, the carrier or the platform does to an order (``status`` in platform words)."""
        if status not in ORDER_STATUSES:
            raise ValueError(f"unknown order status {status!r}; one of {', '.join(ORDER_STATUSES)}")
        with self.edit() as state:
            order = state.orders[external_id]
            order.status = status
            order.updated_at = at or datetime.now(UTC)
            order.version += 1
        return copy.deepcopy(order)

    def push_payload(self, order: Order | str) -> WebhookPush:
        """The signed push the platform sends when an order changes. The same order state gives the same event id
        (a redelivery), a later change a new one."""
        state = self.state
        current = state.orders[order if isinstance(order, str) else order.external_id]
        body = json.dumps(
            {
                "event_id": f"{current.external_id}.{current.version}",
                "shop_id": self.shop_id,
                "type": "order_status",
                "order_id": current.external_id,
                "status": current.status,
                "timestamp": current.updated_at.timestamp(),
            }
        ).encode()
        return WebhookPush({SIGNATURE_HEADER: signature(state.webhook_secret, body)}, body)

    # -- what the adapter calls ------------------------------------------------------------------------------

    async def call(
        self,
        op: str,
        apply: Callable[[ShopState], T],
        *,
        credentials: Mapping[str, Any],
        rate_limit: RateLimit,
        size: int = 1,
        item_ids: Sequence[str] = (),
        latency: float = 0.0,
        check_token: bool = True,
    ) -> T:
        """Serve one API call. ``apply`` checks everything before it changes anything: a call refused halfway
        would otherwise leave half its change behind."""
        call_id = uuid.uuid4().hex
        started = time.monotonic()
        with self._store.write() as state:
            state.in_flight = [entry for entry in state.in_flight if _alive(entry.pid)]
            wait = _admit(state, rate_limit, started)
            if wait is None:
                state.in_flight.append(InFlight(os.getpid(), call_id, op, started))
                state.max_in_flight_seen = max(state.max_in_flight_seen, len(state.in_flight))
            else:
                state.calls.append(Call(op, size, list(item_ids), started, started, "rate_limited"))
            delay = latency + state.latency
        if wait is not None:
            raise RateLimited(
                f"Too many requests for shop {self.shop_id}: at most {rate_limit.calls} per "
                f"{rate_limit.per_seconds:g} s.",
                retry_after=wait,
                code="too_many_requests",
                status=429,
            )
        try:
            if (gate := self.gate) is not None:
                await gate.wait()
            if delay > 0:
                await asyncio.sleep(delay)
        except BaseException:
            with self._store.write() as state:
                state.in_flight = [entry for entry in state.in_flight if entry.call_id != call_id]
                state.calls.append(Call(op, size, list(item_ids), started, time.monotonic(), "cancelled"))
            raise
        return self._serve(op, apply, call_id, started, credentials, size, item_ids, check_token)

    def _serve(
        self,
        op: str,
        apply: Callable[[ShopState], T],
        call_id: str,
        started: float,
        credentials: Mapping[str, Any],
        size: int,
        item_ids: Sequence[str],
        check_token: bool,
    ) -> T:
        error: Exception | None = None
        with self._store.write() as state:
            state.in_flight = [entry for entry in state.in_flight if entry.call_id != call_id]
            try:
                self.fire(op)
                if check_token:
                    _check_token(state, credentials)
                result = apply(state)
                outcome = "partial" if isinstance(result, BatchResult) and not result.ok else "ok"
            except Exception as exc:
                error, outcome = exc, outcome_of(exc)
            # Saved even when the call failed: the call log, the freed slot and whatever the platform did first.
            state.calls.append(Call(op, size, list(item_ids), started, time.monotonic(), outcome))
        if error is not None:
            raise error
        return result

    def fire(self, op: str) -> None:
        """Raise the next fault injected for ``op``, if any."""
        for injection in self._injections:
            if injection.op in (op, "*"):
                injection.times -= 1
                if injection.times <= 0:
                    self._injections.remove(injection)
                fault = injection.fault
                raise copy.copy(fault) if isinstance(fault, ChannelError) else fault()

    def upload_image(self, state: ShopState, image: ImageRef, item_ids: Sequence[str] = ()) -> str:
        """An image upload made while publishing: its own call in the log, one per content hash ever."""
        known = state.images.get(image.content_hash)
        if known is not None:
            return known
        started = time.monotonic()
        try:
            self.fire("upload_image")
            if not image.data:
                raise Rejected(
                    f"Image {image.content_hash[:12]} is empty.", code="image_invalid", status=400, field="images"
                )
        except ChannelError as exc:
            state.calls.append(Call("upload_image", 1, list(item_ids), started, time.monotonic(), outcome_of(exc)))
            raise
        image_id = f"img-{state.new_id()}"
        state.images[image.content_hash] = image_id
        state.calls.append(Call("upload_image", 1, list(item_ids), started, time.monotonic(), "ok"))
        return image_id


def _check_token(state: ShopState, credentials: Mapping[str, Any]) -> None:
    token = credentials.get("access_token")
    if state.access_token is None:
        state.access_token = token
        state.refresh_token = state.refresh_token or credentials.get("refresh_token")
    if state.token_expired or not token or token != state.access_token:
        raise AuthExpired("Invalid access_token: expired or revoked.", code="invalid_access_token", status=401)


def refresh_tokens(state: ShopState, credentials: Mapping[str, Any]) -> dict[str, Any]:
    """Trade the refresh token for a new pair. A refresh token works once: reusing one is refused."""
    given = credentials.get("refresh_token")
    if state.refresh_token is None:
        state.refresh_token = given
        state.access_token = state.access_token or credentials.get("access_token")
    if not given or given != state.refresh_token or given in state.used_refresh_tokens:
        raise AuthExpired("Invalid refresh_token: expired or already used.", code="invalid_refresh_token", status=401)
    state.used_refresh_tokens.append(given)
    state.access_token = f"at-{uuid.uuid4().hex[:16]}"
    state.refresh_token = f"rt-{uuid.uuid4().hex[:16]}"
    state.token_expired = False
    return {**credentials, "access_token": state.access_token, "refresh_token": state.refresh_token}


class ReferenceMarket:
    """Every shop of the reference marketplace in this process, by shop id (and store file, when given)."""

    _shops: ClassVar[dict[tuple[str, str | None], Shop]] = {}

    @classmethod
    def shop(cls, shop_id: str, *, store: str | os.PathLike[str] | None = None) -> Shop:
        """The shop, made on first use. With ``store`` its state lives in that JSON file, shared by processes."""
        path = os.path.abspath(store) if store is not None else None
        found = cls._shops.get((shop_id, path))
        if found is None:
            backing: Store = MemoryStore(shop_id) if path is None else FileStore(Path(path), shop_id)
            found = cls._shops[(shop_id, path)] = Shop(shop_id, backing)
        return found

    @classmethod
    def reset(cls) -> None:
        """Forget every shop of this process (store files are left as they are)."""
        cls._shops.clear()
