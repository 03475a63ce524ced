"""A farmer's first minutes: register, log in, add a product with a photo, see it priced, tap its stock up and down."""

from __future__ import annotations

import re
import unicodedata

import httpx

from tests.factories import PASSWORD
from tests.web.helpers import (
    PRODUCT,
    SAME_ORIGIN,
    add_product,
    csrf,
    field_error,
    input_value,
    photo_file,
    post_form,
    register,
)


def _available(html: str, variant_id: str) -> int:
    block = html.split(f'id="v-{variant_id}"', 1)[1]
    match = re.search(r'<b class="qty">([\d.,]+)</b>', block)
    assert match
    return int(match.group(1).replace(".", "").replace(",", ""))


def _variant_ids(html: str) -> list[str]:
    return re.findall(r'class="variant" id="v-([0-9a-f-]+)"', html)


async def _tap(client: httpx.AsyncClient, variant_id: str, delta: str, *, key: str | None = None) -> httpx.Response:
    page = await client.get("/products")
    block = page.text.split(f'id="v-{variant_id}"', 1)[1]
    form_key = re.findall(r'name="key" value="([^"]+)"', block)[0]
    return await client.post(
        f"/variants/{variant_id}/stock",
        data={"csrf_token": csrf(page.text), "delta": delta, "key": key or form_key, "next": "/products"},
        headers=SAME_ORIGIN,
    )


async def test_register_log_in_add_a_product_with_a_photo_and_tap_its_stock(client: httpx.AsyncClient) -> None:
    user = await register(client)
    assert (await post_form(client, "/logout", {}, page="/")).status_code == 303
    assert (await client.get("/products")).headers["location"] == "/login?next=/products"

    logged_in = await post_form(
        client, "/login", {"phone": user.phone, "password": PASSWORD, "next": "/products"}, page="/login"
    )
    assert logged_in.status_code == 303
    assert logged_in.headers["location"] == "/products"

    product_id = await add_product(client, user, photo=photo_file())
    listing = await client.get("/products")
    assert listing.status_code == 200
    assert "Sầu riêng Ri6" in listing.text
    assert "120.000\xa0₫" in listing.text  # Vietnamese grouping, the đồng sign after a non-breaking space
    assert f'id="p-{product_id}"' in listing.text
    assert 'srcset="/media/renditions/' in listing.text
    assert " 160w" in listing.text
    assert " 640w" in listing.text
    [variant_id] = _variant_ids(listing.text)
    assert _available(listing.text, variant_id) == 0

    tapped = await _tap(client, variant_id, "1")
    assert tapped.status_code == 303
    assert tapped.headers["location"] == f"/products#v-{variant_id}"
    assert _available((await client.get("/products")).text, variant_id) == 1

    assert (await _tap(client, variant_id, "-1")).status_code == 303
    assert _available((await client.get("/products")).text, variant_id) == 0

    refused = await _tap(client, variant_id, "-1")
    assert refused.status_code == 303
    shown = await client.get(refused.headers["location"].split("#")[0])
    assert "Không thể bớt nữa: số còn bán được đã là 0." in shown.text
    assert _available(shown.text, variant_id) == 0


async def test_a_repeated_tap_with_the_same_key_counts_once(client: httpx.AsyncClient) -> None:
    user = await register(client)
    await add_product(client, user, stock="5")
    [variant_id] = _variant_ids((await client.get("/products")).text)
    for _ in range(3):  # the connection dropped and the farmer tapped again: the same form, the same key
        assert (await _tap(client, variant_id, "1", key="tap-once")).status_code == 303
    assert _available((await client.get("/products")).text, variant_id) == 6


async def test_price_is_read_the_way_people_type_it(client: httpx.AsyncClient) -> None:
    user = await register(client)
    for typed in ("120000", "120.000 ₫", "120k", "120,000đ"):
        await add_product(client, user, price=typed, name=f"Tiêu đen {typed}")
    listing = await client.get("/products")
    assert listing.text.count("120.000\xa0₫") == 4


async def test_refused_fields_show_their_message_beside_them_and_keep_what_was_typed(client: httpx.AsyncClient) -> None:
    user = await register(client)
    response = await post_form(
        client,
        "/products/new",
        {**PRODUCT, "org": user.organization_id, "name": "Hạt điều rang muối", "price": "12,5 nghìn", "stock": "-3"},
        page=f"/products/new?org={user.organization_id}",
    )
    assert response.status_code == 422
    assert field_error(response.text, "price") == "Hãy nhập giá bằng đồng, ví dụ 120.000 (từ 1 đến 1.000.000.000)."
    assert field_error(response.text, "stock") is not None
    assert field_error(response.text, "name") is None
    assert input_value(response.text, "name") == "Hạt điều rang muối"
    assert input_value(response.text, "price") == "12,5 nghìn"
    assert input_value(response.text, "stock") == "-3"
    assert 'aria-invalid="true" aria-describedby="e-price"' in response.text
    assert (await client.get("/products")).text.count('class="card"') == 0  # nothing was saved


