"""Phone-grade pages: each says its language, labels every field, and weighs at most 50 KB with its CSS and JS."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from agrimarket.web.routes import PAGE_SIZE, PRODUCT_ROWS
from tests.factories import product_body
from tests.web.helpers import add_product, parse, photo_file, register

PAGE_BUDGET = 50 * 1024
RESERVED = (
    "/api",
    "/media",
    "/webhooks",
    "/sandbox",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
)


async def _all_pages(client: httpx.AsyncClient) -> dict[str, str]:
    """Every page of the app as a logged-in farmer with a full first page of products sees it, and the public ones."""
    pages = {"/login": (await client.get("/login")).text, "/register": (await client.get("/register")).text}
    user = await register(client)
    product_id = await add_product(client, user, photo=photo_file())
    for i in range(25):  # more than a page: the list shows its longest
        await add_product(client, user, name=f"Hạt điều rang muối loại {i} – hũ thuỷ tinh 500 g", stock=str(i))
    for path in (
        "/",
        "/products",
        f"/products/new?org={user.organization_id}",
        f"/products/{product_id}/edit",
        f"/products/{product_id}/photos",
        "/products/00000000-0000-0000-0000-000000000000/edit",  # the 404 page
    ):
        response = await client.get(path)
        assert response.status_code in (200, 404), (path, response.status_code)
        pages[path] = response.text
    return pages


async def test_every_page_has_a_language_and_a_label_for_every_field(client: httpx.AsyncClient) -> None:
    for path, html in (await _all_pages(client)).items():
        page = parse(html)
        assert page.lang == "vi", path
        assert not page.unlabelled(), (path, [c.attrs for c in page.unlabelled()])


async def test_every_page_with_its_css_and_js_weighs_at_most_50_kb(client: httpx.AsyncClient) -> None:
    weights = {}
    for path, html in (await _all_pages(client)).items():
        page = parse(html)
        total = len(html.encode())
        for url in page.stylesheets + page.scripts:
            asset = await client.get(url)
            assert asset.status_code == 200, url
            total += len(asset.content)
        weights[path] = total
    assert max(weights.values()) <= PAGE_BUDGET, weights


async def test_static_files_are_versioned_by_content_and_cached_for_a_year(client: httpx.AsyncClient) -> None:
    page = parse((await client.get("/login")).text)
    [css] = page.stylesheets
    assert css.startswith("/static/app.css?v=")
    versioned = await client.get(css)
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert versioned.headers["content-type"].startswith("text/css")
    assert (await client.get("/static/app.css?v=old")).headers["cache-control"] == "public, max-age=300"
    assert (await client.get("/static/../config.py")).status_code == 404
    assert (await client.get("/static/nothing.css")).status_code == 404


async def test_pages_are_never_shared_by_caches_and_cannot_be_framed(client: httpx.AsyncClient) -> None:
    response = await client.get("/login")
    assert response.headers["cache-control"] == "private, no-cache"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "script-src 'self'" in response.headers["content-security-policy"]


async def test_a_page_that_needs_a_login_sends_you_to_log_in_and_back(client: httpx.AsyncClient) -> None:
    response = await client.get("/products?org=x")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/products%3Forg%3Dx"
    assert 'name="next" value="/products?org=x"' in (await client.get(response.headers["location"])).text


@pytest.mark.parametrize("path", ["/login?next=https://evil.example/", "/login?next=//evil.example/"])
async def test_the_login_page_never_sends_you_to_another_site(client: httpx.AsyncClient, path: str) -> None:
    assert 'name="next" value="/"' in (await client.get(path)).text


def test_page_routes_are_outside_the_api_and_out_of_its_schema(app: FastAPI) -> None:
    from agrimarket.web.routes import router

    paths = {route.path for route in router.routes if isinstance(route, APIRoute)}
    assert {"/", "/login", "/register", "/products", "/products/new"} <= paths
    assert not [p for p in paths if p != "/" and p.startswith(RESERVED)]
    assert all(not route.include_in_schema for route in router.routes if isinstance(route, APIRoute))
    assert not [p for p in app.openapi()["paths"] if not p.startswith(RESERVED)]


async def test_the_product_list_stays_within_budget_when_products_have_many_kinds(client: httpx.AsyncClient) -> None:
    user = await register(client)
    for i in range(PAGE_SIZE):
        body = product_body(name=f"Tiêu đen Lộc Ninh loại đặc biệt số {i} – túi zip 500 g", variants=4)
        response = await client.post(f"/api/v1/organizations/{user.organization_id}/products", json=body)
        assert response.status_code == 201, response.text
    big = product_body(name="Mật ong hoa cà phê", variants=PRODUCT_ROWS + 5)
    assert (await client.post(f"/api/v1/organizations/{user.organization_id}/products", json=big)).status_code == 201

    seen: set[str] = set()
    url: str | None = "/products"
    while url:
        html = (await client.get(url)).text
        page = parse(html)
        weight = len(html.encode()) + sum([len((await client.get(u)).content) for u in page.stylesheets])
        assert weight <= PAGE_BUDGET
        cards = re.findall(r'<li class="card" id="p-([0-9a-f-]+)"', html)
        assert cards
        assert not seen & set(cards)  # pages do not overlap…
        seen |= set(cards)
        next_link = re.search(r'<a class="btn" href="(/products\?[^"]+)">Xem thêm sản phẩm</a>', html)
        url = next_link.group(1).replace("&amp;", "&") if next_link else None
    assert len(seen) == PAGE_SIZE + 1  # …and together they show every product
    assert "và 5 loại khác" in (await client.get("/products")).text
