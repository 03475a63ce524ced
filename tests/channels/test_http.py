"""Every HTTP outcome turns into the channel error the engine acts on, in one place."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from agrimarket.channels.errors import AuthExpired, ChannelError, ChannelNotFound, RateLimited, Rejected, Retryable
from agrimarket.channels.http import parse_retry_after, send

Handler = Callable[[httpx.Request], httpx.Response]


async def answer(handler: Handler) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await send(client, client.build_request("POST", "https://partner.example.vn/api/v2/product/update"))


async def refused(handler: Handler) -> ChannelError:
    with pytest.raises(ChannelError) as raised:
        await answer(handler)
    return raised.value


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def status(code: int, **kwargs: object) -> Handler:
    return lambda request: httpx.Response(code, **kwargs)  # type: ignore[arg-type]


async def test_a_success_passes_through() -> None:
    response = await answer(status(200, json={"item_id": 1}))
    assert response.json() == {"item_id": 1}


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), httpx.ConnectError("refused"), httpx.ReadError("reset")],
)
async def test_a_timeout_or_a_dropped_connection_is_retryable(exc: Exception) -> None:
    error = await refused(raising(exc))
    assert type(error) is Retryable
    assert isinstance(error.__cause__, httpx.TransportError)


async def test_too_many_requests_carries_the_retry_after_seconds() -> None:
    error = await refused(status(429, headers={"Retry-After": "7"}))
    assert isinstance(error, RateLimited)
    assert (error.retry_after, error.status) == (7.0, 429)


async def test_too_many_requests_reads_a_retry_after_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    error = await refused(status(429, headers={"Retry-After": format_datetime(when, usegmt=True)}))
    assert isinstance(error, RateLimited)
    assert error.retry_after is not None
    assert 25 <= error.retry_after <= 30


async def test_too_many_requests_without_a_hint_has_none() -> None:
    error = await refused(status(429))
    assert isinstance(error, RateLimited)
    assert error.retry_after is None


def test_a_retry_after_in_the_past_or_unreadable_is_no_wait_or_none() -> None:
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("Sun, 01 Jun 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("  ") is None
    assert parse_retry_after("nan") is None


async def test_unauthorised_is_an_expired_authorisation() -> None:
    assert type(await refused(status(401, json={"message": "token expired"}))) is AuthExpired


async def test_not_found_is_channel_not_found() -> None:
    assert type(await refused(status(404))) is ChannelNotFound


async def test_a_bad_request_is_rejected_with_the_platforms_message() -> None:
    error = await refused(status(400, json={"error": "param_error", "message": "Tên sản phẩm quá dài."}))
    assert type(error) is Rejected
    assert (error.message, error.status) == ("Tên sản phẩm quá dài.", 400)


async def test_a_bad_request_with_a_text_body_keeps_its_text() -> None:
    error = await refused(status(422, text="weight must be positive"))
    assert type(error) is Rejected
    assert error.message == "weight must be positive"


@pytest.mark.parametrize("code", [500, 502, 503, 504, 408])
async def test_a_server_error_is_retryable(code: int) -> None:
    error = await refused(status(code))
    assert type(error) is Retryable
    assert error.status == code
    assert "partner.example.vn" in error.message


async def test_unavailable_with_a_retry_after_is_throttling() -> None:
    error = await refused(status(503, headers={"Retry-After": "12"}))
    assert isinstance(error, RateLimited)
    assert error.retry_after == 12.0
