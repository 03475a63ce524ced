"""The reference channel's adapter: the whole port, spoken to a :class:`~.market.Shop` instead of over HTTP."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from agrimarket.channels.base import (
    BatchResult,
    Capabilities,
    ChannelOrder,
    ChannelOrderLine,
    ConnectionInfo,
    EventKind,
    ListingDraft,
    OrderPage,
    PriceUpdate,
    PublishResult,
    Shipment,
    StockRef,
    StockUpdate,
    WebhookEvent,
)
from agrimarket.channels.errors import AuthExpired, InvalidSignature, MalformedEvent
from agrimarket.channels.reference import operations
from agrimarket.channels.reference.market import SIGNATURE_HEADER, ReferenceMarket, Shop, refresh_tokens, signature
from agrimarket.channels.reference.schemas import ReferenceCredentials, ReferenceSettings
from agrimarket.channels.reference.state import Order, ShopState
from agrimarket.models.orders import OrderStatus

T = TypeVar("T")

ORDER_STATUS = {
    "UNPAID": OrderStatus.unpaid,
    "READY_TO_SHIP": OrderStatus.ready_to_ship,
    "SHIPPED": OrderStatus.shipped,
    "TO_CONFIRM_RECEIVE": OrderStatus.delivered,
    "COMPLETED": OrderStatus.completed,
    "CANCELLED": OrderStatus.cancelled,
    "TO_RETURN": OrderStatus.returned,
}


def channel_order(order: Order) -> ChannelOrder:
    return ChannelOrder(
        external_id=order.external_id,
        status=ORDER_STATUS[order.status],
        platform_status=order.status,
        created_at=order.created_at,
        updated_at=order.updated_at,
        lines=[
            ChannelOrderLine(
                external_line_id=line.line_id,
                sku=line.sku,
                quantity=line.quantity,
                unit_price_vnd=line.unit_price_vnd,
                external_item_id=line.external_item_id,
                external_sku_id=line.external_sku_id,
                name=line.name,
            )
            for line in order.lines
        ],
        total_vnd=order.total_vnd,
        shipping_fee_vnd=order.shipping_fee_vnd,
        buyer_name=order.buyer_name,
        raw={"order_sn": order.external_id, "status": order.status, "tracking_number": order.tracking_number},
    )


class ReferenceAdapter:
    def __init__(self, capabilities: Capabilities, connection: ConnectionInfo) -> None:
        self._capabilities = capabilities
        self._credentials = dict(connection.credentials)
        try:
            # Unreadable credentials are a shop to connect again, said on the first call, not a crash here.
            self._secret: str | None = ReferenceCredentials.model_validate(self._credentials).webhook_secret
        except ValidationError:
            self._secret = None
        settings = ReferenceSettings.model_validate(connection.settings or {})
        self._latency = settings.latency_ms / 1000
        self.shop_id = connection.external_shop_id or str(self._credentials.get("shop_id") or "")
        self.shop: Shop = ReferenceMarket.shop(self.shop_id, store=settings.store)

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def credentials(self) -> Mapping[str, Any]:
        """What this adapter calls with: as connected, or as its last refresh left them."""
        return dict(self._credentials)

    async def _call(
        self,
        op: str,
        apply: Callable[[ShopState], T],
        *,
        size: int = 1,
        item_ids: Sequence[str] = (),
        check_token: bool = True,
    ) -> T:
        if self._secret is None or not self.shop_id:
            raise AuthExpired("The shop's credentials are incomplete: connect it again.", code="credentials_invalid")
        return await self.shop.call(
            op,
            apply,
            credentials=self._credentials,
            rate_limit=self._capabilities.rate_limit,
            size=size,
            item_ids=item_ids,
            latency=self._latency,
            check_token=check_token,
        )

    async def publish(self, draft: ListingDraft) -> PublishResult:
        touched: list[str] = []
        return await self._call(
            "publish",
            lambda state: operations.publish(self.shop, state, draft, self._capabilities, touched),
            size=len(draft.variants),
            item_ids=touched,
        )

    async def set_stock(self, updates: Sequence[StockUpdate]) -> BatchResult:
        return await self._call(
            "set_stock",
            lambda state: operations.set_stock(state, updates, self._capabilities),
            size=len(updates),
            item_ids=sorted({update.external_item_id for update in updates}),
        )

    async def set_prices(self, updates: Sequence[PriceUpdate]) -> BatchResult:
        return await self._call(
            "set_prices",
            lambda state: operations.set_prices(state, updates, self._capabilities),
            size=len(updates),
            item_ids=sorted({update.external_item_id for update in updates}),
        )

    async def delist(self, external_item_id: str) -> None:
        await self._call(
            "delist",
            lambda state: operations.delist(state, external_item_id, self._capabilities),
            item_ids=[external_item_id],
        )

    async def read_stock(self, refs: Sequence[StockRef]) -> Mapping[StockRef, int]:
        def shown(state: ShopState) -> dict[StockRef, int]:
            found: dict[StockRef, int] = {}
            for item_id, sku_id in refs:
                item = state.items.get(item_id)
                sku = item.skus.get(sku_id) if item is not None else None
                if sku is not None:
                    found[(item_id, sku_id)] = sku.stock
            return found

        return await self._call("read_stock", shown, size=len(refs), item_ids=sorted({item_id for item_id, _ in refs}))

    async def list_orders(self, *, since: datetime, until: datetime, cursor: str | None = None) -> OrderPage:
        return await self._call(
            "list_orders", lambda state: operations.list_orders(state, since, until, cursor, self._capabilities)
        )

    async def get_orders(self, external_ids: Sequence[str]) -> Sequence[ChannelOrder]:
        def found(state: ShopState) -> list[ChannelOrder]:
            return [channel_order(state.orders[i]) for i in external_ids if i in state.orders]

        return await self._call("get_orders", found, size=len(external_ids))

    async def ship(self, external_order_id: str, shipment: Shipment) -> None:
        await self._call("ship", lambda state: operations.ship(state, external_order_id, shipment, self._capabilities))

    async def cancel(self, external_order_id: str, reason: str) -> None:
        await self._call(
            "cancel", lambda state: operations.cancel(state, external_order_id, reason, self._capabilities)
        )

    def parse_webhook(self, *, url: str, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        given = next((value for key, value in headers.items() if key.lower() == SIGNATURE_HEADER.lower()), None)
        if given is None or self._secret is None:
            raise InvalidSignature(f"The push carries no {SIGNATURE_HEADER} header.", code="signature_missing")
        if not hmac.compare_digest(given.strip().encode(), signature(self._secret, body).encode()):
            raise InvalidSignature("The push's signature does not match its body.", code="signature_invalid")
        try:
            payload = json.loads(body)
            event_id = str(payload["event_id"])
            kind = payload["type"]
            occurred = datetime.fromtimestamp(float(payload["timestamp"]), UTC)
        except (ValueError, TypeError, KeyError) as exc:
            raise MalformedEvent(f"The push's body cannot be read: {exc}", code="body_invalid") from exc
        if payload.get("shop_id") != self.shop_id:
            raise MalformedEvent("The push is for another shop.", code="shop_mismatch")
        if kind == "order_status":
            if not payload.get("order_id"):
                raise MalformedEvent("An order push without an order id.", code="body_invalid")
            return WebhookEvent(event_id, EventKind.order, [str(payload["order_id"])], occurred, payload)
        return WebhookEvent(event_id, EventKind.other, (), occurred, payload)

    async def refresh_credentials(self) -> Mapping[str, Any]:
        fresh = await self._call("refresh", lambda state: refresh_tokens(state, self._credentials), check_token=False)
        self._credentials = dict(fresh)
        return fresh
