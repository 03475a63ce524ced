"""Listing products on connected shops: overrides, validation against the channel, status and its changes."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.channels.base import ListingLimits, VariantDraft
from agrimarket.channels.reference import ReferencePlugin, default_capabilities
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.channels.validation import check_listing
from agrimarket.media.storage import LocalStorage
from agrimarket.models import Job, JobStatus, Listing, ListingStatus
from agrimarket.sync.queue import SYNC_KIND
from tests.factories import Account, create_product, register
from tests.media import images

# A channel as strict as the real marketplaces: a category, a description, photos and a brand are required.
STRICT = ReferencePlugin(
    "strict",
    dataclasses.replace(
        default_capabilities("strict"),
        display_name="Shopee",
        required_fields=frozenset({"category", "description", "images", "attributes.brand"}),
        limits=ListingLimits(title_max=30, price_min_vnd=1_000, price_max_vnd=200_000, variants_max=3, stock_max=100),
    ),
)


@pytest.fixture(autouse=True)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ChannelRegistry:
    """These tests' channels, on whichever app the test uses; photos in the test's own folder."""
    committing = "committing_app" in request.fixturenames
    app: FastAPI = request.getfixturevalue("committing_app" if committing else "app")
    registry = ChannelRegistry()
    registry.add(ReferencePlugin())
    registry.add(STRICT)
    app.state.channels = registry
    app.state.media_storage = LocalStorage(tmp_path / "media")
    return registry


def _credentials() -> dict[str, str]:
    return {"shop_id": f"shop-{uuid.uuid4().hex[:8]}", "access_token": "at", "refresh_token": "rt"}


async def connect(
    client: httpx.AsyncClient, account: Account, channel: str = "reference", **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/organizations/{account.organization_id}/connections",
        json={"channel": channel, "name": f"Shop {channel}", "credentials": _credentials(), **fields},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def publish(
    client: httpx.AsyncClient, account: Account, connection_id: str, product_id: str, **overrides: Any
) -> httpx.Response:
    return await client.post(
        f"/api/v1/connections/{connection_id}/listings",
        json={"product_id": product_id, "overrides": overrides},
        headers=account.headers,
    )


async def rows(session: AsyncSession, connection_id: str) -> list[Listing]:
    result = await session.execute(
        select(Listing)
        .where(Listing.connection_id == uuid.UUID(connection_id))
        .order_by(Listing.created_at, Listing.id)
        .execution_options(populate_existing=True)
    )
    return list(result.scalars())


async def versions(session: AsyncSession, connection_id: str) -> list[int]:
    return [row.desired_version for row in await rows(session, connection_id)]


async def queued_syncs(session: AsyncSession, connection_id: str) -> list[Job]:
    result = await session.execute(select(Job).where(Job.kind == SYNC_KIND, Job.status == JobStatus.queued))
    return [job for job in result.scalars() if job.payload == {"connection_id": connection_id}]


async def test_publishing_lists_every_variant_on_sale_and_queues_a_sync(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    account = await register(client)
    connection = await connect(client, account)
    product = await create_product(client, account, variants=3, initial_stock=10)
    archived = product["variants"][2]
    assert (await client.delete(f"/api/v1/variants/{archived['id']}", headers=account.headers)).status_code == 200

    response = await publish(
        client,
        account,
        connection["id"],
        product["id"],
        price_rule={"markup_percent": 8},
        stock_rule={"share_percent": 50, "buffer": 1},
    )
    assert response.status_code == 201, response.text
    listing = response.json()
    assert (listing["connection_id"], listing["product_id"], listing["channel"]) == (
        connection["id"],
        product["id"],
        "reference",
    )
    assert (listing["status"], listing["syncing"], listing["message"], listing["external_item_id"]) == (
        "pending",
        True,
        None,
        None,
    )
    assert listing["overrides"]["price_rule"] == {"markup_percent": 8, "round_to_vnd": 1000}
    # 120.000 ₫ + 8 % = 129.600 ₫, rounded up to 130.000 ₫; half of 10 in stock, one held back.
    assert [(v["sku"], v["desired_price_vnd"], v["desired_stock"]) for v in listing["variants"]] == [
        (product["variants"][0]["sku"], 130_000, 4),
        (product["variants"][1]["sku"], 260_000, 4),
    ]
    assert all(v["pushed_price_vnd"] is None and v["pushed_stock"] is None for v in listing["variants"])

    stored = await rows(session, connection["id"])
    assert sorted(str(row.variant_id) for row in stored) == sorted(v["id"] for v in product["variants"][:2])
    assert {(row.status, row.desired_version, row.pushed_version) for row in stored} == {(ListingStatus.pending, 1, 0)}
    assert stored[0].overrides == stored[1].overrides == listing["overrides"]
    (job,) = await queued_syncs(session, connection["id"])
    assert str(job.organization_id) == account.organization_id

    connection_now = (await client.get(f"/api/v1/connections/{connection['id']}", headers=account.headers)).json()
    assert connection_now["listings"] == {"pending": 1}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"price_rule": {"markup_percent": 1000}}, "overrides.price_rule.markup_percent"),
        ({"price_rule": {"round_to_vnd": 0}}, "overrides.price_rule.round_to_vnd"),
        ({"stock_rule": {"share_percent": 150}}, "overrides.stock_rule.share_percent"),
        ({"stock_rule": {"buffer": -1}}, "overrides.stock_rule.buffer"),
        ({"colour": "green"}, "overrides.colour"),
    ],
)
async def test_overrides_outside_the_rules_are_refused(
    client: httpx.AsyncClient, session: AsyncSession, overrides: dict[str, Any], field: str
) -> None:
    account = await register(client)
    connection = await connect(client, account)
    product = await create_product(client, account)
    response = await publish(client, account, connection["id"], product["id"], **overrides)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert await rows(session, connection["id"]) == []


async def test_every_problem_with_a_listing_is_reported_at_once_before_anything_is_sent(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    account = await register(client)
    connection = await connect(client, account, channel="strict")
    product = await create_product(client, account, name="Sầu riêng Ri6 Bình Phước loại một", variants=2)

    response = await publish(client, account, connection["id"], product["id"])
    assert response.status_code == 422, response.text
    body = response.json()
    problems = body["details"]["problems"]
    assert [p["field"] for p in problems] == [
        "title",
        "description",
        "category",
        "images",
        "attributes.brand",
        "variants.1.price_vnd",
    ]
    assert (body["code"], body["field"], body["message"]) == ("invalid", "title", problems[0]["message"])
    assert problems[0]["message"].startswith("Shopee takes a title of at most 30 characters; this one has 33.")
    assert problems[2]["message"] == (
        "Shopee needs a category: choose one for this product, or map “fruit” to a Shopee category on the connection."
    )
    assert "240.000 ₫" in problems[5]["message"]
    assert await rows(session, connection["id"]) == []
    assert await queued_syncs(session, connection["id"]) == []

    mapped = await client.patch(
        f"/api/v1/connections/{connection['id']}", json={"category_map": {"fruit": "100629"}}, headers=account.headers
    )
    assert mapped.status_code == 200, mapped.text
    photo = images.jpeg(images.photo((320, 240)), metadata=False)
    uploaded = await client.post(
        f"/api/v1/products/{product['id']}/photos",
        files={"photo": ("sau-rieng.jpg", photo, "image/jpeg")},
        headers=account.headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    fixed = await publish(
        client,
        account,
        connection["id"],
        product["id"],
        title="Sầu riêng Ri6",
        description="Cơm vàng, hạt lép.",
        attributes={"brand": "HTX Bình Phước"},
        price_rule={"markup_percent": -20},
    )
    assert fixed.status_code == 201, fixed.text
    assert [v["desired_price_vnd"] for v in fixed.json()["variants"]] == [96_000, 192_000]


async def test_a_product_of_another_organization_looks_missing(client: httpx.AsyncClient) -> None:
    account = await register(client)
    stranger = await register(client, name="Hộ Người Lạ")
    connection = await connect(client, account)
    foreign = await create_product(client, stranger)
    for product_id in (foreign["id"], str(uuid.uuid4())):
        response = await publish(client, account, connection["id"], product_id)
        assert response.status_code == 404, response.text
        assert response.json()["field"] == "product_id"
    # Nor can the stranger list their product on someone else's shop.
    assert (await publish(client, stranger, connection["id"], foreign["id"])).status_code == 404


async def test_a_product_is_listed_once_per_shop_only_while_on_sale_and_only_on_an_active_shop(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    connection = await connect(client, account)
    product = await create_product(client, account)
    assert (await publish(client, account, connection["id"], product["id"])).status_code == 201
    twice = await publish(client, account, connection["id"], product["id"])
    assert twice.status_code == 409, twice.text
    assert "already listed on “Shop reference”" in twice.json()["message"]

    archived = await create_product(client, account)
    assert (await client.delete(f"/api/v1/products/{archived['id']}", headers=account.headers)).status_code == 200
    refused = await publish(client, account, connection["id"], archived["id"])
    assert refused.status_code == 409
    assert "archived" in refused.json()["message"]

    paused = await connect(client, account)
    await client.patch(f"/api/v1/connections/{paused['id']}", json={"status": "paused"}, headers=account.headers)
    on_paused = await publish(client, account, paused["id"], product["id"])
    assert on_paused.status_code == 409
    assert on_paused.json()["message"] == "The connection “Shop reference” is paused: resume it first."


async def test_pause_resume_and_delist_change_the_status_bump_the_version_and_are_idempotent(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    account = await register(client)
    connection = await connect(client, account)
    product = await create_product(client, account, variants=2, initial_stock=7)
    assert (await publish(client, account, connection["id"], product["id"])).status_code == 201
    url = f"/api/v1/connections/{connection['id']}/listings/{product['id']}"

    async def act(method: str, action: str = "") -> httpx.Response:
        return await client.request(method, f"{url}{action}", headers=account.headers)

    paused = await act("POST", "/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert [v["desired_stock"] for v in paused.json()["variants"]] == [0, 0]  # the shop is told 0
    assert await versions(session, connection["id"]) == [2, 2]
    assert (await act("POST", "/pause")).json()["status"] == "paused"
    assert await versions(session, connection["id"]) == [2, 2]

    resumed = await act("POST", "/resume")
    assert (resumed.json()["status"], [v["desired_stock"] for v in resumed.json()["variants"]]) == ("pending", [7, 7])
    assert await versions(session, connection["id"]) == [3, 3]
    assert (await act("POST", "/resume")).status_code == 200
    assert await versions(session, connection["id"]) == [3, 3]

    delisted = await act("DELETE")
    assert delisted.status_code == 200, delisted.text
    assert delisted.json()["status"] == "delisted"
    assert await versions(session, connection["id"]) == [4, 4]
    assert (await act("DELETE")).json()["status"] == "delisted"
    assert await versions(session, connection["id"]) == [4, 4]
    for action in ("/pause", "/resume"):
        refused = await act("POST", action)
        assert refused.status_code == 409, refused.text
        assert "delisted" in refused.json()["message"]
    assert len(await queued_syncs(session, connection["id"])) == 1  # every change folded into one job

    again = await publish(client, account, connection["id"], product["id"], title="Sầu riêng trở lại")
    assert again.status_code == 201, again.text
    assert (again.json()["status"], again.json()["overrides"]["title"]) == ("pending", "Sầu riêng trở lại")
    assert await versions(session, connection["id"]) == [5, 5]


async def test_new_overrides_go_on_every_variant_and_an_unchanged_patch_pushes_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    account = await register(client)
    connection = await connect(client, account)
    product = await create_product(client, account, variants=2)
    assert (await publish(client, account, connection["id"], product["id"])).status_code == 201
    url = f"/api/v1/connections/{connection['id']}/listings/{product['id']}"
    overrides = {"title": "Sầu riêng Ri6 – giao nhanh", "price_rule": {"markup_percent": 10}}

    changed = await client.patch(url, json={"overrides": overrides}, headers=account.headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["overrides"]["title"] == "Sầu riêng Ri6 – giao nhanh"
    assert [v["desired_price_vnd"] for v in changed.json()["variants"]] == [132_000, 264_000]
    stored = await rows(session, connection["id"])
    assert [row.desired_version for row in stored] == [2, 2]
    assert stored[0].overrides == stored[1].overrides == changed.json()["overrides"]

    same = await client.patch(url, json={"overrides": overrides}, headers=account.headers)
    assert same.status_code == 200
    assert await versions(session, connection["id"]) == [2, 2]

    bad = await client.patch(url, json={"overrides": {"stock_rule": {"share_percent": 101}}}, headers=account.headers)
    assert bad.status_code == 422
    assert bad.json()["field"] == "overrides.stock_rule.share_percent"


async def test_new_overrides_are_checked_against_the_channel(client: httpx.AsyncClient) -> None:
    account = await register(client)
    connection = await connect(client, account, channel="strict", category_map={"fruit": "100629"})
    product = await create_product(client, account, description="Cơm vàng.")
    photo = images.jpeg(images.photo((320, 240)), metadata=False)
    await client.post(
        f"/api/v1/products/{product['id']}/photos",
        files={"photo": ("a.jpg", photo, "image/jpeg")},
        headers=account.headers,
    )
    listed = await publish(client, account, connection["id"], product["id"], attributes={"brand": "HTX"})
    assert listed.status_code == 201, listed.text

    response = await client.patch(
        f"/api/v1/connections/{connection['id']}/listings/{product['id']}",
        json={"overrides": {"title": "Một cái tên dài hơn ba mươi ký tự nhiều"}},
        headers=account.headers,
    )
    assert response.status_code == 422, response.text
    assert [p["field"] for p in response.json()["details"]["problems"]] == ["title", "attributes.brand"]


async def test_a_listing_shows_what_was_pushed_what_its_rules_give_now_and_what_the_channel_said(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    account = await register(client)
    connection = await connect(client, account)
    product = await create_product(client, account, variants=2, initial_stock=3)
    assert (await publish(client, account, connection["id"], product["id"])).status_code == 201
    first, second = await rows(session, connection["id"])
    for row, sku_id in ((first, "sku-1"), (second, "sku-2")):
        row.status = ListingStatus.live
        row.external_item_id = "item-9"
        row.external_sku_id = sku_id
        row.pushed_version = row.desired_version
        row.pushed_state = {"content": "abc", "price_vnd": 115_000, "stock": 2}
    await session.commit()
    url = f"/api/v1/connections/{connection['id']}/listings/{product['id']}"

    live = (await client.get(url, headers=account.headers)).json()
    assert (live["status"], live["syncing"], live["external_item_id"]) == ("live", False, "item-9")
    assert [
        (v["external_sku_id"], v["pushed_price_vnd"], v["pushed_stock"], v["desired_price_vnd"], v["desired_stock"])
        for v in live["variants"]
    ] == [("sku-1", 115_000, 2, 120_000, 3), ("sku-2", 115_000, 2, 240_000, 3)]

    second.status = ListingStatus.rejected
    second.channel_message = "Giá thay đổi quá 50 %: sàn từ chối."
    await session.commit()
    rejected = (await client.get(url, headers=account.headers)).json()
    assert (rejected["status"], rejected["message"]) == ("rejected", "Giá thay đổi quá 50 %: sàn từ chối.")
    assert [v["status"] for v in rejected["variants"]] == ["live", "rejected"]

    retried = await client.post(f"{url}/resume", headers=account.headers)
    assert [v["status"] for v in retried.json()["variants"]] == ["live", "pending"]
    assert (retried.json()["status"], retried.json()["message"], retried.json()["syncing"]) == (
        "pending",
        None,
        True,
    )


async def test_a_shops_listings_are_filtered_by_status_and_paginated_newest_first(
    client: httpx.AsyncClient,
) -> None:
    account = await register(client)
    connection = await connect(client, account)
    products = [await create_product(client, account, name=f"Sản phẩm {i}") for i in range(3)]
    for product in products:
        assert (await publish(client, account, connection["id"], product["id"])).status_code == 201
    url = f"/api/v1/connections/{connection['id']}/listings"
    await client.post(f"{url}/{products[1]['id']}/pause", headers=account.headers)

    first = (await client.get(url, params={"limit": 2}, headers=account.headers)).json()
    assert [item["product_id"] for item in first["items"]] == [products[2]["id"], products[1]["id"]]
    assert first["next_cursor"]
    rest = (await client.get(url, params={"limit": 2, "cursor": first["next_cursor"]}, headers=account.headers)).json()
    assert ([item["product_id"] for item in rest["items"]], rest["next_cursor"]) == ([products[0]["id"]], None)

    paused = (await client.get(url, params={"status": "paused"}, headers=account.headers)).json()
    assert [item["product_id"] for item in paused["items"]] == [products[1]["id"]]
    connection_now = (await client.get(f"/api/v1/connections/{connection['id']}", headers=account.headers)).json()
    assert connection_now["listings"] == {"pending": 2, "paused": 1}

    bad = await client.get(url, params={"cursor": "not-a-cursor"}, headers=account.headers)
    assert bad.status_code == 422


async def test_a_products_listings_on_every_shop(client: httpx.AsyncClient) -> None:
    account = await register(client)
    shops = [await connect(client, account), await connect(client, account, name="Shop thứ hai")]
    product = await create_product(client, account)
    unlisted = await create_product(client, account)
    for shop in shops:
        assert (await publish(client, account, shop["id"], product["id"])).status_code == 201
    await client.post(f"/api/v1/connections/{shops[1]['id']}/listings/{product['id']}/pause", headers=account.headers)

    response = await client.get(f"/api/v1/products/{product['id']}/listings", headers=account.headers)
    assert response.status_code == 200, response.text
    assert [(item["connection_id"], item["connection_name"], item["status"]) for item in response.json()] == [
        (shops[0]["id"], "Shop reference", "pending"),
        (shops[1]["id"], "Shop thứ hai", "paused"),
    ]
    none = await client.get(f"/api/v1/products/{unlisted['id']}/listings", headers=account.headers)
    assert none.json() == []
    missing = await client.get(
        f"/api/v1/connections/{shops[0]['id']}/listings/{unlisted['id']}", headers=account.headers
    )
    assert missing.status_code == 404
    assert missing.json()["message"] == "This product is not listed on this connection."


async def test_two_people_listing_the_same_product_at_once_make_one_listing(
    committing_client: httpx.AsyncClient,
) -> None:
    client = committing_client
    account = await register(client)
    connection = await connect(client, account)
    product = await create_product(client, account, variants=2)
    answers = await asyncio.gather(*(publish(client, account, connection["id"], product["id"]) for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    listed = await client.get(f"/api/v1/connections/{connection['id']}/listings", headers=account.headers)
    (listing,) = listed.json()["items"]
    assert len(listing["variants"]) == 2


# -- the check itself ---------------------------------------------------------------------------------------------


def _draft(sku: str = "DURIAN-1KG", price: int = 120_000, stock: int = 5) -> VariantDraft:
    return VariantDraft(sku=sku, name="Hộp 1 kg", price_vnd=price, stock=stock, weight_grams=1200, unit="hop")


def test_a_listing_within_the_channels_limits_has_no_problem() -> None:
    capabilities = default_capabilities()
    assert (
        check_listing(
            capabilities,
            title="Sầu riêng",
            description="",
            category=None,
            attributes={},
            variants=[_draft()],
            image_count=0,
        )
        == []
    )


def test_prices_stock_skus_and_variant_counts_outside_the_limits_are_each_named() -> None:
    capabilities = STRICT.capabilities
    drafts = [_draft("A" * 65, price=500), _draft("B", stock=101), _draft("C"), _draft("D", price=200_001)]
    problems = check_listing(
        capabilities,
        title="Sầu riêng",
        description="Cơm vàng.",
        category="100629",
        attributes={"brand": "HTX"},
        variants=drafts,
        image_count=10,
    )
    assert [p.field for p in problems] == [
        "images",
        "variants",
        "variants.0.sku",
        "variants.0.price_vnd",
        "variants.1.stock",
        "variants.3.price_vnd",
    ]
    assert problems[0].message.startswith("Shopee shows at most 9 photos")
    assert problems[3].message.startswith("Shopee takes prices from 1.000 ₫ to 200.000 ₫; AAAA")
    assert "at most 100 in stock per SKU" in problems[4].message


def test_a_listing_with_no_variant_on_sale_cannot_be_sent() -> None:
    problems = check_listing(
        default_capabilities(),
        title="Sầu riêng",
        description="",
        category=None,
        attributes={},
        variants=[],
        image_count=0,
    )
    assert [p.field for p in problems] == ["variants"]
