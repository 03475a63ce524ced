"""Calls to the Lazada gateway: one signed request, its envelope read, its error mapped in one place."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx

from agrimarket.channels.errors import AuthExpired, ChannelError, ChannelNotFound, RateLimited, Rejected, Retryable
from agrimarket.channels.http import send
from agrimarket.channels.lazada.signing import Clock, LazadaAuth

THROTTLED = frozenset({"ApiCallLimit", "E901", "AppCallLimit", "SellerCallLimit"})
AUTH_CODES = frozenset(
    {"IllegalAccessToken", "InvalidAccessToken", "MissingAccessToken", "AccessTokenExpired", "IllegalRefreshToken"}
)
RETRYABLE = frozenset({"ServiceTimeout", "ServiceUnavailable", "InternalError", "SystemError", "ISP.SystemError"})
# Lazada publishes no single not-found code: "16"/"E016" is its "Invalid Order ID"; the ITEM/ORDER codes are the
# sandbox's (UNCONFIRMED), and a message saying so is taken at its word too.
NOT_FOUND = frozenset({"16", "E016", "ITEM_NOT_FOUND", "ORDER_NOT_FOUND", "SKU_NOT_FOUND"})
_NOT_FOUND_WORDS = re.compile(r"not (be )?found|not exist|invalid order id", re.IGNORECASE)
_BAN = re.compile(r"ban will last (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)

Params = Mapping[str, str | int | float]


def retry_after(message: str) -> float | None:
    """The ban's length ApiCallLimit states in its message ("this ban will last 1 seconds")."""
    found = _BAN.search(message)
    return float(found.group(1)) if found else None


def error_for(envelope: Mapping[str, Any]) -> ChannelError | None:
    """The channel error a Lazada envelope means, or None for success (``code == "0"``)."""
    code = str(envelope.get("code", ""))
    if code == "0":
        return None
    message = str(envelope.get("message") or f"Lazada refused the call ({code or 'no code'}).")
    kind = str(envelope.get("type", ""))
    if code in THROTTLED or "frequen" in message.lower():
        return RateLimited(message, retry_after=retry_after(message) or 1.0, code=code)
    if code in AUTH_CODES:
        return AuthExpired(message, code=code)
    if code in RETRYABLE or kind == "SYSTEM":
        return Retryable(message, code=code)
    if code in NOT_FOUND or _NOT_FOUND_WORDS.search(message):
        return ChannelNotFound(message, code=code)
    return Rejected(message, code=code)


def _message_of(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or None
    if isinstance(body, dict) and body.get("message"):
        return f"{body['message']} [{body.get('code', '')}]"
    return None


def _text(value: str | int | float) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class LazadaClient:
    """Signed calls to one gateway (``base_url``: the API gateway, or the auth host's ``/rest``)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        app_key: str,
        app_secret: str,
        access_token: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.auth = LazadaAuth(
            app_key, app_secret, base_path=httpx.URL(self.base_url).path, access_token=access_token, clock=clock
        )

    async def call(
        self,
        api: str,
        params: Params | None = None,
        *,
        method: str = "POST",
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        check: bool = True,
    ) -> dict[str, Any]:
        """The whole envelope of a successful call (``data``, ``result``, ``detail``…), else the mapped error.
        ``check=False``: the envelope whatever its ``code`` (a batch reads its per-SKU ``detail`` first); HTTP and
        transport errors are raised all the same."""
        url = self.base_url + api
        values = {key: _text(value) for key, value in (params or {}).items()}
        if method == "GET" or files:
            request = self.http.build_request(method, url, params=values, files=files)
        else:
            request = self.http.build_request(method, url, data=values)
        try:
            response = await send(self.http, request, auth=self.auth, message_of=_message_of)
        except RateLimited as exc:
            if exc.retry_after is None:
                exc.retry_after = retry_after(exc.message)
            raise
        try:
            envelope = response.json()
        except ValueError as exc:
            raise Retryable(f"Lazada answered {api} with something that is not JSON.") from exc
        if not isinstance(envelope, dict):
            raise Retryable(f"Lazada answered {api} with an unexpected body.")
        error = error_for(envelope) if check else None
        if error is not None:
            raise error
        return envelope
