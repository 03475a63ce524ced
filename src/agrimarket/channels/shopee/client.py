"""Calls to Shopee's API: signed, sent through :func:`agrimarket.channels.http.send`, envelopes read in one place.

Every answer is ``{request_id, error, message, warning?, response}`` (the auth APIs put their fields at the top
level instead of under ``response``); ``error == ""`` is success. Business errors usually come with HTTP 200 but a
gateway refusal may carry a 4xx/5xx (UNCONFIRMED), so the envelope decides whatever the status; the status only
decides when the body is not Shopee's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from agrimarket.channels.errors import AuthExpired, ChannelError, ChannelNotFound, RateLimited, Rejected, Retryable
from agrimarket.channels.http import send
from agrimarket.channels.shopee.auth import Clock, ShopeeAuth

AUTH_ERRORS = frozenset(
    {
        "error_auth",
        "invalid_access_token",
        "invalid_acceess_token",  # Shopee's own spelling in some error lists
        "error_token",
        "error_access_token",
        "access_token_expired",
        "refresh_token_expired",
        "error_shop_refresh_token",
        "shop_access_expired",
        "shop_no_linked",
        "shop_banned",
        "error_partner_key_expired",
    }
)
SERVER_ERRORS = frozenset({"error_server", "error_inner", "error_system_busy", "error_busy", "error_network"})
NOT_FOUND_ERRORS = frozenset(
    {"error_item_not_found", "error_not_found", "error_order_not_found", "item_not_found", "order_not_found"}
)
# Without a hint from the platform, a throttled call waits a second: Shopee publishes no window (§1.5).
DEFAULT_RETRY_AFTER = 1.0


def error_for(code: str, message: str, *, status: int | None = None, retry_after: float | None = None) -> ChannelError:
    """The channel error a Shopee error code means: the one place Shopee's words become ours."""
    text = message or code
    if code == "error_rate_limit":
        return RateLimited(text, retry_after=retry_after or DEFAULT_RETRY_AFTER, code=code, status=status)
    if code in AUTH_ERRORS or "access_token" in code:
        return AuthExpired(text, code=code, status=status)
    if code in SERVER_ERRORS:
        return Retryable(text, code=code, status=status)
    if code in NOT_FOUND_ERRORS or code.endswith("_not_found") or code.endswith("_not_exist"):
        return ChannelNotFound(text, code=code, status=status)
    if status is not None and status >= 500:
        return Retryable(text, code=code, status=status)
    return Rejected(text, code=code, status=status)


def _envelope(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) and "error" in data else None


def _message(response: httpx.Response) -> str | None:
    envelope = _envelope(response)
    if envelope is None:
        return None
    return str(envelope.get("message") or envelope.get("error") or "") or None


class ShopeeClient:
    """Speaks to one Shopee host as one app (public calls) and, given a shop's tokens, as that shop."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        partner_id: int,
        partner_key: str,
        shop_id: int | None = None,
        access_token: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.partner_id = partner_id
        self._partner_key = partner_key
        self.shop_id = shop_id
        self.access_token = access_token
        self.clock = clock
        self.prefix = urlsplit(self.base_url).path

    def auth(self, *, shop: bool) -> ShopeeAuth:
        if shop and (self.shop_id is None or self.access_token is None):
            raise AuthExpired("The shop's credentials are incomplete: connect it again.", code="credentials_invalid")
        return ShopeeAuth(
            self.partner_id,
            self._partner_key,
            prefix=self.prefix,
            access_token=self.access_token if shop else None,
            shop_id=self.shop_id if shop else None,
            clock=self.clock,
        )

    def url(self, path: str) -> str:
        return self.base_url + path

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Mapping[str, Any] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        data: Mapping[str, str] | None = None,
        shop: bool = True,
    ) -> dict[str, Any]:
        """The whole envelope of a successful call; a Shopee error, an HTTP error or a transport error raised as
        the matching :mod:`~agrimarket.channels.errors` error."""
        request = self.http.build_request(
            method, self.url(path), params=dict(params or {}), json=json, files=files, data=data
        )
        seen: list[httpx.Response] = []

        def message_of(response: httpx.Response) -> str | None:
            seen.append(response)
            return _message(response)

        try:
            response = await send(self.http, request, auth=self.auth(shop=shop), message_of=message_of)
        except ChannelError as exc:
            envelope = _envelope(seen[-1]) if seen else None
            if envelope is None or not envelope.get("error"):
                raise
            raise error_for(
                str(envelope["error"]),
                str(envelope.get("message") or ""),
                status=exc.status,
                retry_after=getattr(exc, "retry_after", None),
            ) from exc
        envelope = _envelope(response)
        if envelope is None:
            raise Retryable(f"Shopee answered {path} with something that is not its JSON envelope.", status=200)
        if envelope.get("error"):
            raise error_for(str(envelope["error"]), str(envelope.get("message") or ""), status=response.status_code)
        return envelope

    async def result(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The ``response`` object of a successful call."""
        envelope = await self.call(method, path, **kwargs)
        body = envelope.get("response")
        return body if isinstance(body, dict) else {}


def expires_at(now: float, expire_in: Any) -> int | None:
    """Unix seconds when a token given ``expire_in`` seconds of life stops working."""
    try:
        seconds = float(expire_in)
    except (TypeError, ValueError):
        return None
    return math.floor(now + seconds) if math.isfinite(seconds) else None
