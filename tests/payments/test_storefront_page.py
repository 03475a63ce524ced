"""The public storefront page: a phone-grade page per organization with what it sells on its storefront, in
Vietnamese by default and English on request, sold out as soon as a marketplace takes the last unit."""

from __future__ import annotations

import re

import pytest

from agrimarket.config import Environment, Settings
from agrimarket.payments.gateway import configured, current_config, stripe_config
from tests.payments.conftest import SLUG, World
from tests.web.helpers import SAME_ORIGIN, csrf, parse, photo_file

PAGE_BUDGET = 50 * 1024


async def test_the_page_shows_price_stock_certifications_harvest_date_and_test_mode(world: World) -> None:
    response = await world.client.get(f"/shop/{SLUG}")
    assert response.status_code == 200
    html = response.text
    page = parse(html)
    assert page.lang == "vi"
    assert not page.unlabelled()
    assert "Hạt điều rang muối" in html
    assert "150.000\xa0₫" in html or "150.000 ₫" in html
    assert "còn 3" in html
    assert "VietGAP" in html
    assert "Thu hoạch" in html
    assert "2026" in html
    assert "CHẾ ĐỘ THỬ" in html  # test keys: the buyer is told no real money moves
    assert f'name="q-{world.variant_id}"' in html
    assert response.headers["x-frame-options"] == "DENY"


async def test_the_page_with_its_css_stays_within_50_kb_with_many_products(world: World) -> None:
    for i in range(40):
        product = await world.client.post(
            f"/api/v1/organizations/{world.account.organization_id}/products",
            json={
                "name": f"Tiêu đen Lộc Ninh loại {i} – túi zip 500 g hạt chắc",
                "category": "spices",
                "variants": [
                    {
                        "sku": f"TIEU-{i}-{k}",
                        "name": f"Túi {k + 1} kg",
                        "unit": "tui",
                        "price_vnd": 95_000 * (k + 1),
                        "weight_grams": 500,
                        "initial_stock": 10,
                    }
                    for k in range(2)
                ],
            },
            headers=world.account.headers,
        )
        assert product.status_code == 201, product.text
        listed = await world.client.post(
            f"/api/v1/connections/{world.storefront_id}/listings",
            json={"product_id": product.json()["id"]},
            headers=world.account.headers,
        )
        assert listed.status_code == 201
    html = (await world.client.get(f"/shop/{SLUG}")).text
    page = parse(html)
    total = len(html.encode())
    for url in page.stylesheets + page.scripts:
        total += len((await world.client.get(url)).content)
    assert total <= PAGE_BUDGET, total
    assert not page.unlabelled()


async def test_photos_are_thumbnails_with_a_srcset(world: World) -> None:
    uploaded = await world.client.post(
        f"/api/v1/products/{world.product_id}/photos", files={"photo": photo_file()}, headers=world.account.headers
    )
    assert uploaded.status_code == 201, uploaded.text
    html = (await world.client.get(f"/shop/{SLUG}")).text
    img = re.search(r'<img src="([^"]+)" srcset="([^"]+)"', html)
    assert img is not None
    assert " 160w" in img.group(2) or "w," in img.group(2)
    assert 'loading="lazy"' in html


async def test_english_on_request(world: World) -> None:
    page = await world.client.get(f"/shop/{SLUG}")
    switched = await world.client.post(
        "/lang", data={"csrf_token": csrf(page.text), "lang": "en", "next": f"/shop/{SLUG}"}, headers=SAME_ORIGIN
    )
    assert switched.status_code == 303
    html = (await world.client.get(f"/shop/{SLUG}")).text
    assert 'lang="en"' in html
    assert "₫150,000" in html
    assert "TEST MODE" in html
    assert "Pay by card" in html
    assert "3 left" in html


async def test_a_marketplace_sale_of_the_last_units_shows_sold_out(world: World) -> None:
    await world.marketplace_sale(3)
    html = (await world.client.get(f"/shop/{SLUG}")).text
    assert "Hết hàng" in html
    assert f'name="q-{world.variant_id}"' not in html


async def test_the_page_is_found_by_organization_id_and_unknown_shops_are_404(world: World) -> None:
    assert (await world.client.get(f"/shop/{world.account.organization_id}")).status_code == 200
    missing = await world.client.get("/shop/no-such-shop")
    assert missing.status_code == 404
    assert 'lang="vi"' in missing.text


@pytest.mark.parametrize("demo", [False, True])
def test_without_keys_the_demo_pays_the_fake_in_test_mode_and_otherwise_nothing(migrated: Settings, demo: bool) -> None:
    settings = migrated.model_copy(update={"demo": demo, "env": Environment.development, "public_base_url": ""})
    config = stripe_config(settings)
    if not demo:
        assert config is None
        return
    assert config is not None
    assert config.fake
    assert config.test_mode
    assert config.api_base.endswith("/sandbox/stripe")
    assert "sk_" not in repr(config)
    with configured(settings):
        assert current_config() == config


async def test_without_stripe_the_page_shows_no_checkout(world: World) -> None:
    settings = world.settings.model_copy(update={"stripe_secret_key": None, "demo": False})
    world.app.state.settings = settings
    html = (await world.client.get(f"/shop/{SLUG}")).text
    assert "Thanh toán bằng thẻ" not in html
    assert "chưa nhận thanh toán bằng thẻ" in html
    assert "CHẾ ĐỘ THỬ" not in html
