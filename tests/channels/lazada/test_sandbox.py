"""The sandbox refuses what Lazada refuses, with Lazada's own codes, throttles and fails on demand, runs the
authorisation flow, works mounted under a prefix, and lets a person buy from the shop's page."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from agrimarket.channels.base import AuthorizationRequest, OAuthPlugin, StockUpdate
from agrimarket.channels.errors import RateLimited, Rejected, Retryable
from agrimarket.channels.lazada import LazadaAdapter, LazadaApp, LazadaAuth, LazadaPlugin
from agrimarket.sandbox.core import Fault, SandboxConfig
from agrimarket.sandbox.lazada import LazadaSandbox
from tests.channels.lazada.conftest import BASE, SETTINGS, connect, draft
from tests.channels.support import FakeClock, jpeg

RED = jpeg((200, 30, 30), 400)


async def test_a_wrong_signature_gets_incomplete_signature(
    shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock
) -> None:
    forged = connect({**shop, "app_secret": "not-the-secret"}, http, clock)
    with pytest.raises(Rejected) as caught:
        await forged.list_orders(since=_at(clock.now - 60), until=_at(clock.now))
    assert caught.value.code == "IncompleteSignature"
    assert caught.value.message == "The request signature does not conform to platform standards"


async def test_a_tampered_parameter_breaks_the_signature(
    sandbox: LazadaSandbox, shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock
) -> None:
    auth = LazadaAuth(
        sandbox.app_key, sandbox.app_secret, base_path="/rest", access_token=shop["access_token"], clock=clock
    )
    signed = next(auth.auth_flow(http.build_request("GET", f"{BASE}/rest/order/get", params={"order_id": "1"})))
    signed.url = signed.url.copy_set_param("order_id", "2")
    body = (await http.send(signed)).json()
    assert body["code"] == "IncompleteSignature"
    assert body["type"] == "ISV"
    assert body["request_id"]


async def test_a_stale_timestamp_is_refused(
    shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock, sandbox: LazadaSandbox
) -> None:
    late = connect(shop, http, FakeClock(clock.now - 7_201))
    with pytest.raises(Rejected) as caught:
        await late.list_orders(since=_at(clock.now - 60), until=_at(clock.now))
    assert caught.value.code == "InvalidTimestamp"
    within = connect(shop, http, FakeClock(clock.now - 7_000))
    await within.list_orders(since=_at(clock.now - 60), until=_at(clock.now))


async def test_a_page_over_a_hundred_orders_is_refused(adapter: LazadaAdapter, sandbox: LazadaSandbox) -> None:
    answer = await adapter._api().call(
        "/orders/get", {"update_after": "2024-01-01T00:00:00+07:00", "limit": 101}, method="GET", check=False
    )
    assert answer["code"] == "InvalidParameter"


async def test_too_fast_is_api_call_limit_with_a_one_second_ban(
    clock: FakeClock, http: httpx.AsyncClient, sandbox: LazadaSandbox, shop: dict[str, Any]
) -> None:
    sandbox.market.config = SandboxConfig(rate_calls=2, rate_per_seconds=1.0, burst=2)
    adapter = connect(shop, http, clock)
    update = [StockUpdate("1", "1", "CAM-1KG", 1)]
    await adapter.set_stock(update)
    await adapter.set_stock(update)
    with pytest.raises(RateLimited) as caught:
        await adapter.set_stock(update)
    assert caught.value.code == "ApiCallLimit"
    assert caught.value.retry_after == 1.0
    assert sandbox.market.calls_of(outcome="ApiCallLimit")


async def test_injected_faults_are_rate_limited_or_retryable(adapter: LazadaAdapter, sandbox: LazadaSandbox) -> None:
    update = [StockUpdate("1", "1", "CAM-1KG", 1)]
    sandbox.market.inject("/product/stock/sellable/update", Fault.throttle)
    with pytest.raises(RateLimited):
        await adapter.set_stock(update)
    sandbox.market.inject("/product/stock/sellable/update", Fault.server_error)
    with pytest.raises(Retryable) as server:
        await adapter.set_stock(update)
    assert server.value.status == 500
    sandbox.market.inject("/product/stock/sellable/update", Fault.timeout)
    with pytest.raises(Retryable) as slow:
        await adapter.set_stock(update)
    assert slow.value.status == 504
    result = await adapter.set_stock(update)  # faults used up: the call goes through (the SKU is unknown)
    assert [f.error.code for f in result.failures] == ["SKU_NOT_FOUND"]


async def test_authorisation_redirects_with_a_code_that_buys_working_credentials_once(
    sandbox: LazadaSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    plugin = LazadaPlugin(LazadaApp(app_key=sandbox.app_key, app_secret=sandbox.app_secret), clock=clock)
    assert isinstance(plugin, OAuthPlugin)
    request = AuthorizationRequest("https://agrimarket.test/connect/lazada/callback", "st4te", SETTINGS)
    url = plugin.authorization_url(request)
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{BASE}/auth/oauth/authorize?")
    assert query["client_id"] == [sandbox.app_key]
    assert query["force_auth"] == ["true"]
    page = await http.get(url)
    assert page.status_code == 200
    assert "shop_name" in page.text
    back = await http.get(url, params={**{k: v[0] for k, v in query.items()}, "shop_name": "Vườn bưởi Diễn"})
    assert back.status_code == 302
    location = back.headers["location"]
    assert location.startswith(request.redirect_uri)
    callback = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert callback["state"] == "st4te"
    credentials = await plugin.exchange_code(callback, request, http)
    seller_id = plugin.shop_id(credentials)
    assert seller_id is not None
    assert sandbox.market.shops[seller_id].name == "Vườn bưởi Diễn"
    adapter = connect(dict(credentials), http, clock)
    result = await adapter.publish(draft(images=(RED,)))
    assert result.external_item_id
    with pytest.raises(Rejected) as reused:
        await plugin.exchange_code(callback, request, http)
    assert reused.value.code == "InvalidCode"
    with pytest.raises(Rejected):
        await plugin.exchange_code({**callback, "state": "other"}, request, http)


async def test_the_adapter_works_against_the_sandbox_mounted_under_a_prefix(
    sandbox: LazadaSandbox, shop: dict[str, Any], clock: FakeClock
) -> None:
    host = Starlette(routes=[Mount("/sandbox/lazada", app=sandbox.app)])
    prefix = "http://demo.test/sandbox/lazada"
    settings = {"api_url": f"{prefix}/rest", "auth_url": f"{prefix}/auth", "primary_category": 10_001}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(host)) as http:
        adapter = connect(shop, http, clock, settings)
        result = await adapter.publish(draft(images=(RED,)))
        image_url = next(iter(result.uploaded_images.values()))
        assert image_url.startswith(f"{prefix}/images/")
        assert (await http.get(image_url)).content == RED.data
        await adapter.refresh_credentials()
        page = await http.get(f"{prefix}/sandbox/shops/{shop['seller_id']}")
        assert "Cam Cao Phong loại 1" in page.text
        assert f'action="{prefix}/sandbox/shops/{shop["seller_id"]}/orders"' in page.text


async def test_the_shop_page_buy_button_places_an_order_and_pushes_it(
    sandbox: LazadaSandbox, shop: dict[str, Any], http: httpx.AsyncClient, adapter: LazadaAdapter
) -> None:
    received: list[httpx.Request] = []

    def hook(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200)

    sandbox.market.use_http(httpx.AsyncClient(transport=httpx.MockTransport(hook)))
    sandbox.set_callback(shop["seller_id"], "https://agrimarket.test/webhooks/lazada")
    await adapter.publish(draft(images=(RED,)))
    answer = await http.post(f"/sandbox/shops/{shop['seller_id']}/orders", data={"seller_sku": "CAM-1KG"})
    assert answer.status_code == 303
    [order] = sandbox.market.shops[shop["seller_id"]].orders.values()
    assert [line.seller_sku for line in order.lines] == ["CAM-1KG"]
    await sandbox.market.drain()
    assert adapter.parse_webhook(url="", headers=dict(received[0].headers), body=received[0].content).order_ids == [
        order.order_id
    ]
    assert (
        await http.post(f"/sandbox/shops/{shop['seller_id']}/orders", data={"seller_sku": "NOPE"})
    ).status_code == 404


async def test_publish_refuses_a_zero_price_and_foreign_images(adapter: LazadaAdapter) -> None:
    from tests.channels.support import variant

    with pytest.raises(Rejected) as zero:
        await adapter._api().call(
            "/product/create",
            {
                "payload": '{"Request":{"Product":{"PrimaryCategory":"1","Attributes":{"name":"x","brand":"No Brand"},'
                '"Skus":{"Sku":[{"SellerSku":"A","price":0,"quantity":1,"package_length":1,"package_width":1,'
                '"package_height":1,"package_weight":1}]}}}}'
            },
        )
    assert zero.value.code == "BIZ_CHECK_PRICE_IS_ZERO"
    with pytest.raises(Rejected) as foreign:
        await adapter.publish(
            draft(variant("A", "a"), images=(RED,), uploaded_images={RED.content_hash: "https://x/y.jpg"})
        )
    assert foreign.value.code == "IMAGE_NOT_LAZADA"


def _at(ts: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)
