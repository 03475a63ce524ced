"""Forms refused from other sites or without their token, login throttling, and no other farm's data by its id."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from agrimarket.web.throttle import IP_LIMIT, PHONE_LIMIT, SlidingWindow
from tests.factories import PASSWORD
from tests.web.helpers import PRODUCT, SAME_ORIGIN, add_product, csrf, field_error, post_form, register


@pytest.fixture
async def second_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Another browser (its own cookies) on the same app."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as other:
        yield other


def _client_from(app: FastAPI, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 50000)), base_url="http://testserver")


async def _product_count(client: httpx.AsyncClient) -> int:
    return (await client.get("/products")).text.count('class="card"')


# -- CSRF -----------------------------------------------------------------------------------------------------------


async def test_a_form_without_its_token_or_with_a_wrong_one_is_refused(client: httpx.AsyncClient) -> None:
    user = await register(client)
    form = {**PRODUCT, "org": user.organization_id}
    for token in (None, "", "0" * 40, csrf((await client.get("/login")).text) + "x"):
        data = form if token is None else {**form, "csrf_token": token}
        response = await client.post("/products/new", data=data, headers=SAME_ORIGIN)
        assert response.status_code == 403
        assert "Biểu mẫu đã hết hạn hoặc không gửi từ trang này." in response.text
        assert 'lang="vi"' in response.text
    assert await _product_count(client) == 0


async def test_a_form_sent_from_another_site_is_refused_even_with_a_token(client: httpx.AsyncClient) -> None:
    user = await register(client)
    token = csrf((await client.get("/products")).text)
    for site in ("cross-site", "same-site"):
        response = await client.post(
            "/products/new",
            data={**PRODUCT, "org": user.organization_id, "csrf_token": token},
            headers={"Sec-Fetch-Site": site},
        )
        assert response.status_code == 403
    assert await _product_count(client) == 0
    # The same form from the page itself goes through; a browser too old to send the header is let in on the token.
    assert (await post_form(client, "/lang", {"lang": "en"}, page="/")).status_code == 303
    assert (await client.post("/lang", data={"csrf_token": token, "lang": "vi"})).status_code == 303


async def test_a_token_belongs_to_its_browser_session(
    client: httpx.AsyncClient, second_client: httpx.AsyncClient
) -> None:
    await register(client)
    await register(second_client)
    theirs = csrf((await second_client.get("/products")).text)
    response = await client.post("/lang", data={"csrf_token": theirs, "lang": "en"}, headers=SAME_ORIGIN)
    assert response.status_code == 403


async def test_the_login_form_has_a_token_before_anyone_logs_in(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    assert "agrimarket_presession" in page.headers["set-cookie"]
    assert "httponly" in page.headers["set-cookie"].lower()
    refused = await client.post("/login", data={"phone": "0912345678", "password": "x" * 8}, headers=SAME_ORIGIN)
    assert refused.status_code == 403


async def test_the_session_cookie_is_http_only_and_same_site(client: httpx.AsyncClient) -> None:
    page = await client.get("/register")
    response = await client.post(
        "/register",
        data={
            "csrf_token": csrf(page.text),
            "phone": "0912 000 111",
            "full_name": "Lê Văn Cường",
            "organization_name": "Hộ Lê Văn Cường",
            "organization_kind": "household",
            "password": PASSWORD,
        },
        headers=SAME_ORIGIN,
    )
    assert response.status_code == 303
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("agrimarket_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie


# -- login throttling -----------------------------------------------------------------------------------------------


async def test_wrong_passwords_for_one_phone_lock_that_phone_for_a_while(app: FastAPI) -> None:
    async with _client_from(app, "10.0.0.1") as first, _client_from(app, "10.0.0.2") as second:
        user = await register(first)
        await post_form(first, "/logout", {}, page="/")
        for _ in range(PHONE_LIMIT):
            wrong = await post_form(first, "/login", {"phone": user.phone, "password": "sai-mat-khau"})
            assert wrong.status_code == 401
            assert field_error(wrong.text, "password") == "Số điện thoại hoặc mật khẩu không đúng."
        # Now even the right password is refused, from any address, and the page says why and for how long.
        for browser in (first, second):
            locked = await post_form(browser, "/login", {"phone": user.phone, "password": PASSWORD})
            assert locked.status_code == 429
            message = field_error(locked.text, "phone")
            assert message is not None
            assert re.fullmatch(r"Nhập sai quá nhiều lần\. Hãy thử lại sau 1[45] phút\.", message)
            assert f'value="{user.phone}"' in locked.text  # the typed number is kept
        # Another phone number is not affected.
        other = await post_form(second, "/login", {"phone": "0912 999 888", "password": "whatever1"})
        assert other.status_code == 401


async def test_wrong_passwords_from_one_address_lock_that_address(app: FastAPI) -> None:
    async with _client_from(app, "10.0.0.3") as guesser, _client_from(app, "10.0.0.4") as farmer:
        user = await register(farmer)
        await post_form(farmer, "/logout", {}, page="/")
        for i in range(IP_LIMIT):  # a different phone each time: no phone reaches its own limit
            response = await post_form(guesser, "/login", {"phone": f"0913{i:06d}", "password": "sai-mat-khau"})
            assert response.status_code == 401
        assert (await post_form(guesser, "/login", {"phone": user.phone, "password": PASSWORD})).status_code == 429
        assert (await post_form(farmer, "/login", {"phone": user.phone, "password": PASSWORD})).status_code == 303


def test_the_window_slides() -> None:
    now = [0.0]
    window = SlidingWindow(limit=2, window=60, clock=lambda: now[0])
    window.hit("a")
    now[0] = 30
    window.hit("a")
    assert window.retry_after("a") == 30
    now[0] = 61  # the first attempt has left the window
    assert window.retry_after("a") is None
    window.hit("a")
    assert window.retry_after("a") == 29


# -- tenancy --------------------------------------------------------------------------------------------------------


async def test_another_farms_ids_in_an_address_are_pages_that_do_not_exist(
    client: httpx.AsyncClient, second_client: httpx.AsyncClient
) -> None:
    owner = await register(client, name="Hộ Nguyễn Văn An")
    product_id = await add_product(client, owner, stock="4")
    variant_id = re.findall(r'class="variant" id="v-([0-9a-f-]+)"', (await client.get("/products")).text)[0]
    await register(second_client, name="Hộ Phạm Thị Dung")

    for path in (
        f"/products/{product_id}/edit",
        f"/products/{product_id}/photos",
        f"/products?org={owner.organization_id}",
        f"/products/new?org={owner.organization_id}",
        f"/?org={owner.organization_id}",
        "/products/not-a-uuid/edit",
    ):
        response = await second_client.get(path)
        assert response.status_code == 404, path
        assert "Trang này không tồn tại, hoặc thuộc về nông hộ khác." in response.text
        assert "Sầu riêng" not in response.text

    token = csrf((await second_client.get("/products")).text)
    attempts = [
        (f"/variants/{variant_id}/stock", {"delta": "-1", "key": "k"}),
        (f"/products/{product_id}/edit", {**PRODUCT, "name": "Đã bị sửa", "stock": "0"}),
        ("/products/new", {**PRODUCT, "org": owner.organization_id}),
    ]
    for path, data in attempts:
        response = await second_client.post(path, data={**data, "csrf_token": token}, headers=SAME_ORIGIN)
        assert response.status_code == 404, path
    photo = await second_client.post(
        f"/products/{product_id}/photos",
        data={"csrf_token": token, "upload_key": "k"},
        files={"photo": ("a.jpg", b"x", "image/jpeg")},
        headers=SAME_ORIGIN,
    )
    assert photo.status_code == 404

    own = (await client.get("/products")).text
    assert "Sầu riêng Ri6" in own
    assert "Đã bị sửa" not in own
    assert re.search(rf'id="v-{variant_id}">.*?<b class="qty">4</b>', own, re.S)
    assert await _product_count(second_client) == 0
