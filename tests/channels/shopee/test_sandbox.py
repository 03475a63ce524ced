"""The sandbox refuses what Shopee refuses, with Shopee's own error codes, and the adapter maps each refusal to the
channel error the engine acts on; connect-by-authorisation runs end to end."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from agrimarket.channels.base import AuthorizationRequest, ListingDraft, StockUpdate, VariantDraft
from agrimarket.channels.errors import RateLimited, Rejected, Retryable
from agrimarket.channels.shopee import ShopeeApp, ShopeeAuth, ShopeeClient, ShopeePlugin, sign
from agrimarket.sandbox.core import Fault
from agrimarket.sandbox.shopee import ShopeeSandbox
from tests.channels.shopee.conftest import BASE_URL, CALLBACK_URL, connect
from tests.channels.support import FakeClock, photo

REDIRECT = "https://agrimarket.test/connections/shopee/callback"


def shop_auth(
    sandbox: ShopeeSandbox, credentials: dict[str, Any], clock: Callable[[], float], *, partner_key: str | None = None
) -> ShopeeAuth:
    return ShopeeAuth(
        sandbox.partner_id,
        partner_key or sandbox.partner_key,
        access_token=credentials["access_token"],
        shop_id=credentials["shop_id"],
        clock=clock,
    )


async def raw(
    http: httpx.AsyncClient, auth: httpx.Auth, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    response = await http.request(method, BASE_URL + path, auth=auth, **kwargs)
    return response.status_code, response.json()


async def test_a_wrong_sign_is_refused_with_error_sign(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    credentials = sandbox.add_shop("Shop")
    auth = shop_auth(sandbox, credentials, clock, partner_key="not-the-key")
    status, body = await raw(http, auth, "GET", "/api/v2/product/get_model_list", params={"item_id": 1})
    assert (status, body["error"], body["message"]) == (403, "error_sign", "Wrong sign.")


async def test_a_sign_over_the_path_with_the_mount_prefix_is_refused(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    credentials = sandbox.add_shop("Shop")
    ts = int(clock())
    base = f"{sandbox.partner_id}/prefix/api/v2/order/get_order_list{ts}"
    params = {
        "partner_id": sandbox.partner_id,
        "timestamp": ts,
        "access_token": credentials["access_token"],
        "shop_id": credentials["shop_id"],
        "sign": sign(sandbox.partner_key, base + f"{credentials['access_token']}{credentials['shop_id']}"),
    }
    response = await http.get(BASE_URL + "/api/v2/order/get_order_list", params=params)
    assert response.json()["error"] == "error_sign"


async def test_a_stale_timestamp_is_refused_as_expired(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    credentials = sandbox.add_shop("Shop")
    auth = shop_auth(sandbox, credentials, lambda: clock() - 301)
    status, body = await raw(http, auth, "GET", "/api/v2/product/get_model_list", params={"item_id": 1})
    assert (status, body["error"], body["message"]) == (403, "error_param", "Timestamp is expired.")


async def test_an_unknown_partner_and_a_missing_sign_are_refused(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    response = await http.get(BASE_URL + "/api/v2/push/get_app_push_config", params={"partner_id": 1, "timestamp": 1})
    assert response.json()["message"] == "There is no sign in query."
    auth = ShopeeAuth(1, sandbox.partner_key, clock=clock)
    _, body = await raw(http, auth, "GET", "/api/v2/push/get_app_push_config")
    assert body["error"] == "error_auth"


async def test_batches_pages_and_windows_beyond_shopees_limits_are_refused_with_error_param(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    result = await adapter.publish(
        ListingDraft(
            product_id=uuid.uuid4(),
            title="Tiêu đen",
            description="",
            variants=[VariantDraft("T-1", "Gói", 80_000, 5, 500, "gói")],
            images=[photo()],
        )
    )
    credentials = dict(adapter.credentials)
    auth = shop_auth(sandbox, credentials, clock)
    item_id = int(result.external_item_id)
    now = int(clock())
    cases: list[tuple[str, str, dict[str, Any]]] = [
        (
            "POST",
            "/api/v2/product/update_stock",
            {"json": {"item_id": item_id, "stock_list": [{"model_id": 0, "seller_stock": [{"stock": 1}]}] * 51}},
        ),
        ("POST", "/api/v2/product/update_price", {"json": {"item_id": item_id, "price_list": []}}),
        (
            "GET",
            "/api/v2/order/get_order_list",
            {
                "params": {
                    "time_range_field": "update_time",
                    "time_from": now - 15 * 86400 - 1,
                    "time_to": now,
                    "page_size": 10,
                }
            },
        ),
        (
            "GET",
            "/api/v2/order/get_order_list",
            {"params": {"time_range_field": "update_time", "time_from": now - 60, "time_to": now, "page_size": 101}},
        ),
        ("GET", "/api/v2/order/get_order_detail", {"params": {"order_sn_list": ",".join(f"X{i}" for i in range(51))}}),
    ]
    for method, path, kwargs in cases:
        status, body = await raw(http, auth, method, path, **kwargs)
        assert (status, body["error"]) == (200, "error_param"), (path, body)
        assert "response" not in body

    stock = [StockUpdate(result.external_item_id, "0", "T-1", 1)]
    assert (await adapter.set_stock(stock)).ok  # within the limits the same calls pass


async def test_the_adapter_maps_a_shopee_refusal_to_rejected_with_shopees_message(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    with pytest.raises(Rejected) as refused:
        await adapter.publish(
            ListingDraft(
                product_id=uuid.uuid4(),
                title="x" * 121,
                description="",
                variants=[VariantDraft("T-1", "Gói", 80_000, 5, 500, "gói")],
                images=[photo()],
            )
        )
    assert refused.value.code == "error_param"
    assert "item_name" in refused.value.message


async def test_throttling_is_rate_limited_with_shopees_code_and_a_retry_after(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    sandbox.market.config.rate_calls, sandbox.market.config.burst = 1, 1
    await adapter.get_orders(["A"])  # the one call the bucket holds
    with pytest.raises(RateLimited) as throttled:
        await adapter.get_orders(["A"])
    assert throttled.value.code == "error_rate_limit"
    assert throttled.value.status == 429
    assert throttled.value.retry_after == 1.0


async def test_an_injected_server_error_and_a_timeout_are_retryable(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(sandbox, http, clock)
    sandbox.market.config.timeout_seconds = 0.01
    sandbox.market.inject("product.update_stock", Fault.server_error)
    sandbox.market.inject("order.get_order_detail", Fault.timeout)
    with pytest.raises(Retryable) as failed:
        await adapter.set_stock([StockUpdate("1", "0", "S", 1)])
    assert (failed.value.code, failed.value.status) == ("error_server", 500)
    assert not isinstance(failed.value, RateLimited)
    with pytest.raises(Retryable):
        await adapter.get_orders(["A"])
    sandbox.market.inject("order.get_order_list", Fault.throttle)
    with pytest.raises(RateLimited):
        await adapter.list_orders(
            since=datetime.fromtimestamp(clock() - 60, UTC), until=datetime.fromtimestamp(clock(), UTC)
        )


async def test_authorisation_redirects_back_with_a_code_that_exchanges_once_for_working_credentials(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    plugin = ShopeePlugin(app=ShopeeApp(partner_id=sandbox.partner_id, partner_key=sandbox.partner_key), clock=clock)
    request = AuthorizationRequest(redirect_uri=REDIRECT, state="s-123", settings={"base_url": BASE_URL})
    url = plugin.authorization_url(request)
    assert url.startswith(f"{BASE_URL}/api/v2/shop/auth_partner?partner_id={sandbox.partner_id}&timestamp=")
    page = await http.get(url)
    assert page.status_code == 200
    assert "Authorise" in page.text
    back = await http.get(url + "&shop_id=new")
    assert back.status_code == 302
    location = back.headers["location"]
    assert location.startswith(REDIRECT + "?")
    callback = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert callback["state"] == "s-123"
    assert callback["code"]
    assert callback["shop_id"]

    credentials = await plugin.exchange_code(callback, request, http)
    assert plugin.credentials_schema.model_validate(credentials)
    adapter = connect(sandbox, http, clock, credentials)
    assert await adapter.get_orders(["NONE"]) == []
    with pytest.raises(Rejected):  # one-time code
        await plugin.exchange_code(callback, request, http)


async def test_a_stale_authorisation_link_is_refused_by_the_page(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    plugin = ShopeePlugin(app=ShopeeApp(partner_id=sandbox.partner_id, partner_key=sandbox.partner_key), clock=clock)
    url = plugin.authorization_url(AuthorizationRequest(REDIRECT, "s", {"base_url": BASE_URL}))
    clock.advance(301)
    response = await http.get(url + "&shop_id=new")
    assert (response.status_code, response.json()["message"]) == (403, "Timestamp is expired.")


def test_without_an_app_configured_authorisation_is_refused_with_the_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGRIMARKET_SHOPEE_PARTNER_ID", raising=False)
    monkeypatch.delenv("AGRIMARKET_SHOPEE_PARTNER_KEY", raising=False)
    with pytest.raises(Rejected, match="AGRIMARKET_SHOPEE_PARTNER_ID"):
        ShopeePlugin().authorization_url(AuthorizationRequest(REDIRECT, "s"))
    monkeypatch.setenv("AGRIMARKET_SHOPEE_PARTNER_ID", "2001887")
    monkeypatch.setenv("AGRIMARKET_SHOPEE_PARTNER_KEY", "k")
    assert "partner_id=2001887" in ShopeePlugin().authorization_url(AuthorizationRequest(REDIRECT, "s"))


async def test_a_lost_push_is_listed_by_get_lost_push_message_until_confirmed(
    sandbox: ShopeeSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    app = ShopeeClient(
        http, base_url=BASE_URL, partner_id=sandbox.partner_id, partner_key=sandbox.partner_key, clock=clock
    )
    await app.result("POST", "/api/v2/push/set_app_push_config", json={"callback_url": CALLBACK_URL}, shop=False)
    assert sandbox.app_callback_url == CALLBACK_URL
    sandbox.market.config.lost_push_every = 1
    adapter = connect(sandbox, http, clock)
    await adapter.publish(
        ListingDraft(
            product_id=uuid.uuid4(),
            title="Sầu riêng Ri6",
            description="",
            variants=[VariantDraft("SR-1", "Trái 3 kg", 300_000, 5, 3000, "trái")],
            images=[photo()],
        )
    )
    order_sn = await sandbox.place_order(adapter.credentials["shop_id"], [("SR-1", 1)])
    lost = await app.result("GET", "/api/v2/push/get_lost_push_message", shop=False)
    (message,) = lost["push_message_list"]
    assert (message["code"], message["data"]["ordersn"]) == (3, order_sn)
    await app.result(
        "POST",
        "/api/v2/push/confirm_consumed_lost_push_message",
        json={"last_message_id": lost["last_message_id"]},
        shop=False,
    )
    again = await app.result("GET", "/api/v2/push/get_lost_push_message", shop=False)
    assert again["push_message_list"] == []
