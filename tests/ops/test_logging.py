"""Structured logs: a request id on every request, one access line each, stdlib loggers in the same format."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI

from agrimarket.config import Settings
from agrimarket.observability import bind_log_context, configure_logging
from tests.factories import register

LogLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_logs(app: FastAPI, settings: Settings, capsys: pytest.CaptureFixture[str]) -> Iterator[LogLines]:
    """JSON logs at INFO, as in production; returns a function giving the lines written since the last call."""
    configure_logging(json_logs=True, level="INFO")  # after `app`, whose creation configured the test settings
    capsys.readouterr()

    def lines() -> list[dict[str, Any]]:
        written = capsys.readouterr().err.splitlines()
        return [json.loads(line) for line in written if line.startswith("{")]

    yield lines
    configure_logging(json_logs=settings.json_logs, level=settings.log_level)


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("logger") == "agrimarket.access"]


async def test_one_json_access_line_per_request_with_route_user_and_organization(
    client: httpx.AsyncClient, json_logs: LogLines
) -> None:
    account = await register(client)
    json_logs()

    response = await client.get(
        f"/api/v1/organizations/{account.organization_id}",
        headers={**account.headers, "X-Request-ID": "req-42.retry_1"},
    )
    assert response.status_code == 200, response.text

    [line] = access_lines(json_logs())
    assert line["event"] == "request"
    assert line["level"] == "info"
    assert line["request_id"] == "req-42.retry_1"
    assert line["method"] == "GET"
    assert line["path"] == f"/api/v1/organizations/{account.organization_id}"
    assert line["route"] == "/api/v1/organizations/{organization_id}"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    assert line["user_id"] == account.user_id
    assert line["organization_id"] == account.organization_id  # bound by Access.require
    assert "timestamp" in line


async def test_a_refused_organization_is_logged_with_the_organization_asked_for(
    client: httpx.AsyncClient, json_logs: LogLines
) -> None:
    owner, stranger = await register(client), await register(client)
    json_logs()

    response = await client.get(f"/api/v1/organizations/{owner.organization_id}", headers=stranger.headers)
    assert response.status_code == 404

    [line] = access_lines(json_logs())
    assert line["status"] == 404
    assert line["user_id"] == stranger.user_id
    assert line["organization_id"] == owner.organization_id


async def test_a_sane_request_id_is_kept_and_returned(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-DEF_123.4"})
    assert response.headers["x-request-id"] == "abc-DEF_123.4"


@pytest.mark.parametrize("given", [None, "x" * 65, "has spaces", "<script>", ""])
async def test_a_missing_or_odd_request_id_is_replaced_by_a_new_one(
    client: httpx.AsyncClient, given: str | None
) -> None:
    headers = {} if given is None else {"X-Request-ID": given}
    first = (await client.get("/healthz", headers=headers)).headers["x-request-id"]
    second = (await client.get("/healthz", headers=headers)).headers["x-request-id"]
    assert first != given
    assert len(first) == 32
    assert int(first, 16) >= 0  # hex
    assert first != second


async def test_request_values_do_not_outlive_the_request(client: httpx.AsyncClient) -> None:
    account = await register(client)
    await client.get(f"/api/v1/organizations/{account.organization_id}", headers=account.headers)
    bound = structlog.contextvars.get_contextvars()
    assert "request_id" not in bound
    assert "user_id" not in bound
    assert "organization_id" not in bound


async def test_stdlib_loggers_write_the_same_json_with_the_bound_values(json_logs: LogLines) -> None:
    bind_log_context(request_id="from-test")
    try:
        logging.getLogger("uvicorn.error").warning("worker %s stopped", 3)
        logging.getLogger("alembic.runtime.migration").info("Running upgrade  -> 0001, initial schema")
    finally:
        structlog.contextvars.unbind_contextvars("request_id")

    uvicorn_line, alembic_line = json_logs()
    assert uvicorn_line["event"] == "worker 3 stopped"
    assert uvicorn_line["level"] == "warning"
    assert uvicorn_line["logger"] == "uvicorn.error"
    assert uvicorn_line["request_id"] == "from-test"
    assert "timestamp" in uvicorn_line
    assert alembic_line["logger"] == "alembic.runtime.migration"
    assert alembic_line["event"].startswith("Running upgrade")


def test_configuring_logging_again_replaces_its_handler_and_keeps_others() -> None:
    root = logging.getLogger()
    other = logging.NullHandler()
    root.addHandler(other)
    try:
        for _ in range(3):
            configure_logging(json_logs=False, level="WARNING")
        ours = [handler for handler in root.handlers if handler.get_name() == "agrimarket"]
        assert len(ours) == 1
        assert other in root.handlers
    finally:
        root.removeHandler(other)


async def test_outgoing_marketplace_calls_never_log_their_access_token(json_logs: LogLines) -> None:
    secret = "8ab262ff23abfb641d41296a112fd9dd"
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"response": {}}))
    async with httpx.AsyncClient(transport=transport) as http:
        response = await http.get(
            "https://partner.shopeemobile.com/api/v2/shop/get_shop_info", params={"access_token": secret}
        )
    assert response.status_code == 200

    assert not [line for line in json_logs() if secret in json.dumps(line)]
