"""The ``state`` of connect-by-authorisation: a sealed, expiring token that says who started it, and for what.

The seller asks to connect a shop; we send them to the marketplace's authorisation page, and the marketplace sends
them back to our callback with a one-time code. The state binds that return trip to the request that started it:
organization, person, channel, the connection's name, settings and category map, and a random nonce. It is a
Fernet token (authenticated encryption with a timestamp) under a key derived from ``AGRIMARKET_SECRET_KEY``, so it
cannot be forged or altered, it expires after :data:`STATE_TTL_SECONDS` (a Shopee code lives 10 minutes too), and the
settings inside are not readable in a URL. Single use is the database's job: a state that connected a shop has
its nonce recorded (``used_connect_states``).

Shopee does not echo a ``state`` parameter, so the state rides inside the redirect URI we give the platform
(``…/callback/<channel>?state=…``); a platform that does echo it (Lazada) may also be given it as ``state``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

STATE_TTL_SECONDS = 600
CALLBACK_PATH = "/api/v1/connections/callback/{channel}"
_KEY_PURPOSE = b"agrimarket/connect-state/v1"
_TOKEN = re.compile(r"[A-Za-z0-9_-]+={0,2}")


class StateInvalid(ValueError):
    """Not a state we issued, or altered on the way."""


class StateExpired(ValueError):
    """A state we issued, older than :data:`STATE_TTL_SECONDS`."""


@dataclass(frozen=True, slots=True)
class ConnectState:
    organization_id: uuid.UUID
    user_id: uuid.UUID
    channel: str
    name: str
    settings: dict[str, Any] | None  # None: none given (a reconnected shop keeps its own)
    category_map: dict[str, str] | None
    nonce: str
    issued_at: datetime

    @property
    def expires_at(self) -> datetime:
        return self.issued_at + timedelta(seconds=STATE_TTL_SECONDS)


class StateSealer:
    """Seals and opens states. ``now`` is seconds since the epoch (injected in tests)."""

    def __init__(self, secret_key: SecretStr) -> None:
        # A key of its own, derived from the secret key: a state is never a valid session token or credential.
        digest = hmac.new(secret_key.get_secret_value().encode(), _KEY_PURPOSE, hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(
        self,
        *,
        organization_id: uuid.UUID,
        user_id: uuid.UUID,
        channel: str,
        name: str,
        settings: dict[str, Any] | None,
        category_map: dict[str, str] | None,
        now: float,
    ) -> tuple[str, ConnectState]:
        nonce = secrets.token_urlsafe(24)
        payload = {
            "o": str(organization_id),
            "u": str(user_id),
            "c": channel,
            "n": name,
            "s": settings,
            "m": category_map,
            "k": nonce,
        }
        token = self._fernet.encrypt_at_time(json.dumps(payload, separators=(",", ":")).encode(), int(now))
        state = ConnectState(organization_id, user_id, channel, name, settings, category_map, nonce, _at(int(now)))
        return token.decode(), state

    def open(self, token: str, *, now: float) -> ConnectState:
        # Exactly as sealed: base64 decoding would forgive characters after the padding.
        if len(token) % 4 or not _TOKEN.fullmatch(token):
            raise StateInvalid("not a state of ours")
        try:
            raw = token.encode("ascii")
            issued = self._fernet.extract_timestamp(raw)
        except (UnicodeEncodeError, InvalidToken):
            raise StateInvalid("not a state of ours") from None
        if issued + STATE_TTL_SECONDS < int(now):
            raise StateExpired("the state has expired")
        try:
            data = json.loads(self._fernet.decrypt_at_time(raw, STATE_TTL_SECONDS, int(now)))
            return ConnectState(
                organization_id=uuid.UUID(data["o"]),
                user_id=uuid.UUID(data["u"]),
                channel=str(data["c"]),
                name=str(data["n"]),
                settings=data["s"],
                category_map=data["m"],
                nonce=str(data["k"]),
                issued_at=_at(issued),
            )
        except (InvalidToken, KeyError, TypeError, ValueError):  # e.g. issued "in the future": not ours
            raise StateInvalid("not a state of ours") from None


def redirect_uri(public_url: str, channel: str, state: str) -> str:
    """Our callback for one authorisation, with its state in the query (Shopee echoes no ``state``)."""
    return f"{public_url}{CALLBACK_PATH.format(channel=channel)}?{urlencode({'state': state})}"


def _at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
