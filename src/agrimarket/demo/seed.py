"""Put the demo cooperative in place through AgriMarket's own API, the way a person would: register, add products
with photos, connect each sandbox shop, publish everything to it. Idempotent: a second start finds the account and
only connects or publishes what is missing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from agrimarket.demo.catalog import PRODUCTS, DemoProduct, photo
from agrimarket.observability import get_logger

log = get_logger(__name__)

DEMO_PHONE = "0987654321"
DEMO_PASSWORD = "nongsan-demo"  # noqa: S105 - the demo account's published password (development only)
DEMO_ORGANIZATION = "HTX Nông sản Bình Phước (demo)"
DEMO_NAME = "Trần Thị Mai"


@dataclass(frozen=True)
class ShopToConnect:
    channel: str
    name: str
    credentials: dict[str, Any] = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)
    category_map: dict[str, str] = field(default_factory=dict)


@dataclass
class Seeded:
    organization_id: str
    product_ids: list[str]
    connection_ids: dict[str, str]  # connection name → id
    created: bool


class SeedError(RuntimeError):
    pass


def _ok(response: httpx.Response, *expected: int) -> dict[str, Any]:
    if response.status_code not in (expected or (200,)):
        raise SeedError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
        )
    if response.status_code == 204 or not response.content:
        return {}
    body: Any = response.json()
    return body if isinstance(body, dict) else {"items": body}


async def _log_in(client: httpx.AsyncClient) -> tuple[str, bool]:
    """The demo organization's id, registering the account the first time."""
    response = await client.post("/api/v1/auth/login", json={"phone": DEMO_PHONE, "password": DEMO_PASSWORD})
    if response.status_code == 200:
        organizations = response.json()["organizations"]
        return str(organizations[0]["id"]), False
    body = _ok(
        await client.post(
            "/api/v1/auth/register",
            json={
                "phone": DEMO_PHONE,
                "password": DEMO_PASSWORD,
                "full_name": DEMO_NAME,
                "organization_name": DEMO_ORGANIZATION,
                "organization_kind": "cooperative",
            },
        ),
        201,
    )
    return str(body["organizations"][0]["id"]), True


async def _products(client: httpx.AsyncClient, organization_id: str, products: Sequence[DemoProduct]) -> list[str]:
    listed = _ok(await client.get(f"/api/v1/organizations/{organization_id}/products", params={"limit": 100}))
    existing = {p["name"]: str(p["id"]) for p in listed.get("items", [])}
    ids: list[str] = []
    for number, product in enumerate(products):
        product_id = existing.get(product.name)
        if product_id is None:
            created = _ok(
                await client.post(f"/api/v1/organizations/{organization_id}/products", json=product.body()), 201
            )
            product_id = str(created["id"])
            _ok(
                await client.post(
                    f"/api/v1/products/{product_id}/photos",
                    files={"photo": (f"{product.look}.jpg", photo(product.look, seed=number), "image/jpeg")},
                ),
                201,
            )
        ids.append(product_id)
    return ids


async def _connection(client: httpx.AsyncClient, organization_id: str, shop: ShopToConnect) -> str:
    listed = _ok(await client.get(f"/api/v1/organizations/{organization_id}/connections"))
    for connection in listed.get("items", []):
        if connection["channel"] == shop.channel and connection["name"] == shop.name:
            connection_id = str(connection["id"])
            # The sandbox may have started afresh with new tokens: hand it the shop's current credentials.
            _ok(
                await client.patch(
                    f"/api/v1/connections/{connection_id}",
                    json={
                        "credentials": shop.credentials,
                        "settings": shop.settings,
                        "category_map": shop.category_map,
                        "status": "active",
                    },
                )
            )
            return connection_id
    created = _ok(
        await client.post(
            f"/api/v1/organizations/{organization_id}/connections",
            json={
                "channel": shop.channel,
                "name": shop.name,
                "credentials": shop.credentials,
                "settings": shop.settings,
                "category_map": shop.category_map,
            },
        ),
        201,
    )
    return str(created["id"])


async def seed(
    client: httpx.AsyncClient, shops: Sequence[ShopToConnect], products: Sequence[DemoProduct] = PRODUCTS
) -> Seeded:
    """``client`` speaks to the app (an ``ASGITransport`` in process); it keeps the session cookie it is given."""
    organization_id, created = await _log_in(client)
    product_ids = await _products(client, organization_id, products)
    connection_ids: dict[str, str] = {}
    for shop in shops:
        connection_id = await _connection(client, organization_id, shop)
        connection_ids[shop.name] = connection_id
        listed = _ok(await client.get(f"/api/v1/connections/{connection_id}/listings", params={"limit": 100}))
        on_shop = {str(item["product_id"]) for item in listed.get("items", [])}
        for product_id in product_ids:
            if product_id not in on_shop:
                _ok(
                    await client.post(f"/api/v1/connections/{connection_id}/listings", json={"product_id": product_id}),
                    201,
                )
    log.info("demo_seeded", organization_id=organization_id, shops=len(shops), first_time=created)
    return Seeded(organization_id, product_ids, connection_ids, created)
