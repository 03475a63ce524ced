from __future__ import annotations

import unicodedata
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.models import Certification, Product, StockLevel, StockMovement, Variant
from tests.catalog.helpers import count_rows
from tests.factories import Account, create_product, product_body, register


def products_url(account: Account) -> str:
    return f"/api/v1/organizations/{account.organization_id}/products"


async def post_product(client: httpx.AsyncClient, account: Account, body: dict[str, Any]) -> httpx.Response:
    return await client.post(products_url(account), json=body, headers=account.headers)


async def test_create_product_with_variants_certifications_and_opening_stock(client: httpx.AsyncClient) -> None:
    account = await register(client)
    body = {
        "name": "Sầu riêng Ri6 Bình Phước",
        "description": "Chín cây, giao trong ngày.\nHàng tuyển loại 1.",
        "category": "fruit",
        "harvest_date": "2025-06-01",
        "shelf_life_days": 7,
        "certifications": [
            {"kind": "vietgap", "number": "VG-2024-0117", "issuer": "Sở NN&PTNT", "expires_on": "2099-12-31"},
            {"kind": "ocop", "number": "OCOP-BP-12", "stars": 4},
        ],
        "variants": [
            {
                "sku": "DURIAN-1KG",
                "name": "Hộp 1 kg",
                "unit": "hop",
                "price_vnd": 120000,
                "weight_grams": 1200,
                "initial_stock": 25,
            },
            {"sku": "DURIAN-5KG", "name": "Thùng 5 kg", "unit": "thung", "price_vnd": 550000, "weight_grams": 5600},
        ],
    }
    response = await post_product(client, account, body)
    assert response.status_code == 201, response.text
    product = response.json()
    assert product["organization_id"] == account.organization_id
    assert product["status"] == "active"
    assert product["version"] == 1
    assert product["best_before"] == "2025-06-08"
    assert product["description"] == "Chín cây, giao trong ngày.\nHàng tuyển loại 1."
    assert [v["sku"] for v in product["variants"]] == ["DURIAN-1KG", "DURIAN-5KG"]
    assert [v["position"] for v in product["variants"]] == [0, 1]
    assert product["variants"][0]["stock"] == {"on_hand": 25, "reserved": 0, "available": 25}
    assert product["variants"][1]["stock"] == {"on_hand": 0, "reserved": 0, "available": 0}
    assert {(c["kind"], c["stars"]) for c in product["certifications"]} == {("vietgap", None), ("ocop", 4)}

    fetched = await client.get(f"/api/v1/products/{product['id']}", headers=account.headers)
    assert fetched.status_code == 200
    assert fetched.json() == {**product, "photos": []}

    movements = await client.get(
        f"/api/v1/variants/{product['variants'][0]['id']}/stock/movements", headers=account.headers
    )
    (opening,) = movements.json()["items"]
    assert (opening["kind"], opening["on_hand_delta"], opening["on_hand_after"]) == ("receive", 25, 25)
    assert opening["actor_user_id"] == account.user_id


async def test_text_sent_decomposed_is_stored_composed_and_folded(client: httpx.AsyncClient) -> None:
    account = await register(client)
    name = "Sầu riêng  Ri6 "
    body = product_body(
        name=unicodedata.normalize("NFD", name),
        description=unicodedata.normalize("NFD", "Hạt lép, cơm vàng"),
    )
    body["variants"][0]["name"] = unicodedata.normalize("NFD", "Hộp 1 ký")
    response = await post_product(client, account, body)
    assert response.status_code == 201, response.text
    product = response.json()
    assert product["name"] == "Sầu riêng Ri6"
    assert unicodedata.is_normalized("NFC", product["name"])
    assert product["description"] == "Hạt lép, cơm vàng"
    assert product["variants"][0]["name"] == "Hộp 1 ký"


async def test_sku_is_stored_upper_case_so_case_does_not_make_a_new_sku(client: httpx.AsyncClient) -> None:
    account = await register(client)
    body = product_body()
    body["variants"][0]["sku"] = "  durian-1kg.vip_a "
    first = await post_product(client, account, body)
    assert first.status_code == 201, first.text
    assert first.json()["variants"][0]["sku"] == "DURIAN-1KG.VIP_A"

    again = product_body(name="Sầu riêng khác")
    again["variants"][0]["sku"] = "Durian-1kg.Vip_A"
    response = await post_product(client, account, again)
    assert response.status_code == 409
    assert response.json()["field"] == "variants.0.sku"


