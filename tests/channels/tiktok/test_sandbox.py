"""The TikTok Shop sandbox refuses what TikTok refuses, with TikTok's codes and envelope, on raw signed requests."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from typing import Any

import httpx
import pytest

from agrimarket.channels.tiktok import TikTokAuth
from agrimarket.sandbox.tiktok import TikTokSandbox
from tests.channels.support import FakeClock, variant
from tests.channels.tiktok.conftest import BASE, connect, draft


def auth(shop: dict[str, Any], now: Callable[[], float], *, cipher: bool = True, **changes: Any) -> TikTokAuth:
    fields: dict[str, Any] = {
        "access_token": shop["access_token"],
        "shop_cipher": shop["shop_cipher"] if cipher else None,
        "clock": now,
    }
    fields.update(changes)
    return TikTokAuth(shop["app_key"], shop["app_secret"], **fields)


async def call(
    http: httpx.AsyncClient, method: str, path: str, signer: httpx.Auth, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    response = await http.request(method, path, auth=signer, **kwargs)
    body = response.json()
    assert set(body) == {"code", "message", "request_id", "data"}
    return response.status_code, body


async def test_a_good_call_answers_code_0_in_the_envelope(
    http: httpx.AsyncClient, shop: dict[str, Any], clock: FakeClock
) -> None:
    status, body = await call(http, "GET", "/authorization/202309/shops", auth(shop, clock, cipher=False))
    assert (status, body["code"], body["message"]) == (200, 0, "Success")
    [entry] = body["data"]["shops"]
    assert (entry["id"], entry["cipher"], entry["region"]) == (shop["shop_id"], shop["shop_cipher"], "VN")


async def test_a_body_altered_after_signing_is_an_invalid_sign(
    http: httpx.AsyncClient, shop: dict[str, Any], clock: FakeClock
) -> None:
    class Tamper(httpx.Auth):
        requires_request_body = True

        def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
            signed = next(auth(shop, clock).auth_flow(request))
            yield httpx.Request(
                signed.method, signed.url, headers=signed.headers, content=signed.content.replace(b"1", b"2")
            )

    status, body = await call(
        http, "POST", "/order/202309/orders/search", Tamper(), params={"page_size": 10}, json={"update_time_ge": 1}
    )
    assert (status, body["code"], body["message"]) == (401, 106001, "Invalid sign.")


@pytest.mark.parametrize(("skew", "code"), [(-301, 36009006), (-299, 0), (29, 0), (31, 36009006)])
async def test_the_timestamp_must_be_within_five_minutes_before_and_thirty_seconds_after_now(
    http: httpx.AsyncClient, shop: dict[str, Any], clock: FakeClock, skew: int, code: int
) -> None:
    signer = auth(shop, lambda: clock.now + skew)
    _, body = await call(http, "GET", "/logistics/202309/warehouses", signer)
    assert body["code"] == code


async def test_app_key_token_and_cipher_are_checked_with_tiktoks_codes(
    http: httpx.AsyncClient, shop: dict[str, Any], clock: FakeClock, sandbox: TikTokSandbox
) -> None:
    other = TikTokAuth("someone-else", shop["app_secret"], access_token=shop["access_token"], clock=clock)
    assert (await call(http, "GET", "/authorization/202309/shops", other))[1]["code"] == 36009004
    assert (await call(http, "GET", "/authorization/202309/shops", auth(shop, clock, access_token=None)))[1][
        "code"
    ] == 36009004
    assert (await call(http, "GET", "/authorization/202309/shops", auth(shop, clock, access_token="nope")))[1][
        "code"
    ] == 105001
    assert (await call(http, "GET", "/logistics/202309/warehouses", auth(shop, clock, shop_cipher="ROW_x")))[1][
        "code"
    ] == 36009005
    assert (await call(http, "GET", "/logistics/202309/warehouses", auth(shop, clock, cipher=False)))[1][
        "code"
    ] == 36009003
    sandbox.market.expire_access_token(shop["shop_id"])
    status, body = await call(http, "GET", "/authorization/202309/shops", auth(shop, clock, cipher=False))
    assert (status, body["code"]) == (401, 105002)


async def test_page_sizes_id_counts_and_sku_counts_are_capped(
    http: httpx.AsyncClient, shop: dict[str, Any], clock: FakeClock
) -> None:
    signer = auth(shop, clock)
    _, page = await call(http, "POST", "/order/202309/orders/search", signer, params={"page_size": 101}, json={})
    _, ids = await call(http, "GET", "/order/202309/orders", signer, params={"ids": ",".join(map(str, range(51)))})
    assert (page["code"], ids["code"]) == (36009003, 36009003)

    adapter = connect(shop, http, clock)
    uri = (await adapter.publish(draft())).uploaded_images
    skus = [
        {
            "seller_sku": f"S-{i}",
            "price": {"amount": "1000", "currency": "VND"},
            "inventory": [{"warehouse_id": shop["warehouse_id"], "quantity": 1}],
            "sales_attributes": [{"name": "Quy cách", "value_name": f"Gói {i}"}],
        }
        for i in range(101)
    ]
    product = {
        "title": "Bưởi Diễn Tân Triều loại 1, hộp quà",
        "description": "<p>Bưởi</p>",
        "category_id": "600001",
        "main_images": [{"uri": u} for u in uri.values()],
        "package_weight": {"value": "1", "unit": "KILOGRAM"},
        "skus": skus,
    }
    _, refused = await call(http, "POST", "/product/202309/products", signer, json=product)
    assert refused["code"] == 12052000
    assert "100" in refused["message"]
    product["skus"] = [{**skus[0], "price": {"amount": "1000.5", "currency": "VND"}}]
    assert (await call(http, "POST", "/product/202309/products", signer, json=product))[1]["code"] == 12052000
    product["skus"] = [{**skus[0], "price": {"amount": 1000, "currency": "VND"}}]  # a number, not a string
    assert (await call(http, "POST", "/product/202309/products", signer, json=product))[1]["code"] == 36009003


async def test_unknown_products_skus_and_orders_have_their_codes(
    http: httpx.AsyncClient, shop: dict[str, Any], clock: FakeClock
) -> None:
    signer = auth(shop, clock)
    adapter = connect(shop, http, clock)
    result = await adapter.publish(draft(variant("BUOI-1", "1 quả")))
    body = {"skus": [{"id": "42", "inventory": [{"warehouse_id": shop["warehouse_id"], "quantity": 1}]}]}
    path = f"/product/202309/products/{result.external_item_id}/inventory/update"

    assert (await call(http, "GET", "/product/202309/products/42", signer))[1]["code"] == 12052048
    assert (await call(http, "POST", path, signer, json=body))[1]["code"] == 12052049
    cancel = {"order_id": "576000000000000001", "cancel_reason": "seller_cancel_reason_out_of_stock"}
    assert (await call(http, "POST", "/return_refund/202309/cancellations", signer, json=cancel))[1]["code"] == 21011001
    _, detail = await call(http, "GET", "/order/202309/orders", signer, params={"ids": "576000000000000001"})
    assert detail["data"] == {"orders": []}


async def test_an_image_must_be_multipart_and_big_enough_for_a_main_image(
    http: httpx.AsyncClient, shop: dict[str, Any], clock: FakeClock
) -> None:
    signer = auth(shop, clock, cipher=False)
    path = "/product/202309/images/upload"
    _, json_body = await call(http, "POST", path, signer, json={"data": "x"})
    assert json_body["code"] == 36009022
    small = draft().images[0].data  # 600 px: fine
    _, ok = await call(
        http, "POST", path, signer, files={"data": ("a.jpg", small, "image/jpeg")}, data={"use_case": "MAIN_IMAGE"}
    )
    assert ok["code"] == 0
    assert ok["data"]["uri"].startswith("tos-")
    assert (ok["data"]["width"], ok["data"]["height"]) == (600, 600)


async def test_tokens_come_from_the_auth_host_with_the_app_secret_and_a_one_time_code(
    http: httpx.AsyncClient, shop: dict[str, Any], sandbox: TikTokSandbox, clock: FakeClock
) -> None:
    query = {"app_key": sandbox.app_key, "app_secret": "wrong", "refresh_token": shop["refresh_token"]}
    wrong = await http.get("/auth/api/v2/token/refresh", params={**query, "grant_type": "refresh_token"})
    assert wrong.json()["code"] == 36009004
    good = await http.get(
        "/auth/api/v2/token/refresh", params={**query, "app_secret": sandbox.app_secret, "grant_type": "refresh_token"}
    )
    data = good.json()["data"]
    assert data["access_token_expire_in"] == int(clock.now) + 7 * 86_400  # a Unix time, not a duration
    again = await http.get(
        "/auth/api/v2/token/refresh", params={**query, "app_secret": sandbox.app_secret, "grant_type": "refresh_token"}
    )
    assert again.json()["code"] == 36004004  # the sandbox's refresh tokens are single-use


async def test_the_shop_page_sells_and_snapshot_restore_keeps_products_orders_and_idempotency_keys(
    http: httpx.AsyncClient, shop: dict[str, Any], sandbox: TikTokSandbox, clock: FakeClock
) -> None:
    adapter = connect(shop, http, clock)
    listing = draft(variant("BUOI-1", "1 quả", 120_000, 3))
    published = await adapter.publish(listing)

    page = await http.get(f"/sandbox/shops/{shop['shop_id']}")
    assert "Bưởi Diễn Tân Triều" in page.text
    assert "buy 1" in page.text
    bought = await http.post(f"/sandbox/shops/{shop['shop_id']}/orders", data={"seller_sku": "BUOI-1"})
    assert bought.status_code == 303
    [order] = sandbox.shop(shop["shop_id"]).orders.values()
    assert order.status == "AWAITING_SHIPMENT"

    restored = TikTokSandbox(clock=clock)
    restored.restore(sandbox.snapshot())
    assert restored.shop(shop["shop_id"]).by_seller_sku("BUOI-1")[1].stock == 2  # type: ignore[index]
    assert list(restored.shop(shop["shop_id"]).orders) == [order.order_id]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(restored.app), base_url=BASE) as other:
        again = await connect(shop, other, clock).publish(listing)
    assert again.external_item_id == published.external_item_id
    assert json.loads(restored.snapshot())["idempotency"]