async def test_a_file_that_is_not_a_photo_refuses_the_whole_product(client: httpx.AsyncClient) -> None:
    user = await register(client)
    response = await post_form(
        client,
        "/products/new",
        {**PRODUCT, "org": user.organization_id},
        page=f"/products/new?org={user.organization_id}",
        files={"photo": ("notes.jpg", b"not a photo at all", "image/jpeg")},
    )
    assert response.status_code == 422
    assert field_error(response.text, "photo") == (
        "Không dùng được ảnh này. Hãy chụp lại, hoặc chọn ảnh JPEG, PNG, WebP hay HEIC."
    )
    assert input_value(response.text, "name") == "Sầu riêng Ri6"
    assert 'class="card"' not in (await client.get("/products")).text  # the product was rolled back with it


async def test_editing_changes_the_product_its_price_and_its_stock(client: httpx.AsyncClient) -> None:
    user = await register(client)
    product_id = await add_product(client, user, stock="3")
    form = await client.get(f"/products/{product_id}/edit")
    assert input_value(form.text, "price") == "120.000"
    variant_id = re.search(r'name="variant" value="([^"]+)"', form.text)
    assert variant_id
    response = await post_form(
        client,
        f"/products/{product_id}/edit",
        {**PRODUCT, "variant": variant_id.group(1), "name": "Sầu riêng Monthong", "price": "95.000", "stock": "12"},
        page=f"/products/{product_id}/edit",
    )
    assert response.status_code == 303, response.text
    listing = (await client.get("/products")).text
    assert "Sầu riêng Monthong" in listing
    assert "95.000\xa0₫" in listing
    assert _available(listing, variant_id.group(1)) == 12
    api = (await client.get(f"/api/v1/products/{product_id}")).json()
    assert api["variants"][0]["price_vnd"] == 95_000


async def test_a_photo_sent_twice_with_the_same_key_is_added_once(client: httpx.AsyncClient) -> None:
    user = await register(client)
    product_id = await add_product(client, user)
    page = await client.get(f"/products/{product_id}/photos")
    assert "Chưa có ảnh." in page.text
    key = re.search(r'name="upload_key" value="([^"]+)"', page.text)
    assert key
    data = {"csrf_token": csrf(page.text), "upload_key": key.group(1)}
    for _ in range(2):  # the answer to the first was lost: the browser sends the same form again
        sent = await client.post(
            f"/products/{product_id}/photos", data=data, files={"photo": photo_file(seed=3)}, headers=SAME_ORIGIN
        )
        assert sent.status_code == 303
        assert sent.headers["location"] == f"/products/{product_id}/photos?added=1"
    shown = await client.get(f"/products/{product_id}/photos?added=1")
    assert "Đã thêm ảnh." in shown.text
    assert shown.text.count("<img ") == 1
    assert '<progress max="100" value="0" hidden>' in shown.text
    assert 'accept="image/*" capture="environment"' in shown.text


async def test_the_photo_page_refuses_a_damaged_file_beside_the_field(client: httpx.AsyncClient) -> None:
    user = await register(client)
    product_id = await add_product(client, user)
    response = await post_form(
        client,
        f"/products/{product_id}/photos",
        {"upload_key": "k1"},
        files={"photo": ("x.jpg", b"\xff\xd8\xff broken", "image/jpeg")},
    )
    assert response.status_code == 422
    assert field_error(response.text, "photo") is not None
    assert 'name="upload_key" value="k1"' in response.text  # a retry keeps its key


async def test_the_same_add_product_form_sent_twice_makes_one_product(client: httpx.AsyncClient) -> None:
    user = await register(client)
    page = await client.get(f"/products/new?org={user.organization_id}")
    key = re.search(r'name="form_key" value="([^"]+)"', page.text)
    assert key
    data = {**PRODUCT, "org": user.organization_id, "form_key": key.group(1), "csrf_token": csrf(page.text)}
    first = await client.post("/products/new", data=data, headers=SAME_ORIGIN)
    again = await client.post("/products/new", data=data, headers=SAME_ORIGIN)  # the first answer was lost
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    assert (await client.get("/products")).text.count('class="card"') == 1


async def test_names_typed_on_any_phone_keyboard_are_stored_in_one_normal_form(client: httpx.AsyncClient) -> None:
    user = await register(client)
    decomposed = unicodedata.normalize("NFD", "Sầu riêng  Ri6")  # some keyboards send combining accents
    product_id = await add_product(client, user, name=decomposed)
    stored = (await client.get(f"/api/v1/products/{product_id}")).json()["name"]
    assert stored == unicodedata.normalize("NFC", "Sầu riêng Ri6")