def _variant_field(name: str, value: Any) -> dict[str, Any]:
    body = product_body()
    body["variants"][0][name] = value
    return body


def _certification(**fields: Any) -> dict[str, Any]:
    return product_body(certifications=[fields])


INVALID_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("name over 200 characters", product_body(name="Sầu riêng " + "x" * 200), "name"),
    ("name of only spaces", product_body(name="   "), "name"),
    ("description over 5000 characters", product_body(description="a" * 5001), "description"),
    ("unknown category", product_body(category="durian"), "category"),
    ("shelf life of zero days", product_body(shelf_life_days=0), "shelf_life_days"),
    ("shelf life over ten years", product_body(shelf_life_days=3651), "shelf_life_days"),
    ("no variants", product_body(variants=0), "variants"),
    ("a field the API does not know", product_body(colour="vàng"), "colour"),
    ("negative price", _variant_field("price_vnd", -1000), "variants.0.price_vnd"),
    ("zero price", _variant_field("price_vnd", 0), "variants.0.price_vnd"),
    ("price with decimals", _variant_field("price_vnd", 12.5), "variants.0.price_vnd"),
    ("price as float without decimals", _variant_field("price_vnd", 120000.0), "variants.0.price_vnd"),
    ("price as a string", _variant_field("price_vnd", "120000"), "variants.0.price_vnd"),
    ("price as a boolean", _variant_field("price_vnd", True), "variants.0.price_vnd"),
    ("absurd price", _variant_field("price_vnd", 1_000_000_001), "variants.0.price_vnd"),
    ("zero weight", _variant_field("weight_grams", 0), "variants.0.weight_grams"),
    ("weight over 100 kg", _variant_field("weight_grams", 100_001), "variants.0.weight_grams"),
    ("variant name over 120 characters", _variant_field("name", "h" * 121), "variants.0.name"),
    ("SKU with a space", _variant_field("sku", "DURIAN 1KG"), "variants.0.sku"),
    ("SKU with Vietnamese letters", _variant_field("sku", "SẦU-RIÊNG"), "variants.0.sku"),
    ("SKU over 64 characters", _variant_field("sku", "A" * 65), "variants.0.sku"),
    ("empty SKU", _variant_field("sku", "  "), "variants.0.sku"),
    ("negative opening stock", _variant_field("initial_stock", -1), "variants.0.initial_stock"),
    (
        "OCOP with 2 stars",
        _certification(kind="ocop", number="OCOP-1", stars=2),
        "certifications.0.stars",
    ),
    (
        "OCOP with 6 stars",
        _certification(kind="ocop", number="OCOP-1", stars=6),
        "certifications.0.stars",
    ),
    ("OCOP without stars", _certification(kind="ocop", number="OCOP-1"), "certifications.0.stars"),
    (
        "VietGAP with stars",
        _certification(kind="vietgap", number="VG-1", stars=4, expires_on="2099-01-01"),
        "certifications.0.stars",
    ),
    ("VietGAP without expiry", _certification(kind="vietgap", number="VG-1"), "certifications.0.expires_on"),
    (
        "organic certificate already expired",
        _certification(kind="organic", number="ORG-1", expires_on="2020-01-01"),
        "certifications.0.expires_on",
    ),
    (
        "certificate without number",
        _certification(kind="globalgap", expires_on="2099-01-01"),
        "certifications.0.number",
    ),
]


