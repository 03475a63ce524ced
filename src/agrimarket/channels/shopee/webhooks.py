"""Shopee's push notifications (marketplaces.md §1.4): verify, then read.

The ``Authorization`` header is ``HMAC-SHA256(partner_key, callback_url + "|" + raw_body)`` in lower-case hex, over
the exact bytes received (never re-serialised) and the exact URL registered as the callback.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agrimarket.channels.base import EventKind, WebhookEvent
from agrimarket.channels.errors import InvalidSignature, MalformedEvent
from agrimarket.kit import jsontext
from agrimarket.kit.text import nfc

SIGNATURE_HEADER = "Authorization"

ORDER_STATUS_PUSH = 3
TRACKING_NUMBER_PUSH = 4
RESERVED_STOCK_PUSH = 8
KIND_OF_CODE: Mapping[int, EventKind] = {
    1: EventKind.auth,  # shop authorised
    2: EventKind.auth,  # shop deauthorised
    12: EventKind.auth,  # authorisation expires in 7 days
    ORDER_STATUS_PUSH: EventKind.order,
    TRACKING_NUMBER_PUSH: EventKind.order,
    6: EventKind.listing,  # item banned
    RESERVED_STOCK_PUSH: EventKind.stock,
}


def push_signature(partner_key: str, callback_url: str, body: bytes) -> str:
    return hmac.new(partner_key.encode(), callback_url.encode() + b"|" + body, hashlib.sha256).hexdigest()


def verify(partner_key: str, *, url: str, headers: Mapping[str, str], body: bytes) -> None:
    given = next((value for key, value in headers.items() if key.lower() == SIGNATURE_HEADER.lower()), None)
    if not given:
        raise InvalidSignature(f"The push carries no {SIGNATURE_HEADER} header.", code="signature_missing")
    expected = push_signature(partner_key, url, body)
    if not hmac.compare_digest(given.strip().lower().encode(), expected.encode()):
        raise InvalidSignature(
            "The push's signature does not match its body and our callback URL.", code="signature_invalid"
        )


def _event_id(code: int, payload: Mapping[str, Any], data: Mapping[str, Any], body: bytes) -> str:
    """Stable across redeliveries of one push, distinct between pushes: the order's status at its update time,
    or the body's hash for pushes that carry no such fields."""
    order_sn = data.get("ordersn") or data.get("order_sn")
    if code == ORDER_STATUS_PUSH and order_sn:
        return f"{code}:{order_sn}:{data.get('status', '')}:{data.get('update_time', payload.get('timestamp', ''))}"
    if code == TRACKING_NUMBER_PUSH and order_sn:
        return f"{code}:{order_sn}:{data.get('tracking_no') or data.get('tracking_number') or ''}"
    return f"{code}:{hashlib.sha256(body).hexdigest()[:40]}"


def parse(partner_key: str, shop_id: int | None, *, url: str, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
    verify(partner_key, url=url, headers=headers, body=body)
    return read(body, shop_id)


def lost_push_body(message: Mapping[str, Any]) -> bytes:
    """A message of ``get_lost_push_message`` as the push it stands for: ``{shop_id?, code, timestamp, data}``."""
    payload = {key: message[key] for key in ("data", "shop_id", "code", "timestamp") if message.get(key) is not None}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def read(body: bytes, shop_id: int | None) -> WebhookEvent:
    """Read a push already trusted (verified, or listed by ``get_lost_push_message``). Its id is the same either
    way, so a push that arrives late after its lost copy was stored is a duplicate in the inbox."""
    try:
        payload = jsontext.loads(body)
        code = int(payload["code"])
        raw_data = payload.get("data") or {}
        data = json.loads(raw_data) if isinstance(raw_data, str) else raw_data
        if not isinstance(data, dict):
            raise TypeError("data is not an object")
        timestamp = payload.get("timestamp")
        occurred = datetime.fromtimestamp(float(timestamp), UTC) if timestamp is not None else None
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedEvent(f"The push's body cannot be read: {exc}", code="body_invalid") from exc
    pushed_shop = payload.get("shop_id")
    if pushed_shop is not None and shop_id is not None and str(pushed_shop) != str(shop_id):
        raise MalformedEvent("The push is for another shop.", code="shop_mismatch")
    kind = KIND_OF_CODE.get(code, EventKind.other)
    order_ids: list[str] = []
    if kind is EventKind.order:
        order_sn = data.get("ordersn") or data.get("order_sn")
        if not order_sn:
            raise MalformedEvent("An order push without an order number.", code="body_invalid")
        order_ids = [nfc(str(order_sn))]
    return WebhookEvent(
        external_id=_event_id(code, payload, data, body),
        kind=kind,
        order_ids=order_ids,
        occurred_at=occurred,
        data={**payload, "data": data},
    )
