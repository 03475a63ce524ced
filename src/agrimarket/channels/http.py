"""The one place where HTTP turns into channel errors, and the process's shared HTTP client.

Adapters send every request through :func:`send`: a timeout or a dropped connection becomes
:class:`~agrimarket.channels.errors.Retryable`, 429 :class:`~agrimarket.channels.errors.RateLimited` (with the
``Retry-After`` hint), 401 :class:`~agrimarket.channels.errors.AuthExpired`, 404
:class:`~agrimarket.channels.errors.ChannelNotFound`, another 4xx
:class:`~agrimarket.channels.errors.Rejected` and 5xx ``Retryable``. A platform that answers errors inside a
200 (Shopee's ``error`` field, Lazada's ``code``) maps its envelope itself, after this.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from agrimarket.channels.errors import AuthExpired, ChannelError, ChannelNotFound, RateLimited, Rejected, Retryable

# Explicit timeouts: a marketplace that hangs must not hold a worker (or a connection's lease) for long.
DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
MESSAGE_LIMIT = 500

MessageOf = Callable[[httpx.Response], str | None]


def new_client(**kwargs: object) -> httpx.AsyncClient:
    """The client a process shares between all adapters (one pool, explicit timeouts)."""
    return httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, limits=DEFAULT_LIMITS, **kwargs)  # type: ignore[arg-type]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _body_message(response: httpx.Response) -> str | None:
    """A message from a JSON error body's usual fields, else the start of the text."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:MESSAGE_LIMIT] or None
    if isinstance(data, dict):
        for key in ("message", "msg", "error_description", "error", "detail"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value[:MESSAGE_LIMIT]
    return None


def error_for_status(response: httpx.Response, *, message_of: MessageOf | None = None) -> ChannelError | None:
    """The channel error an HTTP answer means, or None for a success (2xx/3xx)."""
    status = response.status_code
    if status < 400:
        return None
    message = (message_of or _body_message)(response) or f"HTTP {status} from {response.request.url.host}"
    if status == 429:
        return RateLimited(message, retry_after=parse_retry_after(response.headers.get("retry-after")), status=status)
    if status == 401:
        return AuthExpired(message, status=status)
    if status == 404:
        return ChannelNotFound(message, status=status)
    if status in (408, 425) or status >= 500:
        error = Retryable(message, status=status)
        if (hint := parse_retry_after(response.headers.get("retry-after"))) is not None and status == 503:
            return RateLimited(message, retry_after=hint, status=status)
        return error
    return Rejected(message, status=status)


async def send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    auth: httpx.Auth | None = None,
    message_of: MessageOf | None = None,
) -> httpx.Response:
    """Send one request; the answer if it succeeded, else the matching channel error, raised."""
    try:
        response = await client.send(request, auth=auth) if auth is not None else await client.send(request)
    except httpx.TimeoutException as exc:
        raise Retryable(f"The marketplace did not answer in time ({type(exc).__name__}).") from exc
    except httpx.TransportError as exc:
        raise Retryable(f"Could not reach the marketplace ({type(exc).__name__}: {exc}).") from exc
    error = error_for_status(response, message_of=message_of)
    if error is not None:
        raise error
    return response
