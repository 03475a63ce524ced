from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.catalog.helpers import add_listing, desired_version
from tests.factories import Account, create_product, product_body, register


async def _listings(
    sessionmaker: async_sessionmaker[AsyncSession], account: Account, product: dict[str, object]
) -> list[uuid.UUID]:
    variants = product["variants"]
    assert isinstance(variants, list)
    return [
        await add_listing(
            sessionmaker, organization_id=account.organization_id, product_id=str(product["id"]), variant_id=v["id"]
        )
        for v in variants
    ]


async def test_product_edit_bumps_its_version_and_dirties_every_variant_listing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await register(client)
    product = await create_product(client, account, variants=2)
    listings = await _listings(sessionmaker, account, product)

    response = await client.patch(
        f"/api/v1/products/{product['id']}",
        json={"name": "Sầu riêng Ri6 loại 1", "shelf_life_days": 10, "harvest_date": "2025-07-01"},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["version"] == 2
    assert updated["name"] == "Sầu riêng Ri6 loại 1"
    assert updated["best_before"] == "2025-07-11"
    assert [await desired_version(sessionmaker, listing) for listing in listings] == [2, 2]


async def test_patch_that_changes_nothing_bumps_nothing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await register(client)
    product = await create_product(client, account)
    (listing,) = await _listings(sessionmaker, account, product)
    response = await client.patch(
        f"/api/v1/products/{product['id']}", json={"name": product["name"]}, headers=account.headers
    )
    assert response.json()["version"] == 1
    assert await desired_version(sessionmaker, listing) == 1


async def test_patch_can_clear_optional_fields_but_not_required_ones(client: httpx.AsyncClient) -> None:
    account = await register(client)
    product = await create_product(client, account, shelf_life_days=5)
    url = f"/api/v1/products/{product['id']}"
    cleared = await client.patch(url, json={"shelf_life_days": None}, headers=account.headers)
    assert cleared.json()["shelf_life_days"] is None
    refused = await client.patch(url, json={"name": None}, headers=account.headers)
    assert refused.status_code == 422
    assert refused.json()["field"] == "name"


async def test_variant_price_change_dirties_only_that_variants_listing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await register(client)
    product = await create_product(client, account, variants=2)
    first, second = await _listings(sessionmaker, account, product)
    variant = product["variants"][0]

    response = await client.patch(
        f"/api/v1/variants/{variant['id']}", json={"price_vnd": 135000}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    assert (response.json()["price_vnd"], response.json()["version"]) == (135000, 2)
    assert await desired_version(sessionmaker, first) == 2
    assert await desired_version(sessionmaker, second) == 1

    float_price = await client.patch(
        f"/api/v1/variants/{variant['id']}", json={"price_vnd": 135000.5}, headers=account.headers
    )
    assert float_price.status_code == 422
    assert float_price.json()["field"] == "price_vnd"


async def test_variant_sku_change_is_checked_against_the_organization(client: httpx.AsyncClient) -> None:
    account = await register(client)
    product = await create_product(client, account, variants=2)
    first, second = product["variants"]
    taken = await client.patch(f"/api/v1/variants/{second['id']}", json={"sku": first["sku"]}, headers=account.headers)
    assert taken.status_code == 409
    assert taken.json()["field"] == "sku"
    assert "of this product" in taken.json()["message"]
    renamed = await client.patch(f"/api/v1/variants/{second['id']}", json={"sku": "ri6-5kg"}, headers=account.headers)
    assert renamed.json()["sku"] == "RI6-5KG"


async def test_added_variant_gets_next_position_and_its_sku_is_checked(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await register(client)
    product = await create_product(client, account, variants=2)
    (listing, _) = await _listings(sessionmaker, account, product)
    url = f"/api/v1/products/{product['id']}/variants"
    new = {"sku": "RI6-10KG", "name": "Thùng 10 kg", "unit": "thung", "price_vnd": 1_050_000, "weight_grams": 11_000}

    response = await client.post(url, json={**new, "initial_stock": 4}, headers=account.headers)
    assert response.status_code == 201, response.text
    assert response.json()["position"] == 2
    assert response.json()["stock"] == {"on_hand": 4, "reserved": 0, "available": 4}
    assert await desired_version(sessionmaker, listing) == 2  # the product's set of variants changed

    again = await client.post(url, json=new, headers=account.headers)
    assert again.status_code == 409
    assert again.json()["field"] == "sku"

    fetched = await client.get(f"/api/v1/products/{product['id']}", headers=account.headers)
    assert fetched.json()["version"] == 2
    assert [v["sku"] for v in fetched.json()["variants"]][-1] == "RI6-10KG"


async def test_archive_keeps_the_product_and_its_stock_but_lists_it_only_on_request(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await register(client)
    product = await create_product(client, account, initial_stock=7)
    (listing,) = await _listings(sessionmaker, account, product)

    archived = await client.delete(f"/api/v1/products/{product['id']}", headers=account.headers)
    assert archived.status_code == 200, archived.text
    assert archived.json()["status"] == "archived"
    assert archived.json()["version"] == 2
    assert await desired_version(sessionmaker, listing) == 2  # the channels must take it down

    again = await client.delete(f"/api/v1/products/{product['id']}", headers=account.headers)
    assert again.json()["version"] == 2  # archiving twice changes nothing

    fetched = await client.get(f"/api/v1/products/{product['id']}", headers=account.headers)
    assert fetched.json()["variants"][0]["stock"]["on_hand"] == 7
    list_url = f"/api/v1/organizations/{account.organization_id}/products"
    assert (await client.get(list_url, headers=account.headers)).json()["items"] == []
    only_archived = await client.get(list_url, params={"status": "archived"}, headers=account.headers)
    assert [p["id"] for p in only_archived.json()["items"]] == [product["id"]]

    restored = await client.patch(
        f"/api/v1/products/{product['id']}", json={"status": "active"}, headers=account.headers
    )
    assert restored.json()["status"] == "active"


async def test_archiving_needs_an_admin_but_editing_does_not(client: httpx.AsyncClient) -> None:
    owner = await register(client)
    member = await register(client, name="Hộ của con")
    added = await client.post(
        f"/api/v1/organizations/{owner.organization_id}/memberships",
        json={"phone": member.phone, "role": "member"},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text
    product = await create_product(client, owner, variants=2)

    edit = await client.patch(f"/api/v1/products/{product['id']}", json={"name": "Sầu riêng"}, headers=member.headers)
    assert edit.status_code == 200
    assert (await client.delete(f"/api/v1/products/{product['id']}", headers=member.headers)).status_code == 403
    variant_id = product["variants"][0]["id"]
    assert (await client.delete(f"/api/v1/variants/{variant_id}", headers=member.headers)).status_code == 403


async def test_archived_variant_keeps_its_sku_and_the_last_variant_cannot_be_archived(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    product = await create_product(client, account, variants=2)
    first, second = product["variants"]

    archived = await client.delete(f"/api/v1/variants/{first['id']}", headers=account.headers)
    assert archived.status_code == 200, archived.text
    assert archived.json()["archived_at"] is not None

    last = await client.delete(f"/api/v1/variants/{second['id']}", headers=account.headers)
    assert last.status_code == 409
    assert "last variant on sale" in last.json()["message"]

    frozen = await client.patch(f"/api/v1/variants/{first['id']}", json={"price_vnd": 1}, headers=account.headers)
    assert frozen.status_code == 409

    reuse = product_body()
    reuse["variants"][0]["sku"] = first["sku"]
    response = await client.post(
        f"/api/v1/organizations/{account.organization_id}/products", json=reuse, headers=account.headers
    )
    assert response.status_code == 409
    assert "(archived)" in response.json()["message"]

    fetched = await client.get(f"/api/v1/products/{product['id']}", headers=account.headers)
    assert [v["id"] for v in fetched.json()["variants"]] == [first["id"], second["id"]]


async def test_certifications_are_added_and_removed_with_a_version_bump(client: httpx.AsyncClient) -> None:
    account = await register(client)
    product = await create_product(client, account)
    url = f"/api/v1/products/{product['id']}/certifications"
    ocop = {"kind": "ocop", "number": "OCOP-BP-2024-01", "stars": 4, "issuer": "UBND tỉnh Bình Phước"}

    added = await client.post(url, json=ocop, headers=account.headers)
    assert added.status_code == 201, added.text
    assert added.json()["stars"] == 4
    twice = await client.post(url, json=ocop, headers=account.headers)
    assert twice.status_code == 409
    assert twice.json()["field"] == "number"
    bad = await client.post(url, json={**ocop, "stars": 1}, headers=account.headers)
    assert bad.status_code == 422
    assert bad.json()["field"] == "stars"

    removed = await client.delete(f"/api/v1/certifications/{added.json()['id']}", headers=account.headers)
    assert removed.status_code == 204
    fetched = await client.get(f"/api/v1/products/{product['id']}", headers=account.headers)
    assert fetched.json()["certifications"] == []
    assert fetched.json()["version"] == 3
    gone = await client.delete(f"/api/v1/certifications/{added.json()['id']}", headers=account.headers)
    assert gone.status_code == 404


async def test_another_tenants_objects_answer_exactly_like_missing_ones(client: httpx.AsyncClient) -> None:
    owner, stranger = await register(client), await register(client, name="Hộ hàng xóm")
    product = await create_product(client, owner, certifications=[{"kind": "ocop", "number": "OCOP-1", "stars": 3}])
    variant_id = product["variants"][0]["id"]
    certification_id = product["certifications"][0]["id"]
    missing = str(uuid.uuid4())
    variant_body = {"sku": "X-1", "name": "Hộp", "unit": "hop", "price_vnd": 1000, "weight_grams": 100}
    requests = [
        ("GET", "/api/v1/products/{}", None, product["id"]),
        ("PATCH", "/api/v1/products/{}", {"name": "Của tôi"}, product["id"]),
        ("DELETE", "/api/v1/products/{}", None, product["id"]),
        ("POST", "/api/v1/products/{}/variants", variant_body, product["id"]),
        ("POST", "/api/v1/products/{}/certifications", {"kind": "ocop", "number": "O", "stars": 3}, product["id"]),
        ("GET", "/api/v1/variants/{}", None, variant_id),
        ("PATCH", "/api/v1/variants/{}", {"price_vnd": 1000}, variant_id),
        ("DELETE", "/api/v1/variants/{}", None, variant_id),
        ("DELETE", "/api/v1/certifications/{}", None, certification_id),
    ]
    for method, template, body, own_id in requests:
        theirs = await client.request(method, template.format(own_id), json=body, headers=stranger.headers)
        nothing = await client.request(method, template.format(missing), json=body, headers=stranger.headers)
        assert theirs.status_code == nothing.status_code == 404, (method, template)
        assert theirs.json() == nothing.json()
    unchanged = await client.get(f"/api/v1/products/{product['id']}", headers=owner.headers)
    assert unchanged.json() == {**product, "photos": []}
