"""TikTok Shop's orders in our words: statuses, integer VND from its decimal strings, one line per SKU."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from agrimarket.channels.base import ChannelOrder, ChannelOrderLine
from agrimarket.channels.errors import MalformedEvent
from agrimarket.kit.text import clean_line
from agrimarket.models.orders import OrderStatus

# get-order-list.doc.json. ON_HOLD: paid, the buyer may still cancel without asking. AWAITING_COLLECTION: the seller
# arranged shipment, the carrier has not collected it. PARTIALLY_SHIPPING reads as ready_to_ship, the rank every
# part has reached. Pushes say "CANCEL" where the API says "CANCELLED" (1-order-status-change.json).
ORDER_STATUS: Mapping[str, OrderStatus] = {
    "UNPAID": OrderStatus.unpaid,
    "ON_HOLD": OrderStatus.paid,
    "AWAITING_SHIPMENT": OrderStatus.paid,
    "PARTIALLY_SHIPPING": OrderStatus.ready_to_ship,
    "AWAITING_COLLECTION": OrderStatus.ready_to_ship,
    "IN_TRANSIT": OrderStatus.shipped,
    "DELIVERED": OrderStatus.delivered,
    "COMPLETED": OrderStatus.completed,
    "CANCELLED": OrderStatus.cancelled,
    "CANCEL": OrderStatus.cancelled,
}


def vnd(value: Any) -> int:
    """TikTok's amounts are decimal strings ("165000", "165000.00"); the dong has no minor unit: half rounds up."""
    if value is None or value == "":
        return 0
    try:
        return int(Decimal(str(value).replace(",", "")).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation as exc:
        raise MalformedEvent(f"TikTok Shop sent an amount we cannot read: {value!r}", code="amount_invalid") from exc


def _when(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value or 0), UTC)


def order_lines(items: list[Mapping[str, Any]], *, cancelled_order: bool) -> list[ChannelOrderLine]:
    """TikTok has one line item per unit bought (no quantity field): count them into one line per SKU. While the
    order lives, its cancelled line items are left out (those units are no longer sold)."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        if not cancelled_order and str(item.get("display_status") or "") == "CANCELLED":
            continue
        key = str(item.get("sku_id") or item.get("seller_sku") or item.get("id"))
        grouped.setdefault(key, []).append(item)
    lines: list[ChannelOrderLine] = []
    for group in grouped.values():
        first = group[0]
        total = sum(vnd(item.get("sale_price") or item.get("original_price")) for item in group)
        name = " · ".join(part for part in (first.get("product_name"), first.get("sku_name")) if part)
        sku = first.get("seller_sku")
        lines.append(
            ChannelOrderLine(
                external_line_id=str(first["id"]),
                sku=clean_line(str(sku)) if sku else None,
                quantity=len(group),
                unit_price_vnd=total // len(group),
                external_item_id=str(first["product_id"]) if first.get("product_id") else None,
                external_sku_id=str(first["sku_id"]) if first.get("sku_id") else None,
                name=clean_line(name),
            )
        )
    return lines


def channel_order(order: Mapping[str, Any]) -> ChannelOrder:
    try:
        status = str(order.get("status") or "")
        mapped = ORDER_STATUS.get(status, OrderStatus.unpaid)  # an unknown word ranks lowest: re-read, never guessed
        items = [item for item in order.get("line_items") or [] if isinstance(item, Mapping)]
        lines = order_lines(items, cancelled_order=mapped is OrderStatus.cancelled)
        payment = order.get("payment") or {}
        currency = payment.get("currency")
        if currency and currency != "VND":
            raise MalformedEvent(f"A TikTok Shop order in {currency}, not VND.", code="currency")
        total = payment.get("total_amount")
        buyer = (order.get("recipient_address") or {}).get("name")
        return ChannelOrder(
            external_id=str(order["id"]),
            status=mapped,
            platform_status=status,
            created_at=_when(order.get("create_time")),
            updated_at=_when(order.get("update_time") or order.get("create_time")),
            lines=lines,
            total_vnd=vnd(total) if total not in (None, "") else sum(li.quantity * li.unit_price_vnd for li in lines),
            shipping_fee_vnd=vnd(payment.get("shipping_fee")),
            buyer_name=clean_line(str(buyer)) or None if buyer else None,
            raw=dict(order),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedEvent(f"TikTok Shop sent an order we cannot read: {exc}", code="order_invalid") from exc


def package_ids(order: Mapping[str, Any]) -> list[str]:
    """The order's packages (``packages[].id``, else the line items' ``package_id``), in order, once each."""
    found = [str(p["id"]) for p in order.get("packages") or [] if isinstance(p, Mapping) and p.get("id")]
    found += [str(i["package_id"]) for i in order.get("line_items") or [] if i.get("package_id")]
    return list(dict.fromkeys(found))
