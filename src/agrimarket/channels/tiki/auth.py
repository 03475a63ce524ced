"""Tiki's OAuth 2: the authorisation page, the token endpoint (code, refresh, client credentials) and Bearer calls.

Hand-written rather than through httpx-oauth: it is a few lines, and it must run on the injected client (the
sandbox behind ``ASGITransport`` in tests, the process's shared pool in production) and map failures to the
channel's errors (a refused grant is :class:`AuthExpired` or :class:`Rejected`, a 5xx stays retryable), where
httpx-oauth opens its own client per call and raises its own exceptions.

The token endpoint takes ``application/x-www-form-urlencoded`` with the client authenticated by HTTP Basic
(``client_id:client_secret``), as Tiki's guide shows (it accepts them in the body too; we use Basic only).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from agrimarket.channels.errors import AuthExpired, ChannelError, Rejected, Retryable
from agrimarket.channels.http import send

MIN_STATE = 8  # Tiki asks for a state of at least 8 characters


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>`` on every call."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def _oauth_message(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or None
    if isinstance(body, dict):
        text = body.get("error_description") or body.get("message") or body.get("error")
        return f"{text} [{body.get('error', '')}]" if text else None
    return None


def authorization_url(auth_url: str, *, client_id: str, redirect_uri: str, state: str, scope: str) -> str:
    if len(state) < MIN_STATE:
        raise ValueError(f"Tiki wants a state of at least {MIN_STATE} characters")
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
    }
    return f"{auth_url.rstrip('/')}/auth?{urlencode(query)}"


class TokenAnswer:
    """A token endpoint's answer: the access token, its lifetime, and a refresh token where the grant gives one
    (``client_credentials`` gives none)."""

    def __init__(self, body: Mapping[str, Any], *, now: datetime) -> None:
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise Retryable("Tiki's token endpoint answered without an access token.", code="token_missing")
        self.access_token = token
        refresh = body.get("refresh_token")
        self.refresh_token = refresh if isinstance(refresh, str) and refresh else None
        self.scope = str(body.get("scope") or "")
        expires_in = body.get("expires_in")
        self.expires_at = now + timedelta(seconds=float(expires_in)) if isinstance(expires_in, int | float) else None


class TokenEndpoint:
    """``POST {auth_url}/token`` for one app, on the injected client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        auth_url: str,
        client_id: str,
        client_secret: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.http = http
        self.clock = clock
        self.url = f"{auth_url.rstrip('/')}/token"
        self.basic = httpx.BasicAuth(client_id, client_secret)

    async def _grant(self, form: Mapping[str, str]) -> TokenAnswer:
        request = self.http.build_request("POST", self.url, data=dict(form), headers={"Accept": "application/json"})
        response = await send(self.http, request, auth=self.basic, message_of=_oauth_message)
        try:
            body = response.json()
        except ValueError as exc:
            raise Retryable("Tiki's token endpoint answered with something that is not JSON.") from exc
        if not isinstance(body, dict):
            raise Retryable("Tiki's token endpoint answered with an unexpected body.")
        return TokenAnswer(body, now=datetime.fromtimestamp(self.clock(), UTC))

    async def exchange_code(self, code: str, redirect_uri: str) -> TokenAnswer:
        """A refused or expired code (or a wrong client) is :class:`Rejected`: the seller tries again."""
        try:
            return await self._grant({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})
        except Retryable:
            raise
        except ChannelError as exc:
            raise Rejected(f"Tiki refused the authorisation code: {exc.message}", code="code_refused") from exc

    async def refresh(self, refresh_token: str) -> TokenAnswer:
        """A refused refresh is :class:`AuthExpired`: the seller must authorise again."""
        try:
            return await self._grant({"grant_type": "refresh_token", "refresh_token": refresh_token})
        except Retryable:
            raise
        except ChannelError as exc:
            raise AuthExpired(f"Tiki refused to refresh the token: {exc.message}", code="refresh_refused") from exc

    async def client_credentials(self) -> TokenAnswer:
        """The app's own token (event queues belong to the app, not to a seller)."""
        try:
            return await self._grant({"grant_type": "client_credentials"})
        except Retryable:
            raise
        except ChannelError as exc:
            raise AuthExpired(f"Tiki refused the app's credentials: {exc.message}", code="client_refused") from exc
