"""Lazada's orders read into the port's: statuses, money as integer VND, times, one line per SKU."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from agrimarket.channels.base import ChannelOrder, ChannelOrderLine
from agrimarket.channels.errors import MalformedEvent
from agrimarket.kit.text import clean_line
from agrimarket.models.orders import OrderStatus

# Lazada keeps a status per order item; the order's ``statuses`` lists them. pending/topack/repacked: paid, not yet
# packed; packed/ready_to_ship/toship: the seller has done its part, the parcel waits for pickup. "failed" is a
# failed delivery (the parcel comes back); "lost" is a parcel lost by the carrier: the sale did not happen and the
# goods do not come back, so it counts as cancelled.
STATUS: Mapping[str, OrderStatus] = {
    "unpaid": OrderStatus.unpaid,
    "pending": OrderStatus.paid,
    "topack": OrderStatus.paid,
    "repacked": OrderStatus.paid,
    "packed": OrderStatus.ready_to_ship,
    "ready_to_ship": OrderStatus.ready_to_ship,
    "toship": OrderStatus.ready_to_ship,
    "shipping": OrderStatus.shipped,
    "shipped": OrderStatus.shipped,
    "delivered": OrderStatus.delivered,
    "confirmed": OrderStatus.completed,
    "canceled": OrderStatus.cancelled,
    "returned": OrderStatus.returned,
    "failed": OrderStatus.returned,
    "lost": OrderStatus.cancelled,
}
_PROGRESS = [
    OrderStatus.unpaid,
    OrderStatus.paid,
    OrderStatus.ready_to_ship,
    OrderStatus.shipped,
    OrderStatus.delivered,
    OrderStatus.completed,
]
_ENDED = frozenset({OrderStatus.cancelled, OrderStatus.returned})
ENDED_ITEM_STATUSES = frozenset(word for word, status in STATUS.items() if status in _ENDED)


def order_status(statuses: Iterable[str]) -> OrderStatus:
    """One status for the whole order: its least advanced live item; cancelled or returned once every item is.
    An item status Lazada adds later reads as paid (still ours to handle), never as an error."""
    mapped = [STATUS.get(word, OrderStatus.paid) for word in statuses]
    live = [status for status in mapped if status not in _ENDED]
    if live:
        return min(live, key=_PROGRESS.index)
    return OrderStatus.returned if OrderStatus.returned in mapped else OrderStatus.cancelled


def vnd(value: Any) -> int:
    """Lazada sends money as decimal strings ("125000.00"); the dong has no minor unit, so round to whole VND."""
    if value in (None, ""):
        return 0
    try:
        amount = Decimal(str(value).replace(",", ""))
    except InvalidOperation as exc:
        raise MalformedEvent(f"Lazada sent an unreadable amount: {value!r}", code="amount_invalid") from exc
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def lazada_time(value: Any) -> datetime:
    """Lazada's order times: "2024-05-01 09:30:00 +0700" (ISO 8601 accepted as well)."""
    text = str(value).strip()
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise MalformedEvent(f"Lazada sent an unreadable time: {value!r}", code="time_invalid") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def order_lines(items: Sequence[Mapping[str, Any]], *, ended_order: bool) -> list[ChannelOrderLine]:
    """Lazada has one order item per unit bought; we count them into one line per SKU. While the order lives, its
    cancelled or returned items are left out (those units are no longer sold)."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        if not ended_order and str(item.get("status", "")) in ENDED_ITEM_STATUSES:
            continue
        key = str(item.get("sku_id") or item.get("sku") or item.get("order_item_id"))
        grouped.setdefault(key, []).append(item)
    lines: list[ChannelOrderLine] = []
    for group in grouped.values():
        first = min(group, key=lambda item: int(item.get("order_item_id", 0)))
        total = sum(vnd(item.get("item_price")) for item in group)
        lines.append(
            ChannelOrderLine(
                external_line_id=str(first["order_item_id"]),
                sku=clean_line(str(first["sku"])) if first.get("sku") else None,
                quantity=len(group),
                unit_price_vnd=total // len(group),
                external_item_id=str(first["product_id"]) if first.get("product_id") else None,
                external_sku_id=str(first["sku_id"]) if first.get("sku_id") else None,
                name=clean_line(str(first.get("name") or "")),
            )
        )
    return lines


def channel_order(order: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> ChannelOrder:
    try:
        statuses = [str(word) for word in order.get("statuses") or [item.get("status", "") for item in items]]
        status = order_status(statuses)
        buyer = " ".join(
            part for part in (order.get("customer_first_name"), order.get("customer_last_name")) if part
        ).strip()
        total = vnd(order.get("price")) + vnd(order.get("shipping_fee")) - abs(vnd(order.get("voucher")))
        return ChannelOrder(
            external_id=str(order["order_id"]),
            status=status,
            platform_status=",".join(dict.fromkeys(statuses)),
            created_at=lazada_time(order["created_at"]),
            updated_at=lazada_time(order["updated_at"]),
            lines=order_lines(items, ended_order=status in _ENDED),
            total_vnd=max(total, 0),
            shipping_fee_vnd=vnd(order.get("shipping_fee")),
            buyer_name=clean_line(buyer) or None,
            raw={"order": dict(order), "items": [dict(item) for item in items]},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedEvent(f"Lazada sent an order we cannot read: {exc}", code="order_invalid") from exc
