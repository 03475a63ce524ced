"""One error base with an HTTP status; handlers turn them into JSON a farmer or clerk can act on."""

from __future__ import annotations

from typing import Any


class AgriMarketError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body


class NotFound(AgriMarketError):
    """Also what another tenant's object looks like: its existence is not revealed."""

    status_code = 404
    code = "not_found"


class Conflict(AgriMarketError):
    status_code = 409
    code = "conflict"


class Invalid(AgriMarketError):
    status_code = 422
    code = "invalid"


class NotAuthenticated(AgriMarketError):
    status_code = 401
    code = "not_authenticated"


class Forbidden(AgriMarketError):
    status_code = 403
    code = "forbidden"


class TooManyRequests(AgriMarketError):
    status_code = 429
    code = "too_many_requests"


class PayloadTooLarge(AgriMarketError):
    status_code = 413
    code = "payload_too_large"


class Unavailable(AgriMarketError):
    """Something outside AgriMarket (a marketplace) did not answer; trying again later may work."""

    status_code = 503
    code = "unavailable"
