"""Calls to Tiki's Open API with a Bearer token: one request, its JSON read, its error mapped in one place.

Tiki publishes no error envelope (UNCONFIRMED in ``marketplaces.md`` §4). We read what HTTP says (through
:func:`agrimarket.channels.http.send`: 401 → AuthExpired, 404 → ChannelNotFound, 429 → RateLimited with its
``Retry-After``, other 4xx → Rejected, 5xx → Retryable) and take the message from ``message``,
``error_description`` or the first of ``errors``, with ``code`` or ``error`` as the code: the shapes Tiki's OAuth
server and its Open API examples use. The sandbox answers in exactly these shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from agrimarket.channels.errors import ChannelError, Retryable
from agrimarket.channels.http import send
from agrimarket.channels.tiki.auth import BearerAuth

MESSAGE_LIMIT = 500


def _message_of(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return response.text[:MESSAGE_LIMIT] or None
    if not isinstance(body, dict):
        return None
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    text = body.get("message") or body.get("error_description") or (first if isinstance(first, str) else None)
    code = body.get("code") or body.get("error")
    if not text:
        return None
    return f"{str(text)[:MESSAGE_LIMIT]} [{code}]" if code else str(text)[:MESSAGE_LIMIT]


def _code_of(error: ChannelError) -> ChannelError:
    """Move a trailing ``[code]`` from the message into ``error.code``, so people read Tiki's words alone."""
    message = error.message
    if message.endswith("]") and " [" in message and error.code is None:
        text, _, code = message.rpartition(" [")
        error.message, error.code = text, code[:-1] or None
        error.args = (error.message,)
    return error


class TikiClient:
    """Calls to one Open API host with one token (a seller's, or the app's own)."""

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, token: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.auth = BearerAuth(token)

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> Any:
        """The decoded JSON of a successful call (None for an empty body), else the mapped channel error."""
        request = self.http.build_request(
            method,
            self.base_url + path,
            json=json,
            params={k: str(v) for k, v in (params or {}).items()},
            files=files,
            headers={"Accept": "application/json"},
        )
        try:
            response = await send(self.http, request, auth=self.auth, message_of=_message_of)
        except ChannelError as exc:
            raise _code_of(exc) from exc.__cause__
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise Retryable(f"Tiki answered {path} with something that is not JSON.") from exc
