"""Lazada push messages (LPM): verify the ``Authorization`` header, read the message into a :class:`WebhookEvent`."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agrimarket.channels.base import EventKind, WebhookEvent
from agrimarket.channels.errors import InvalidSignature, MalformedEvent
from agrimarket.channels.lazada.signing import push_signature
from agrimarket.kit import jsontext

HEADER = "Authorization"
TRADE_ORDER = 0
PRODUCT_QC = 1
PRODUCT_UPDATE = 3
SHALLOW_STOCK = 6
TOKEN_EXPIRY = 8
REVERSE_ORDER = 10

KINDS: Mapping[int, EventKind] = {
    TRADE_ORDER: EventKind.order,
    REVERSE_ORDER: EventKind.order,
    PRODUCT_QC: EventKind.listing,
    PRODUCT_UPDATE: EventKind.listing,
    SHALLOW_STOCK: EventKind.stock,
    TOKEN_EXPIRY: EventKind.auth,
}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), None)


def verify(headers: Mapping[str, str], body: bytes, *, app_key: str, app_secret: str) -> None:
    given = _header(headers, HEADER)
    if not given:
        raise InvalidSignature(f"The push carries no {HEADER} header.", code="signature_missing")
    expected = push_signature(app_key, app_secret, body)
    # Lazada's sample writes lowercase hex; compare case-insensitively, still in constant time.
    if not hmac.compare_digest(given.strip().lower().encode(), expected.encode()):
        raise InvalidSignature("The push's signature does not match its body.", code="signature_invalid")


def _occurred(data: Mapping[str, Any], payload: Mapping[str, Any]) -> datetime | None:
    if isinstance(data.get("status_update_time"), int | float):
        return datetime.fromtimestamp(float(data["status_update_time"]), UTC)
    if isinstance(payload.get("timestamp"), int | float):
        return datetime.fromtimestamp(float(payload["timestamp"]) / 1000, UTC)
    return None


def parse(
    headers: Mapping[str, str], body: bytes, *, app_key: str, app_secret: str, seller_id: str | None
) -> WebhookEvent:
    """A verified push as an event. ``external_id`` is stable across Lazada's redeliveries: an order message is
    keyed by its order, status and status time; any other by a hash of its ``data`` (the envelope's ``timestamp``
    is left out, in case a redelivery stamps it anew)."""
    verify(headers, body, app_key=app_key, app_secret=app_secret)
    try:
        payload = jsontext.loads(body)
        message_type = int(payload["message_type"])
        data = payload.get("data") or {}
        if not isinstance(data, dict):
            raise TypeError("data is not an object")
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedEvent(f"The push's body cannot be read: {exc}", code="body_invalid") from exc
    if seller_id and payload.get("seller_id") is not None and str(payload["seller_id"]) != seller_id:
        raise MalformedEvent("The push is for another shop.", code="shop_mismatch")
    kind = KINDS.get(message_type, EventKind.other)
    order_id = data.get("trade_order_id")
    if kind is EventKind.order:
        if not order_id:
            raise MalformedEvent("An order push without a trade_order_id.", code="body_invalid")
        parts = (message_type, order_id, data.get("reverse_order_id", ""), data.get("order_status", ""))
        external_id = ":".join(str(part) for part in (*parts, data.get("status_update_time", "")))
        return WebhookEvent(external_id, kind, [str(order_id)], _occurred(data, payload), payload)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]
    return WebhookEvent(f"{message_type}:{digest}", kind, (), _occurred(data, payload), payload)
