"""TikTok Shop's webhooks (marketplaces.md §3.4): verify the ``Authorization`` header, then read the push.

The header is ``HMAC-SHA256(app_secret, app_key + raw body)`` in lowercase hex (no "Bearer", no timestamp), over
the exact bytes received. The callback URL is not signed. A push's id is its ``tts_notification_id``, the same on
each of TikTok's redeliveries (2 min, 30 min, 3 h, 12 h), so the inbox stores it once.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

from agrimarket.channels.base import EventKind, WebhookEvent
from agrimarket.channels.errors import InvalidSignature, MalformedEvent
from agrimarket.channels.tiktok.signing import webhook_signature
from agrimarket.kit import jsontext
from agrimarket.kit.text import nfc

HEADER = "Authorization"
ORDER_STATUS = 1
INVENTORY_STATUS = 27
KINDS: Mapping[int, EventKind] = {
    ORDER_STATUS: EventKind.order,
    3: EventKind.order,  # recipient address update
    4: EventKind.order,  # package update
    11: EventKind.order,  # cancellation status
    12: EventKind.order,  # return status
    5: EventKind.listing,  # product status (audit result, freeze)
    15: EventKind.listing,  # product information change
    16: EventKind.listing,  # product creation
    6: EventKind.auth,  # seller deauthorisation
    7: EventKind.auth,  # authorisation about to expire
    INVENTORY_STATUS: EventKind.stock,
}


def verify(headers: Mapping[str, str], body: bytes, *, app_key: str, app_secret: str) -> None:
    given = next((value for key, value in headers.items() if key.lower() == HEADER.lower()), None)
    if not given:
        raise InvalidSignature(f"The push carries no {HEADER} header.", code="signature_missing")
    expected = webhook_signature(app_key, app_secret, body)
    if not hmac.compare_digest(given.strip().lower().encode(), expected.encode()):
        raise InvalidSignature("The push's signature does not match its body.", code="signature_invalid")


def parse(
    headers: Mapping[str, str], body: bytes, *, app_key: str, app_secret: str, shop_id: str | None
) -> WebhookEvent:
    verify(headers, body, app_key=app_key, app_secret=app_secret)
    return read(body, shop_id)


def read(body: bytes, shop_id: str | None) -> WebhookEvent:
    """A verified push as an event; an order push names its order, to be re-fetched before anything changes."""
    try:
        payload = jsontext.loads(body)
        push_type = int(payload["type"])
        data = payload.get("data") or {}
        if not isinstance(data, dict):
            raise TypeError("data is not an object")
        timestamp = payload.get("timestamp")
        occurred = datetime.fromtimestamp(float(timestamp), UTC) if timestamp is not None else None
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise MalformedEvent(f"The push's body cannot be read: {exc}", code="body_invalid") from exc
    pushed_shop = payload.get("shop_id")
    if pushed_shop not in (None, "") and shop_id is not None and str(pushed_shop) != shop_id:
        raise MalformedEvent("The push is for another shop.", code="shop_mismatch")
    kind = KINDS.get(push_type, EventKind.other)
    order_ids: list[str] = []
    if kind is EventKind.order:
        order_id = data.get("order_id")
        if not order_id:
            raise MalformedEvent("An order push without an order_id.", code="body_invalid")
        order_ids = [nfc(str(order_id))]
    notification = payload.get("tts_notification_id")
    external_id = f"tts:{notification}" if notification else f"{push_type}:{hashlib.sha256(body).hexdigest()[:40]}"
    return WebhookEvent(external_id, kind, order_ids, occurred, {**payload, "data": data})
