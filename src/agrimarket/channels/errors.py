"""What can go wrong when talking to a marketplace, in five kinds the engine knows how to act on.

Adapters raise only these (``agrimarket.channels.http`` maps httpx's errors to them in one place), so the sync
engine and the order pipeline never see a transport exception or a platform's own error envelope:

- :class:`Retryable`: a 5xx, a timeout, a dropped connection. Try again later, with backoff.
- :class:`RateLimited`: the platform said "too many requests"; ``retry_after`` is its hint in seconds.
- :class:`AuthExpired`: the access token no longer works; refresh it once, then retry the call.
- :class:`Rejected`: the platform refused the data, with its own message. Retrying the same data cannot help.
- :class:`ChannelNotFound`: the item or order does not exist on the platform (any more).
"""

from __future__ import annotations


class ChannelError(Exception):
    """Base of every marketplace error. ``message`` is meant for people (the platform's own words where it gave
    some); ``code`` is the platform's error code, for logs and tests. ``external_item_id``: set by a publish that
    failed after the platform had already made the item (Tiki: a product request sent), the item's id, so the
    engine keeps it and the next publish carries on with that item instead of making it a second time."""

    retryable = False

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.external_item_id: str | None = None

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]" if self.code else self.message


class Retryable(ChannelError):
    retryable = True


class RateLimited(Retryable):
    def __init__(
        self,
        message: str = "The marketplace asks us to slow down.",
        *,
        retry_after: float | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after


class AuthExpired(ChannelError):
    """The shop's authorisation no longer works: refresh the token, or ask the seller to connect again."""


class Rejected(ChannelError):
    """The platform refused this data. ``field`` names our field when the platform said which one."""

    def __init__(
        self, message: str, *, code: str | None = None, status: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.field = field


class ChannelNotFound(ChannelError):
    """The item, SKU or order is not on the platform."""


class InvalidSignature(ChannelError):
    """A webhook whose signature does not verify: not from the platform, or altered on the way."""


class MalformedEvent(ChannelError):
    """A webhook whose signature verifies but whose body we cannot read."""
