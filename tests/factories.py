"""Plain functions that make test data through the public API, the way a user would."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

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


_skus = itertools.count(1)


def product_body(
    *, name: str = "Sầu riêng Ri6", variants: int = 1, initial_stock: int = 0, **fields: Any
) -> dict[str, Any]:
    """A valid create-product request: each variant gets a fresh SKU (``SKU-<n>``)."""
    body: dict[str, Any] = {
        "name": name,
        "category": "fruit",
        "variants": [
            {
                "sku": f"SKU-{next(_skus)}",
                "name": f"Hộp {i + 1} kg",
                "unit": "hop",
                "price_vnd": 120_000 * (i + 1),
                "weight_grams": 1_200 * (i + 1),
                "initial_stock": initial_stock,
            }
            for i in range(variants)
        ],
    }
    body.update(fields)
    return body


async def create_product(
    client: httpx.AsyncClient,
    account: Account,
    *,
    name: str = "Sầu riêng Ri6",
    variants: int = 1,
    initial_stock: int = 0,
    **fields: Any,
) -> dict[str, Any]:
    """Create a product in the account's organization through the API; returns the response body."""
    response = await client.post(
        f"/api/v1/organizations/{account.organization_id}/products",
        json=product_body(name=name, variants=variants, initial_stock=initial_stock, **fields),
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
