"""Plain functions that make test data through the public API, the way a user would."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import httpx

_numbers = itertools.count(1)
PASSWORD = "mat-khau-an-toan"
SESSION_COOKIE = "agrimarket_session"


def new_phone() -> str:
    """A fresh, valid Vietnamese mobile number (VinaPhone 091 range), in the local spelling people type."""
    return f"091{next(_numbers) + 1_000_000:07d}"


@dataclass
class Account:
    """A logged-in person: the session cookie to send, their user id and the organization they own."""

    phone: str
    user_id: str
    organization_id: str
    session_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": f"{SESSION_COOKIE}={self.session_token}"}


async def register(
    client: httpx.AsyncClient,
    *,
    kind: str = "household",
    name: str = "Hộ Nguyễn Văn An",
    phone: str | None = None,
) -> Account:
    phone = phone or new_phone()
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "phone": phone,
            "password": PASSWORD,
            "full_name": "Nguyễn Văn An",
            "organization_name": name,
            "organization_kind": kind,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    token = response.cookies[SESSION_COOKIE]
    client.cookies.clear()  # each account sends its own cookie explicitly
    return Account(
        phone=phone,
        user_id=body["user"]["id"],
        organization_id=body["organizations"][0]["id"],
        session_token=token,
    )
