"""Calls to TikTok Shop's Partner API: signed, sent through :func:`agrimarket.channels.http.send`, the envelope
``{code, message, request_id, data}`` read and its error mapped in one place (:func:`error_for`).

``code == 0`` is success. Throttling comes as HTTP 429 with code 36009002 and server protection as 503
(rate-limits.md); other refusals may come with a 4xx or a 200, so the envelope's code decides whenever there is
one, and the HTTP status only when the body is not TikTok's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from agrimarket.channels.errors import AuthExpired, ChannelError, ChannelNotFound, RateLimited, Rejected, Retryable
from agrimarket.channels.http import send
from agrimarket.channels.tiktok.signing import Clock, TikTokAuth

TOO_MANY_REQUESTS = 36009002
ACCESS_TOKEN_EXPIRED = 105002
INVALID_SIGN = 106001
# 105001 / 36009004: a missing or invalid access token or credentials; refreshing is what can mend them.
AUTH_CODES = frozenset({105001, ACCESS_TOKEN_EXPIRED, 36009004})
RETRYABLE_CODES = frozenset({36009007})  # the gateway timed out
# TikTok publishes no single "not found" code: these are the sandbox's (UNCONFIRMED); a message that says so is
# taken at its word too.
NOT_FOUND_CODES = frozenset({12052048, 12052049, 21011001})
_NOT_FOUND_WORDS = re.compile(r"not (be )?found|not exist|does not exist", re.IGNORECASE)
# TikTok asks for "random exponential backoff" and sends no Retry-After that it documents: wait a second.
DEFAULT_RETRY_AFTER = 1.0


def error_for(
    code: int | None, message: str, *, status: int | None = None, retry_after: float | None = None
) -> ChannelError:
    """The channel error a TikTok answer means: the one place TikTok's words become ours."""
    text = message or f"TikTok Shop refused the call ({code})."
    label = str(code) if code is not None else None
    if code == TOO_MANY_REQUESTS or status == 429:
        return RateLimited(text, retry_after=retry_after or DEFAULT_RETRY_AFTER, code=label, status=status)
    if code in AUTH_CODES:
        return AuthExpired(text, code=label, status=status)
    if code in RETRYABLE_CODES or (status is not None and status >= 500):
        return Retryable(text, code=label, status=status)
    if code in NOT_FOUND_CODES or _NOT_FOUND_WORDS.search(text) or status == 404:
        return ChannelNotFound(text, code=label, status=status)
    if status == 401 and code is None:
        return AuthExpired(text, code=label, status=status)
    return Rejected(text, code=label, status=status)


def envelope_of(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and "code" in body else None


def code_of(envelope: Mapping[str, Any]) -> int | None:
    try:
        return int(envelope["code"])
    except (KeyError, TypeError, ValueError):
        return None


def check(envelope: Mapping[str, Any], *, status: int | None = None, retry_after: float | None = None) -> None:
    """Raise the envelope's error unless its code is 0."""
    code = code_of(envelope)
    if code != 0:
        raise error_for(code, str(envelope.get("message") or ""), status=status, retry_after=retry_after)


class TikTokClient:
    """Signed calls to one Partner API host as one app and, given its tokens and cipher, as one shop."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        app_key: str,
        app_secret: str,
        access_token: str | None = None,
        shop_cipher: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.app_key = app_key
        self._app_secret = app_secret
        self.access_token = access_token
        self.shop_cipher = shop_cipher
        self.clock = clock
        self.prefix = urlsplit(self.base_url).path

    def auth(self, *, shop: bool) -> TikTokAuth:
        return TikTokAuth(
            self.app_key,
            self._app_secret,
            prefix=self.prefix,
            access_token=self.access_token,
            shop_cipher=self.shop_cipher if shop else None,
            clock=self.clock,
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Mapping[str, Any] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        data: Mapping[str, str] | None = None,
        shop: bool = True,
    ) -> dict[str, Any]:
        """The ``data`` of a successful call; TikTok's error, an HTTP error or a transport error raised as the
        matching channel error. ``shop=False``: a call that names no shop (no ``shop_cipher``)."""
        request = self.http.build_request(
            method, self.base_url + path, params=dict(params or {}), json=json, files=files, data=data
        )
        return await call_json(self.http, request, auth=self.auth(shop=shop), what=path)


async def call_json(
    http: httpx.AsyncClient, request: httpx.Request, *, auth: httpx.Auth | None, what: str
) -> dict[str, Any]:
    """Send ``request`` and read TikTok's envelope: its ``data`` on success, else its error raised."""
    seen: list[httpx.Response] = []

    def message_of(response: httpx.Response) -> str | None:
        seen.append(response)
        envelope = envelope_of(response)
        return str(envelope.get("message") or "") or None if envelope else None

    try:
        response = await send(http, request, auth=auth, message_of=message_of)
    except ChannelError as exc:
        envelope = envelope_of(seen[-1]) if seen else None
        if envelope is None or code_of(envelope) in (None, 0):
            raise
        check(envelope, status=exc.status, retry_after=getattr(exc, "retry_after", None))
        raise
    envelope = envelope_of(response)
    if envelope is None:
        raise Retryable(f"TikTok Shop answered {what} with something that is not its JSON envelope.", status=200)
    check(envelope, status=response.status_code)
    data = envelope.get("data")
    return data if isinstance(data, dict) else {}
