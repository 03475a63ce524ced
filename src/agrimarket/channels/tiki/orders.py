"""Tiki's orders read into the port's: statuses, money as integer VND, times, one line per item."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from agrimarket.channels.base import ChannelOrder, ChannelOrderLine
from agrimarket.channels.errors import MalformedEvent
from agrimarket.kit.text import clean_line
from agrimarket.models.orders import OrderStatus

VN = timezone(timedelta(hours=7))
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# Tiki's order statuses (tiki-theory-v2/order-status-v2). An order becomes ours to handle at ``queueing`` (placed and
# confirmed by Tiki); before that it waits for payment. ``holded`` is an order Tiki holds for checking: the buyer has
# committed, so it counts as paid (its stock stays reserved). ``closed`` ends a completed order.
STATUS: Mapping[str, OrderStatus] = {
    "waiting_payment": OrderStatus.unpaid,
    "payment_review": OrderStatus.unpaid,
    "processing": OrderStatus.unpaid,
    "queueing": OrderStatus.paid,
    "paid": OrderStatus.paid,
    "holded": OrderStatus.paid,
    "picking": OrderStatus.ready_to_ship,
    "packaging": OrderStatus.ready_to_ship,
    "finished_packing": OrderStatus.ready_to_ship,
    "ready_to_ship": OrderStatus.ready_to_ship,
    "handover_to_partner": OrderStatus.shipped,
    "shipping": OrderStatus.shipped,
    "successful_delivery": OrderStatus.delivered,
    "delivered": OrderStatus.delivered,
    "complete": OrderStatus.completed,
    "closed": OrderStatus.completed,
    "canceled": OrderStatus.cancelled,
    "returned": OrderStatus.returned,
}
# Tiki's guide: list orders with status=nin|processing,waiting_payment (they are not orders yet). ``processing`` in
# that sentence is the order being created, so it reads as unpaid above.


def tiki_time(value: Any) -> datetime:
    """Tiki's times: "2024-05-01 09:30:00" in Vietnam's time (ISO 8601 accepted as well)."""
    text = str(value).strip()
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=VN)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise MalformedEvent(f"Tiki sent an unreadable time: {value!r}", code="time_invalid") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=VN)


def tiki_time_param(moment: datetime) -> str:
    return moment.astimezone(VN).strftime(TIME_FORMAT)


def vnd(value: Any) -> int:
    """Tiki's amounts are whole dong in its examples (100000); a decimal is rounded to the dong."""
    if value in (None, ""):
        return 0
    try:
        return round(float(value))
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"Tiki sent an unreadable amount: {value!r}", code="amount_invalid") from exc


def channel_order(order: Mapping[str, Any]) -> ChannelOrder:
    try:
        word = str(order["status"])
        invoice = order.get("invoice") or {}
        lines: list[ChannelOrderLine] = []
        for item in order.get("items") or []:
            product = item.get("product") or {}
            seller_sku = product.get("seller_product_code") or product.get("original_sku")
            line_invoice = item.get("invoice") or {}
            lines.append(
                ChannelOrderLine(
                    external_line_id=str(item["id"]),
                    sku=clean_line(str(seller_sku)) if seller_sku else None,
                    quantity=int(item["qty"]),
                    unit_price_vnd=vnd(line_invoice.get("price")),
                    external_item_id=None,
                    external_sku_id=str(product["id"]) if product.get("id") is not None else None,
                    name=clean_line(str(product.get("name") or "")),
                )
            )
        shipping = vnd(invoice.get("shipping_amount_after_discount"))
        total = invoice.get("grand_total")
        buyer = (order.get("customer") or {}).get("full_name") or ""
        return ChannelOrder(
            external_id=str(order["code"]),
            status=STATUS.get(word, OrderStatus.paid),  # a status Tiki adds later is still ours to handle
            platform_status=word,
            created_at=tiki_time(order["created_at"]),
            updated_at=tiki_time(order.get("updated_at") or order["created_at"]),
            lines=lines,
            total_vnd=max(vnd(total), 0)
            if total is not None
            else sum(line.quantity * line.unit_price_vnd for line in lines) + shipping,
            shipping_fee_vnd=shipping,
            buyer_name=clean_line(str(buyer)) or None,
            raw=dict(order),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedEvent(f"Tiki sent an order we cannot read: {exc}", code="order_invalid") from exc
