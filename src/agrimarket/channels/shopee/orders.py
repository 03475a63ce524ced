"""Shopee's orders in our words: statuses, integer VND, lines."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from agrimarket.channels.base import ChannelOrder, ChannelOrderLine
from agrimarket.channels.errors import MalformedEvent
from agrimarket.kit.text import clean_line, nfc
from agrimarket.models.orders import OrderStatus

# SP-G v2-0-data-definition. IN_CANCEL is a buyer's request the seller has not answered: the order is still paid
# and may yet ship, so it maps to ``paid`` and the monotonic status keeps whatever higher rank we already have.
ORDER_STATUS: Mapping[str, OrderStatus] = {
    "UNPAID": OrderStatus.unpaid,
    "INVOICE_PENDING": OrderStatus.paid,
    "IN_CANCEL": OrderStatus.paid,
    "READY_TO_SHIP": OrderStatus.ready_to_ship,
    "PROCESSED": OrderStatus.ready_to_ship,
    "RETRY_SHIP": OrderStatus.ready_to_ship,
    "SHIPPED": OrderStatus.shipped,
    "TO_CONFIRM_RECEIVE": OrderStatus.delivered,
    "COMPLETED": OrderStatus.completed,
    "CANCELLED": OrderStatus.cancelled,
    "TO_RETURN": OrderStatus.returned,
}

DETAIL_FIELDS = (
    "buyer_username,item_list,total_amount,pay_time,estimated_shipping_fee,actual_shipping_fee,"
    "shipping_carrier,package_list"
)


def vnd(value: Any) -> int:
    """Shopee's float amounts as integer VND, read through their decimal text so 129999.99999 does not become
    129999; VND has no minor unit, so half rounds up."""
    if value is None or value == "":
        return 0
    try:
        return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation as exc:
        raise MalformedEvent(f"Shopee sent an amount we cannot read: {value!r}", code="amount_invalid") from exc


def _when(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value or 0), UTC)


def channel_order(order: Mapping[str, Any]) -> ChannelOrder:
    status = str(order.get("order_status") or "")
    lines: list[ChannelOrderLine] = []
    seen: set[str] = set()
    for index, item in enumerate(order.get("item_list") or []):
        item_id, model_id = item.get("item_id"), item.get("model_id", 0)
        line_id = f"{item_id}:{model_id}"
        if line_id in seen:  # the same model twice (a promotion splits it): keep both lines apart
            line_id = f"{line_id}:{index}"
        seen.add(line_id)
        sku = item.get("model_sku") or item.get("item_sku") or None
        name = " · ".join(part for part in (item.get("item_name"), item.get("model_name")) if part)
        lines.append(
            ChannelOrderLine(
                external_line_id=line_id,
                sku=nfc(str(sku)).strip() if sku else None,
                quantity=int(item.get("model_quantity_purchased") or 0),
                unit_price_vnd=vnd(item.get("model_discounted_price") or item.get("model_original_price")),
                external_item_id=str(item_id) if item_id is not None else None,
                external_sku_id=str(model_id) if model_id is not None else None,
                name=clean_line(name),
            )
        )
    shipping = order.get("actual_shipping_fee") or order.get("estimated_shipping_fee")
    total = order.get("total_amount")
    buyer = order.get("buyer_username")
    return ChannelOrder(
        external_id=str(order["order_sn"]),
        # An unknown word ranks lowest: the order is kept and re-read, never advanced on a guess.
        status=ORDER_STATUS.get(status, OrderStatus.unpaid),
        platform_status=status,
        created_at=_when(order.get("create_time")),
        updated_at=_when(order.get("update_time") or order.get("create_time")),
        lines=lines,
        total_vnd=vnd(total) if total is not None else sum(line.quantity * line.unit_price_vnd for line in lines),
        shipping_fee_vnd=vnd(shipping),
        buyer_name=clean_line(str(buyer)) if buyer else None,
        raw=dict(order),
    )