@pytest.mark.parametrize(
    ("body", "field"), [(b, f) for _, b, f in INVALID_BODIES], ids=[i for i, _, _ in INVALID_BODIES]
)
async def test_invalid_product_is_refused_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    account = await register(client)
    response = await post_product(client, account, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == field
    assert error["message"]


async def test_unknown_unit_is_refused_listing_the_allowed_units(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await post_product(client, account, _variant_field("unit", "tấn"))
    assert response.status_code == 422
    error = response.json()
    assert error["field"] == "variants.0.unit"
    assert "kg, g, hop, thung, tui, chai, hu, qua, bo, lit, cai" in error["message"]


async def test_decimal_price_gets_a_message_about_whole_dong(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await post_product(client, account, _variant_field("price_vnd", 12.5))
    assert "whole đồng" in response.json()["message"]


async def test_over_long_name_message_says_the_limit(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await post_product(client, account, product_body(name="x" * 250))
    assert "at most 200 characters; this has 250" in response.json()["message"]


async def test_duplicate_sku_within_the_request_is_a_conflict_naming_the_second(client: httpx.AsyncClient) -> None:
    account = await register(client)
    body = product_body(variants=3)
    body["variants"][2]["sku"] = body["variants"][0]["sku"].lower()
    response = await post_product(client, account, body)
    assert response.status_code == 409
    error = response.json()
    assert error["field"] == "variants.2.sku"
    assert body["variants"][0]["sku"] in error["message"]


async def test_sku_of_another_product_is_a_conflict_naming_sku_and_field(client: httpx.AsyncClient) -> None:
    account = await register(client)
    existing = await create_product(client, account, name="Sầu riêng Monthong")
    taken = existing["variants"][0]["sku"]
    body = product_body(variants=2)
    body["variants"][1]["sku"] = taken
    response = await post_product(client, account, body)
    assert response.status_code == 409
    error = response.json()
    assert error["code"] == "conflict"
    assert error["field"] == "variants.1.sku"
    assert error["message"].startswith(f"SKU {taken} is already used by another product of this organization")
    assert "Sầu riêng Monthong" in error["message"]


async def test_same_sku_in_two_organizations_is_fine(client: httpx.AsyncClient) -> None:
    first, second = await register(client), await register(client, name="Hộ Lê Văn Bình")
    body = product_body()
    assert (await post_product(client, first, body)).status_code == 201
    assert (await post_product(client, second, body)).status_code == 201


async def test_failed_create_writes_nothing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await register(client)
    existing = await create_product(client, account, initial_stock=3)
    tables = (Product, Variant, StockLevel, StockMovement, Certification)
    before = await count_rows(sessionmaker, *tables)

    # Two good variants with opening stock and a certification, then one whose SKU is taken.
    body = product_body(
        variants=3,
        initial_stock=10,
        certifications=[{"kind": "ocop", "number": "OCOP-9", "stars": 5}],
    )
    body["variants"][2]["sku"] = existing["variants"][0]["sku"]
    response = await post_product(client, account, body)
    assert response.status_code == 409

    assert await count_rows(sessionmaker, *tables) == before
    listed = await client.get(products_url(account), headers=account.headers)
    assert [p["id"] for p in listed.json()["items"]] == [existing["id"]]


async def test_creating_in_an_organization_out_of_reach_is_not_found(client: httpx.AsyncClient) -> None:
    owner, stranger = await register(client), await register(client, name="Hộ khác")
    response = await client.post(products_url(owner), json=product_body(), headers=stranger.headers)
    assert response.status_code == 404


async def test_products_need_a_logged_in_caller(client: httpx.AsyncClient) -> None:
    account = await register(client)
    assert (await client.get(products_url(account))).status_code == 401


async def test_sku_taken_after_the_check_is_still_a_precise_conflict(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a race looks like: another request saved the SKU between this one's check and its insert."""
    from agrimarket.catalog.repository import CatalogRepository

    account = await register(client)
    existing = await create_product(client, account, variants=2)
    taken, other = (v["sku"] for v in existing["variants"])

    async def check_saw_nothing(self: CatalogRepository, organization_id: object, skus: object) -> dict[str, object]:
        return {}

    monkeypatch.setattr(CatalogRepository, "skus_in_use", check_saw_nothing)
    tables = (Product, Variant, StockLevel, StockMovement)
    before = await count_rows(sessionmaker, *tables)

    body = product_body(variants=2, initial_stock=1)
    body["variants"][1]["sku"] = taken
    created = await post_product(client, account, body)
    assert created.status_code == 409
    assert created.json()["field"] == "variants.1.sku"
    assert f"SKU {taken} was just saved" in created.json()["message"]
    assert await count_rows(sessionmaker, *tables) == before

    renamed = await client.patch(
        f"/api/v1/variants/{existing['variants'][0]['id']}", json={"sku": other}, headers=account.headers
    )
    assert renamed.status_code == 409
    assert renamed.json()["field"] == "sku"
