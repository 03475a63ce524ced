"""The Tiki adapter against its sandbox: OAuth, product requests under review, updateSku(s), orders, the event
queue, and Tiki's refusals mapped to channel errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from agrimarket.channels.base import (
    AuthorizationRequest,
    EventKind,
    EventQueue,
    PriceUpdate,
    PublishState,
    Shipment,
    StockReader,
    StockUpdate,
)
from agrimarket.channels.errors import (
    AuthExpired,
    ChannelNotFound,
    InvalidSignature,
    RateLimited,
    Rejected,
    Retryable,
)
from agrimarket.channels.tiki import TikiAdapter, TikiApp, TikiPlugin
from agrimarket.channels.tiki.adapter import SKUS_BATCH
from agrimarket.models.orders import OrderStatus
from agrimarket.sandbox.core import Fault
from agrimarket.sandbox.tiki import TikiSandbox
from tests.channels.support import FakeClock
from tests.channels.tiki.conftest import BASE, SETTINGS, connect, draft, variant

TWO = (variant("BUOI-1", "1 quả", 85_000, 12), variant("BUOI-2", "Cặp 2 quả", 160_000, 5))


def _products(sandbox: TikiSandbox, shop: dict[str, Any]) -> dict[str, tuple[str, int, int]]:
    """Seller SKU → (status, price, stock) of every Tiki product of the shop."""
    return {
        sku.seller_sku: (item.status, sku.price_vnd, sku.stock)
        for item in sandbox.market.shops[shop["seller_id"]].items.values()
        for sku in item.skus.values()
    }


async def _live(adapter: TikiAdapter, sandbox: TikiSandbox, *variants: Any) -> tuple[str, dict[str, str]]:
    first = await adapter.publish(draft(*variants))
    sandbox.approve(first.external_item_id[1:])
    again = await adapter.publish(
        draft(*variants, external_item_id=first.external_item_id, uploaded_images=dict(first.uploaded_images))
    )
    assert again.state is PublishState.live
    return again.external_item_id, dict(again.external_sku_ids)


# -- OAuth ---------------------------------------------------------------------------------------------------


async def test_oauth_round_trip_authorises_a_seller_and_refreshes_its_token(
    sandbox: TikiSandbox, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    plugin = TikiPlugin(TikiApp(client_id=sandbox.client_id, client_secret=sandbox.client_secret), clock=clock)
    request = AuthorizationRequest(
        redirect_uri="https://agrimarket.test/connect/tiki", state="s-12345678", settings=SETTINGS
    )
    url = plugin.authorization_url(request)
    assert url.startswith(f"{BASE}/sc/oauth2/auth?")
    assert parse_qs(urlsplit(url).query)["scope"] == ["offline product order inventory"]

    consent = await http.get(url + "&shop_name=Vườn+cam+Vinh")
    assert consent.status_code == 302
    back = {k: v[0] for k, v in parse_qs(urlsplit(consent.headers["location"]).query).items()}
    assert back["state"] == "s-12345678"
    credentials = dict(await plugin.exchange_code(back, request, http))

    shop = next(s for s in sandbox.market.shops.values() if s.name == "Vườn cam Vinh")
    assert credentials["seller_id"] == shop.shop_id
    assert credentials["access_token"] == shop.access_token
    with pytest.raises(Rejected):  # a code works once
        await plugin.exchange_code(back, request, http)
    with pytest.raises(Rejected):
        await plugin.exchange_code({**back, "state": "another-one"}, request, http)

    adapter = connect(credentials, http, clock, plugin)
    sandbox.market.expire_access_token(shop.shop_id)
    with pytest.raises(AuthExpired):
        await adapter.get_orders(["1"])
    refreshed = dict(await adapter.refresh_credentials())
    assert refreshed["refresh_token"] != credentials["refresh_token"]
    assert await connect(refreshed, http, clock).get_orders(["1"]) == []
    with pytest.raises(AuthExpired):  # the old refresh token was rotated away
        await connect(credentials, http, clock).refresh_credentials()


async def test_the_token_endpoint_wants_basic_client_auth_and_a_form(
    sandbox: TikiSandbox, http: httpx.AsyncClient
) -> None:
    wrong = await http.post(
        "/sc/oauth2/token", data={"grant_type": "client_credentials"}, auth=(sandbox.client_id, "not-the-secret")
    )
    as_json = await http.post("/sc/oauth2/token", json={"grant_type": "client_credentials"})
    app = await http.post(
        "/sc/oauth2/token", data={"grant_type": "client_credentials"}, auth=(sandbox.client_id, sandbox.client_secret)
    )

    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    assert as_json.status_code == 400
    assert app.status_code == 200
    assert "refresh_token" not in app.json()  # the app's own token cannot be refreshed, only asked for again


async def test_a_call_without_a_valid_bearer_token_is_auth_expired(
    shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock
) -> None:
    answer = await http.get("/integration/v2/orders")
    assert (answer.status_code, answer.json()["error"]) == (401, "invalid_request")
    with pytest.raises(AuthExpired):
        await connect({**shop, "access_token": "forged"}, http, clock).list_orders(
            since=_at(clock, -3600), until=_at(clock, 0)
        )


# -- product requests and review --------------------------------------------------------------------------


async def test_a_new_product_is_a_request_in_review_and_live_with_one_tiki_product_per_variant_once_approved(
    adapter: TikiAdapter, sandbox: TikiSandbox, shop: dict[str, Any], clock: FakeClock
) -> None:
    first = await adapter.publish(draft(*TWO))

    assert first.state is PublishState.in_review
    assert first.external_item_id.startswith("t")
    assert first.external_sku_ids == {}
    assert first.message is not None
    assert "queued it for review (queuing)" in first.message
    assert _products(sandbox, shop) == {}

    clock.advance(sandbox.step_seconds * 4)  # the automatic steps are done; a person decides now
    waiting = await adapter.publish(draft(*TWO, external_item_id=first.external_item_id))
    assert waiting.state is PublishState.in_review
    assert waiting.message is not None
    assert "content team is reviewing" in waiting.message
    assert len(sandbox.market.calls_of("POST /integration/v2.1/requests")) == 1  # no second request while waiting

    sandbox.approve(first.external_item_id[1:])
    live = await adapter.publish(draft(*TWO, external_item_id=first.external_item_id))

    assert live.state is PublishState.live
    assert live.external_item_id.startswith("r")  # the request id: track ids expire after 30 days
    assert set(live.external_sku_ids) == {"BUOI-1", "BUOI-2"}
    assert len(set(live.external_sku_ids.values())) == 2  # every variant its own Tiki product
    # Approved products are created inactive; the publish puts them on sale at our price and stock.
    assert _products(sandbox, shop) == {"BUOI-1": ("active", 85_000, 12), "BUOI-2": ("active", 160_000, 5)}


async def test_a_rejected_request_is_rejected_with_tikis_reason(adapter: TikiAdapter, sandbox: TikiSandbox) -> None:
    first = await adapter.publish(draft(*TWO))
    sandbox.reject(first.external_item_id[1:], "Hình ảnh không hợp lệ")

    with pytest.raises(Rejected, match="Hình ảnh không hợp lệ"):
        await adapter.publish(draft(*TWO, external_item_id=first.external_item_id))


async def test_a_variant_added_to_a_product_on_tiki_goes_out_in_a_request_of_its_own(
    adapter: TikiAdapter, sandbox: TikiSandbox, shop: dict[str, Any]
) -> None:
    item, ids = await _live(adapter, sandbox, *TWO)
    three = (*TWO, variant("BUOI-3", "Thùng 5 quả", 390_000, 2))

    added = await adapter.publish(draft(*three, external_item_id=item))
    assert added.state is PublishState.in_review
    assert {k: added.external_sku_ids[k] for k in ids} == ids

    sandbox.approve(added.external_item_id.split(",")[-1][1:])
    live = await adapter.publish(draft(*three, external_item_id=added.external_item_id))
    assert live.state is PublishState.live
    assert {k: live.external_sku_ids[k] for k in ids} == ids
    assert _products(sandbox, shop)["BUOI-3"] == ("active", 390_000, 2)


async def test_a_request_without_a_category_or_a_photo_is_refused_before_it_is_sent(
    shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock, sandbox: TikiSandbox
) -> None:
    adapter = connect(shop, http, clock)
    adapter.settings = adapter.settings.model_copy(update={"category_id": None})
    with pytest.raises(Rejected) as no_category:
        await adapter.publish(draft())
    with pytest.raises(Rejected) as no_photo:
        await connect(shop, http, clock).publish(draft(images=()))

    assert no_category.value.field == "category"
    assert no_photo.value.field == "images"
    assert sandbox.market.calls_of("POST /integration/v2.1/requests", outcome=None) == []


async def test_delist_takes_every_variant_off_sale_and_publishing_again_brings_them_back(
    adapter: TikiAdapter, sandbox: TikiSandbox, shop: dict[str, Any]
) -> None:
    item, _ = await _live(adapter, sandbox, *TWO)

    await adapter.delist(item)
    assert {status for status, _, _ in _products(sandbox, shop).values()} == {"inactive"}

    again = await adapter.publish(draft(*TWO, external_item_id=item))
    assert again.state is PublishState.live
    assert {status for status, _, _ in _products(sandbox, shop).values()} == {"active"}


# -- price and stock ---------------------------------------------------------------------------------------


async def test_updateskus_sends_at_most_the_batch_and_one_entry_goes_through_updatesku(
    adapter: TikiAdapter, sandbox: TikiSandbox, shop: dict[str, Any], http: httpx.AsyncClient
) -> None:
    variants = [variant(f"CAM-{i:02d}", f"Hộp {i}", 50_000 + i, 10) for i in range(20)]
    first = await adapter.publish(draft(*variants[:10]))
    sandbox.approve(first.external_item_id[1:])
    live = await adapter.publish(draft(*variants[:10], external_item_id=first.external_item_id))
    ids = live.external_sku_ids

    updates = [StockUpdate(live.external_item_id, ids[v.sku], v.sku, 3) for v in variants[:10]]
    assert (await adapter.set_stock(updates)).ok
    assert (await adapter.set_prices([PriceUpdate(live.external_item_id, ids["CAM-00"], "CAM-00", 61_000)])).ok

    assert len(sandbox.market.calls_of("PUT /integration/v2.1/products/updateSkus")) == 2  # activation + stock
    assert len(sandbox.market.calls_of("PUT /integration/v2/products/updateSku")) == 1
    assert {stock for _, _, stock in _products(sandbox, shop).values()} == {3}
    assert _products(sandbox, shop)["CAM-00"][1] == 61_000

    too_many = [{"product_id": int(ids["CAM-00"]), "price": 60_000}] * (SKUS_BATCH + 1)
    answer = await http.put(  # the sandbox holds the line (our stated default)
        "/integration/v2.1/products/updateSkus",
        json={"data": too_many},
        headers={"Authorization": f"Bearer {shop['access_token']}"},
    )
    assert (answer.status_code, answer.json()["code"]) == (400, "TOO_MANY_ITEMS")


async def test_a_refused_entry_of_a_batch_is_reported_and_the_others_applied(
    adapter: TikiAdapter, sandbox: TikiSandbox, shop: dict[str, Any]
) -> None:
    item, ids = await _live(adapter, sandbox, *TWO)

    result = await adapter.set_stock(
        [StockUpdate(item, ids["BUOI-1"], "BUOI-1", 4), StockUpdate(item, "999999", "BUOI-GONE", 1)]
    )

    assert [failure.sku for failure in result.failures] == ["BUOI-GONE"]
    assert isinstance(result.failures[0].error, ChannelNotFound)
    assert _products(sandbox, shop)["BUOI-1"][2] == 4


async def test_read_stock_says_what_each_tiki_product_shows(adapter: TikiAdapter, sandbox: TikiSandbox) -> None:
    item, ids = await _live(adapter, sandbox, *TWO)
    assert isinstance(adapter, StockReader)

    shown = await adapter.read_stock([(item, ids["BUOI-1"]), (item, ids["BUOI-2"]), (item, "424242")])

    assert shown == {(item, ids["BUOI-1"]): 12, (item, ids["BUOI-2"]): 5}


async def test_throttling_and_faults_are_mapped_to_retryable_errors(
    adapter: TikiAdapter, sandbox: TikiSandbox, clock: FakeClock
) -> None:
    sandbox.market.inject("GET /integration/v2/orders", Fault.throttle)
    sandbox.market.inject("GET /integration/v2/orders", Fault.server_error)
    with pytest.raises(RateLimited) as throttled:
        await adapter.list_orders(since=_at(clock, -60), until=_at(clock, 0))
    with pytest.raises(Retryable):
        await adapter.list_orders(since=_at(clock, -60), until=_at(clock, 0))
    assert throttled.value.retry_after == 1.0


# -- orders ------------------------------------------------------------------------------------------------


def _at(clock: FakeClock, seconds: float) -> datetime:
    return datetime.fromtimestamp(clock() + seconds, UTC)


async def test_orders_are_listed_by_update_time_a_page_at_a_time_and_read_in_whole_dong(
    adapter: TikiAdapter, sandbox: TikiSandbox, shop: dict[str, Any], clock: FakeClock
) -> None:
    await _live(adapter, sandbox, *TWO)
    codes = [await sandbox.place_order(shop["seller_id"], [("BUOI-1", 1)]) for _ in range(3)]
    for code in codes:
        clock.advance(1)
        sandbox.set_order_status(shop["seller_id"], code, "queueing")
    big = await sandbox.place_order(shop["seller_id"], [("BUOI-2", 2), ("BUOI-1", 1)], shipping_fee_vnd=30_000)

    listed: list[str] = []
    cursor: str | None = None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("agrimarket.channels.tiki.adapter.ORDERS_PAGE", 2)
        while True:
            page = await adapter.list_orders(since=_at(clock, -60), until=_at(clock, 60), cursor=cursor)
            listed += [ref.external_id for ref in page.orders]
            cursor = page.next_cursor
            if cursor is None:
                break
    [order] = await adapter.get_orders([big, "404404"])

    assert sorted(listed) == sorted([*codes, big])
    assert order.status is OrderStatus.paid
    assert order.platform_status == "queueing"
    assert [(line.sku, line.quantity, line.unit_price_vnd) for line in order.lines] == [
        ("BUOI-2", 2, 160_000),
        ("BUOI-1", 1, 85_000),
    ]
    assert (order.total_vnd, order.shipping_fee_vnd) == (435_000, 30_000)
    assert order.buyer_name == "Trần Văn Minh"


async def test_ship_confirms_the_goods_and_cancel_declines_them_both_idempotent(
    adapter: TikiAdapter, sandbox: TikiSandbox, shop: dict[str, Any]
) -> None:
    await _live(adapter, sandbox, *TWO)
    shipped = await sandbox.place_order(shop["seller_id"], [("BUOI-1", 1)])
    cancelled = await sandbox.place_order(shop["seller_id"], [("BUOI-2", 2)])

    for _ in range(2):
        await adapter.ship(shipped, Shipment())
        await adapter.cancel(cancelled, "Hết hàng")

    orders = {o.external_id: o for o in await adapter.get_orders([shipped, cancelled])}
    assert orders[shipped].status is OrderStatus.ready_to_ship
    assert orders[cancelled].status is OrderStatus.cancelled
    assert _products(sandbox, shop)["BUOI-2"][2] == 5  # the cancelled units are on sale again
    with pytest.raises(Rejected):
        await adapter.ship(cancelled, Shipment())
    with pytest.raises(Rejected):
        await adapter.cancel(shipped, "Hết hàng")


# -- the event queue ---------------------------------------------------------------------------------------


async def test_the_event_queue_is_made_once_subscribed_and_brings_each_order_event_until_acknowledged(
    adapter: TikiAdapter, sandbox: TikiSandbox, shop: dict[str, Any], clock: FakeClock
) -> None:
    assert isinstance(adapter, EventQueue)
    await _live(adapter, sandbox, *TWO)
    assert (await adapter.pull_events(10)).events == []  # makes the queue and subscribes
    code = await sandbox.place_order(shop["seller_id"], [("BUOI-1", 2)])

    pulled = await adapter.pull_events(10)
    [event] = pulled.events
    assert (event.kind, list(event.order_ids)) == (EventKind.order, [code])
    assert pulled.ack_token is not None
    assert event.external_id.encode() in pulled.bodies[event.external_id]

    clock.advance(sandbox.ack_deadline_seconds + 1)  # not acknowledged in time: it comes again, same id
    again = await adapter.pull_events(10)
    assert [e.external_id for e in again.events] == [event.external_id]
    with pytest.raises(ChannelNotFound):
        await adapter.ack_events(pulled.ack_token)  # too late for the first delivery
    assert again.ack_token is not None
    await adapter.ack_events(again.ack_token)
    clock.advance(sandbox.ack_deadline_seconds + 1)
    assert (await adapter.pull_events(10)).events == []

    assert len(sandbox.state.queues) == 1
    assert len(sandbox.state.subscriptions) == 2
    assert len(sandbox.market.calls_of("POST /integration/v1/queues")) == 1
    assert len(sandbox.market.calls_of("POST /integration/v1/queues/{code}/subscriptions")) == 2


async def test_an_expired_app_token_is_replaced_without_touching_the_sellers(
    adapter: TikiAdapter, sandbox: TikiSandbox, shop: dict[str, Any]
) -> None:
    await adapter.pull_events(10)
    sandbox.expire_app_tokens()

    assert (await adapter.pull_events(10)).events == []
    assert adapter.credentials["access_token"] == shop["access_token"]


def test_tiki_signs_no_push_so_nothing_at_a_webhook_address_is_believed(adapter: TikiAdapter) -> None:
    with pytest.raises(InvalidSignature):
        adapter.parse_webhook(url="https://agrimarket.test/webhooks/tiki/x", headers={}, body=b'{"id":"1"}')


async def test_a_rejected_request_for_a_later_variant_leaves_the_others_on_sale_and_says_which_was_refused(
    adapter: TikiAdapter, sandbox: TikiSandbox
) -> None:
    item, ids = await _live(adapter, sandbox, *TWO)
    three = (*TWO, variant("BUOI-3", "Thùng 5 quả", 390_000, 2))
    added = await adapter.publish(draft(*three, external_item_id=item))
    sandbox.reject(added.external_item_id.split(",")[-1][1:], "Thiếu giấy chứng nhận")

    after = await adapter.publish(draft(*three, external_item_id=added.external_item_id))

    assert after.state is PublishState.live
    assert dict(after.external_sku_ids) == ids
    assert after.message is not None
    assert "BUOI-3" in after.message
    assert "Thiếu giấy chứng nhận" in after.message
    assert after.external_item_id == item  # the refused request is forgotten: the next change sends a new one
    assert len(sandbox.market.calls_of("POST /integration/v2.1/requests")) == 2
