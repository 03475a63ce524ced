"""The reference adapter honours the whole channel port and refuses what a strict marketplace refuses."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agrimarket.channels.base import (
    BatchLimit,
    ChannelAdapter,
    ChannelPlugin,
    ConnectionInfo,
    EventKind,
    Feature,
    ImageRef,
    ListingDraft,
    ListingLimits,
    PriceUpdate,
    RateLimit,
    Shipment,
    StockUpdate,
    VariantDraft,
)
from agrimarket.channels.errors import (
    AuthExpired,
    ChannelNotFound,
    InvalidSignature,
    MalformedEvent,
    RateLimited,
    Rejected,
    Retryable,
)
from agrimarket.channels.reference import (
    SIGNATURE_HEADER,
    ReferenceAdapter,
    ReferenceMarket,
    ReferencePlugin,
    ReferenceSettings,
    Shop,
    plugin,
)
from agrimarket.channels.registry import ChannelRegistry
from agrimarket.models.orders import OrderStatus
from tests.worker.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
# Generous enough that only the rate-limit tests meet the shop's limiter.
UNTHROTTLED = RateLimit(calls=10_000, per_seconds=1.0, burst=1_000)


@pytest.fixture(autouse=True)
def market() -> Iterator[None]:
    ReferenceMarket.reset()
    yield
    ReferenceMarket.reset()


def variant_plugin(**changes: Any) -> ReferencePlugin:
    changes.setdefault("rate_limit", UNTHROTTLED)
    return ReferencePlugin(capabilities=dataclasses.replace(plugin.capabilities, **changes))


def connect(
    shop_id: str | None = None,
    *,
    on: ReferencePlugin | None = None,
    credentials: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> ReferenceAdapter:
    shop_id = shop_id or f"shop-{uuid.uuid4().hex[:8]}"
    connection = ConnectionInfo(
        connection_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        external_shop_id=shop_id,
        credentials=credentials or {"shop_id": shop_id, "access_token": "at-1", "refresh_token": "rt-1"},
        settings=settings or {},
    )
    adapter = (on or variant_plugin()).adapter(connection, http=None)  # type: ignore[arg-type]
    assert isinstance(adapter, ReferenceAdapter)
    return adapter


def variant(sku: str, *, price: int = 120_000, stock: int = 10) -> VariantDraft:
    return VariantDraft(sku=sku, name=f"Hũ {sku}", price_vnd=price, stock=stock, weight_grams=500, unit="hu")


def draft(*skus: str, title: str = "Hạt điều rang muối", **changes: Any) -> ListingDraft:
    return ListingDraft(
        product_id=uuid.uuid4(),
        title=title,
        description="Điều Bình Phước loại A.",
        variants=[variant(sku) for sku in skus or ("DIEU-1",)],
        **changes,
    )


def image(content: bytes, *, data: bytes | None = None) -> ImageRef:
    return ImageRef(f"sha-{content.hex()}", "image/jpeg", 800, 800, content if data is None else data)


def stock(shop: Shop) -> dict[str, int]:
    return {sku.sku: sku.stock for item in shop.items.values() for sku in item.skus.values()}


def ops(shop: Shop) -> Counter[str]:
    return Counter(call.op for call in shop.calls)


async def listed(adapter: ReferenceAdapter, *skus: str) -> tuple[str, dict[str, str]]:
    result = await adapter.publish(draft(*skus))
    return result.external_item_id, dict(result.external_sku_ids)


# -- the plugin ---------------------------------------------------------------------------------------------


def test_the_plugin_declares_the_stated_defaults_and_registers_under_its_name() -> None:
    caps = plugin.capabilities
    assert (plugin.name, caps.name, caps.display_name) == ("reference", "reference", "Reference market (in memory)")
    assert (caps.stock_batch, caps.price_batch) == (BatchLimit(50), BatchLimit(50))
    assert caps.rate_limit == RateLimit(20, 1.0, 5, documented=False, source="the reference adapter's stated default")
    assert caps.features == frozenset(Feature)
    assert (caps.required_fields, caps.image_rule, caps.max_in_flight) == (frozenset(), None, 4)
    assert plugin.shop_id({"shop_id": "s-9", "access_token": "a", "refresh_token": "r"}) == "s-9"
    registry = ChannelRegistry()
    registry.add(plugin)
    assert registry.get("reference") is plugin
    typed: ChannelPlugin = plugin
    assert isinstance(connect(on=ReferencePlugin()), ChannelAdapter)
    assert typed.credentials_schema.model_validate(
        {"shop_id": "s", "access_token": "a", "refresh_token": "r"}
    ).model_dump()["webhook_secret"]


def test_settings_refuse_what_they_do_not_know() -> None:
    assert ReferenceSettings.model_validate({"latency_ms": 5}).latency_ms == 5
    with pytest.raises(ValueError, match="extra"):
        ReferenceSettings.model_validate({"latency": 5})


async def test_incomplete_credentials_are_a_shop_to_connect_again() -> None:
    adapter = connect(credentials={"shop_id": "s-1"})
    with pytest.raises(AuthExpired, match="connect it again"):
        await adapter.publish(draft())


# -- listings -----------------------------------------------------------------------------------------------


async def test_publishing_creates_an_item_with_one_model_per_sku_and_returns_their_ids() -> None:
    adapter = connect()

    result = await adapter.publish(draft("DIEU-1", "DIEU-2"))

    [item] = adapter.shop.items.values()
    assert result.external_item_id == item.external_item_id
    assert {sku.sku: sku.external_sku_id for sku in item.skus.values()} == result.external_sku_ids
    assert (item.title, item.status) == ("Hạt điều rang muối", "live")
    assert stock(adapter.shop) == {"DIEU-1": 10, "DIEU-2": 10}


async def test_republishing_updates_the_same_item_keeps_model_ids_and_adds_new_skus() -> None:
    adapter = connect()
    item_id, sku_ids = await listed(adapter, "DIEU-1")

    again = await adapter.publish(draft("DIEU-1", "DIEU-2", title="Hạt điều rang củi", external_item_id=item_id))

    assert again.external_item_id == item_id
    assert again.external_sku_ids["DIEU-1"] == sku_ids["DIEU-1"]
    [item] = adapter.shop.items.values()
    assert item.title == "Hạt điều rang củi"
    assert sorted(sku.sku for sku in item.skus.values()) == ["DIEU-1", "DIEU-2"]


async def test_an_image_is_uploaded_once_per_content_hash_however_often_it_is_published() -> None:
    adapter = connect()
    photo, other = image(b"\x01"), image(b"\x02")
    first = await adapter.publish(draft(images=[photo]))
    item_id = first.external_item_id

    # Told the id (no bytes, as the engine sends it), then not told at all: neither uploads again.
    second = await adapter.publish(
        draft(
            images=[image(b"\x01", data=b""), other],
            external_item_id=item_id,
            uploaded_images=first.uploaded_images,
        )
    )
    await adapter.publish(draft(images=[photo, other], external_item_id=item_id))

    assert ops(adapter.shop)["upload_image"] == 2
    assert second.uploaded_images[photo.content_hash] == first.uploaded_images[photo.content_hash]
    assert list(adapter.shop.images) == [photo.content_hash, other.content_hash]
    [item] = adapter.shop.items.values()
    assert item.image_ids == [adapter.shop.images[photo.content_hash], adapter.shop.images[other.content_hash]]


async def test_a_title_over_the_declared_limit_is_refused_in_the_platforms_words() -> None:
    adapter = connect(on=variant_plugin(limits=ListingLimits(title_max=20)))

    with pytest.raises(Rejected, match="between 1 and 20 characters") as refused:
        await adapter.publish(draft(title="Hạt điều rang muối Bình Phước loại A"))

    assert (refused.value.code, refused.value.field) == ("title_length_invalid", "title")
    assert not adapter.shop.items


async def test_a_banned_word_is_refused_with_the_message_the_platform_gave() -> None:
    adapter = connect()
    adapter.shop.reject_titles_containing("hàng cấm", "Tên sản phẩm chứa từ bị cấm.")

    with pytest.raises(Rejected) as refused:
        await adapter.publish(draft(title="Mật ong (HÀNG CẤM)"))

    assert refused.value.message == "Tên sản phẩm chứa từ bị cấm."
    assert [call.outcome for call in adapter.shop.calls] == ["rejected"]


async def test_a_required_field_missing_is_refused_and_names_the_field() -> None:
    adapter = connect(on=variant_plugin(required_fields=frozenset({"category", "attributes.origin"})))

    with pytest.raises(Rejected) as refused:
        await adapter.publish(draft(category="nuts"))
    assert refused.value.field == "attributes.origin"
    await adapter.publish(draft(category="nuts", attributes={"origin": "Bình Phước"}))


async def test_a_negative_stock_or_a_price_below_one_dong_is_refused_on_publish() -> None:
    adapter = connect()
    for bad in (dataclasses.replace(variant("A"), stock=-1), dataclasses.replace(variant("A"), price_vnd=0)):
        with pytest.raises(Rejected):
            await adapter.publish(dataclasses.replace(draft(), variants=[bad]))
    assert not adapter.shop.items


async def test_a_channel_without_variants_takes_one_sku_per_item() -> None:
    adapter = connect(on=variant_plugin(features=frozenset(Feature) - {Feature.variants}))
    with pytest.raises(Rejected, match="1 to 1 models"):
        await adapter.publish(draft("A", "B"))


async def test_an_item_the_platform_does_not_have_is_not_found() -> None:
    adapter = connect()
    with pytest.raises(ChannelNotFound):
        await adapter.publish(draft(external_item_id="999"))
    with pytest.raises(ChannelNotFound):
        await adapter.delist("999")


async def test_delisting_unlists_the_item_and_publishing_brings_it_back() -> None:
    adapter = connect()
    item_id, _ = await listed(adapter, "A")

    await adapter.delist(item_id)
    assert adapter.shop.items[item_id].status == "unlisted"
    await adapter.publish(draft("A", external_item_id=item_id))
    assert adapter.shop.items[item_id].status == "live"


async def test_a_feature_the_channel_does_not_declare_is_refused() -> None:
    adapter = connect(on=variant_plugin(features=frozenset({Feature.variants})))
    item_id, sku_ids = await listed(adapter, "A")
    with pytest.raises(Rejected, match="does not support delist"):
        await adapter.delist(item_id)
    with pytest.raises(Rejected, match="price_update"):
        await adapter.set_prices([PriceUpdate(item_id, sku_ids["A"], "A", 1000)])


# -- stock and prices ---------------------------------------------------------------------------------------


async def test_stock_is_set_to_the_absolute_quantity_so_a_repeated_push_is_harmless() -> None:
    adapter = connect()
    item_id, sku_ids = await listed(adapter, "A")
    update = StockUpdate(item_id, sku_ids["A"], "A", 7)

    assert (await adapter.set_stock([update])).ok
    assert (await adapter.set_stock([update])).ok

    assert stock(adapter.shop) == {"A": 7}


async def test_prices_are_set_to_the_absolute_amount() -> None:
    adapter = connect()
    item_id, sku_ids = await listed(adapter, "A", "B")

    result = await adapter.set_prices(
        [PriceUpdate(item_id, sku_ids["A"], "A", 130_000), PriceUpdate(item_id, sku_ids["B"], "B", 2_000_000_000)]
    )

    [failure] = result.failures
    assert failure.sku == "B"
    assert isinstance(failure.error, Rejected)
    prices = {sku.sku: sku.price_vnd for sku in adapter.shop.items[item_id].skus.values()}
    assert prices == {"A": 130_000, "B": 120_000}


async def test_a_batch_over_the_declared_size_is_refused_whole() -> None:
    adapter = connect(on=variant_plugin(stock_batch=BatchLimit(2)))
    item_id, sku_ids = await listed(adapter, "A", "B", "C")
    updates = [StockUpdate(item_id, sku_ids[sku], sku, 1) for sku in ("A", "B", "C")]

    with pytest.raises(Rejected) as refused:
        await adapter.set_stock(updates)

    assert refused.value.code == "batch_too_large"
    assert set(stock(adapter.shop).values()) == {10}
    assert (await adapter.set_stock(updates[:2])).ok


async def test_a_per_item_batch_that_mixes_items_is_refused() -> None:
    adapter = connect(on=variant_plugin(stock_batch=BatchLimit(50, per_item=True)))
    first, first_skus = await listed(adapter, "A")
    second, second_skus = await listed(adapter, "B")

    with pytest.raises(Rejected) as refused:
        await adapter.set_stock(
            [StockUpdate(first, first_skus["A"], "A", 1), StockUpdate(second, second_skus["B"], "B", 1)]
        )

    assert refused.value.code == "batch_mixes_items"
    with pytest.raises(ChannelNotFound):
        await adapter.set_stock([StockUpdate("999", "1", "A", 1)])


async def test_an_unknown_sku_fails_alone_and_the_rest_of_the_batch_is_applied() -> None:
    adapter = connect()
    item_id, sku_ids = await listed(adapter, "A")

    result = await adapter.set_stock(
        [StockUpdate(item_id, sku_ids["A"], "A", 3), StockUpdate(item_id, "no-such-model", "GONE", 5)]
    )

    [failure] = result.failures
    assert failure.sku == "GONE"
    assert isinstance(failure.error, ChannelNotFound)
    assert stock(adapter.shop) == {"A": 3}
    assert adapter.shop.calls[-1].outcome == "partial"


# -- the front door: rate, faults, latency, in flight ---------------------------------------------------------


async def test_calls_beyond_the_declared_rate_are_refused_with_the_wait_until_the_next_may_go() -> None:
    adapter = connect(on=variant_plugin(rate_limit=RateLimit(calls=10, per_seconds=1.0, burst=2)))
    item_id, sku_ids = await listed(adapter, "A")
    update = StockUpdate(item_id, sku_ids["A"], "A", 1)
    await adapter.set_stock([update])  # the burst of two is spent

    with pytest.raises(RateLimited) as throttled:
        await adapter.set_stock([update])

    wait = throttled.value.retry_after
    assert wait is not None
    assert 0 < wait <= 0.1
    assert adapter.shop.calls[-1].outcome == "rate_limited"
    await asyncio.sleep(wait)
    assert (await adapter.set_stock([update])).ok


async def test_calls_at_the_declared_rate_are_all_served() -> None:
    adapter = connect(on=variant_plugin(rate_limit=RateLimit(calls=50, per_seconds=1.0, burst=1)))
    for _ in range(5):
        await adapter.list_orders(since=datetime.now(UTC) - timedelta(hours=1), until=datetime.now(UTC))
        await asyncio.sleep(0.02)
    assert {call.outcome for call in adapter.shop.calls} == {"ok"}


async def test_injected_faults_are_raised_in_order_for_their_op_only_then_calls_succeed() -> None:
    adapter = connect()
    item_id, sku_ids = await listed(adapter, "A")
    update = StockUpdate(item_id, sku_ids["A"], "A", 4)
    adapter.shop.inject("set_stock", RateLimited("Too many requests", retry_after=0.3))
    adapter.shop.inject("set_stock", lambda: Retryable("HTTP 502", status=502), times=2)

    await adapter.delist(item_id)  # another op: untouched
    with pytest.raises(RateLimited) as throttled:
        await adapter.set_stock([update])
    assert throttled.value.retry_after == 0.3
    for _ in range(2):
        with pytest.raises(Retryable, match="502"):
            await adapter.set_stock([update])

    assert (await adapter.set_stock([update])).ok
    outcomes = [call.outcome for call in adapter.shop.calls if call.op == "set_stock"]
    assert outcomes == ["rate_limited", "retryable", "retryable", "ok"]


async def test_a_fault_injected_for_any_op_hits_the_next_call_whatever_it_is() -> None:
    adapter = connect()
    adapter.shop.inject("*", Retryable("HTTP 503"))
    with pytest.raises(Retryable):
        await adapter.get_orders(["x"])
    await adapter.get_orders(["x"])
    with pytest.raises(ValueError, match="unknown op"):
        adapter.shop.inject("publsh", Retryable("typo"))


async def test_a_failed_image_upload_fails_the_publish_and_changes_no_item() -> None:
    adapter = connect()
    adapter.shop.inject("upload_image", Retryable("upload timed out"))
    with pytest.raises(Retryable):
        await adapter.publish(draft(images=[image(b"\x03")]))
    assert not adapter.shop.items
    assert [(call.op, call.outcome) for call in adapter.shop.calls] == [
        ("upload_image", "retryable"),
        ("publish", "retryable"),
    ]


async def test_every_call_waits_the_latency_its_settings_give() -> None:
    adapter = connect(settings={"latency_ms": 60})
    started = time.monotonic()
    await adapter.get_orders([])
    assert time.monotonic() - started >= 0.06
    [call] = adapter.shop.calls
    assert call.ended - call.started >= 0.06


async def test_calls_held_at_the_gate_are_counted_in_flight_and_the_most_at_once_is_kept() -> None:
    adapter = connect()
    shop = adapter.shop
    shop.gate = asyncio.Event()
    calls = [asyncio.create_task(adapter.get_orders([])) for _ in range(3)]
    await wait_for(lambda: shop.in_flight == 3, what="three calls at the gate")
    assert not any(call.done() for call in calls)

    shop.gate.set()
    await asyncio.gather(*calls)

    assert (shop.in_flight, shop.max_in_flight_seen) == (0, 3)


async def test_a_call_cancelled_while_waiting_frees_its_slot() -> None:
    adapter = connect()
    adapter.shop.gate = asyncio.Event()
    call = asyncio.create_task(adapter.get_orders([]))
    await wait_for(lambda: adapter.shop.in_flight == 1, what="the call at the gate")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert adapter.shop.in_flight == 0
    assert [c.outcome for c in adapter.shop.calls] == ["cancelled"]


# -- authorisation ------------------------------------------------------------------------------------------


async def test_an_expired_token_is_refused_until_refreshed_and_a_refresh_token_works_once() -> None:
    adapter = connect()
    old = dict(adapter.credentials)
    await listed(adapter, "A")
    adapter.shop.expire_token()

    with pytest.raises(AuthExpired):
        await adapter.get_orders([])
    fresh = await adapter.refresh_credentials()

    assert fresh["access_token"] != old["access_token"]
    assert fresh["refresh_token"] != old["refresh_token"]
    assert fresh["shop_id"] == old["shop_id"]
    await adapter.get_orders([])  # the adapter goes on with what it was given
    stale = connect(adapter.shop_id, credentials=old)
    with pytest.raises(AuthExpired):
        await stale.get_orders([])
    with pytest.raises(AuthExpired, match="already used"):
        await stale.refresh_credentials()
    renewed = connect(adapter.shop_id, credentials=fresh)
    await renewed.get_orders([])


async def test_a_token_expired_before_the_first_call_is_refused_and_refreshed() -> None:
    adapter = connect()
    adapter.shop.expire_token()
    with pytest.raises(AuthExpired):
        await adapter.publish(draft())
    await adapter.refresh_credentials()
    await adapter.publish(draft())
    assert [call.op for call in adapter.shop.calls] == ["publish", "refresh", "publish"]


async def test_a_token_the_shop_never_issued_is_refused() -> None:
    adapter = connect()
    await adapter.get_orders([])
    intruder = connect(adapter.shop_id, credentials={**adapter.credentials, "access_token": "forged"})
    with pytest.raises(AuthExpired):
        await intruder.get_orders([])


# -- orders and webhooks ------------------------------------------------------------------------------------


async def test_an_order_takes_the_platforms_stock_and_is_taken_even_beyond_it() -> None:
    adapter = connect()
    await listed(adapter, "A")

    order = adapter.shop.place_order("A", 12)

    assert stock(adapter.shop) == {"A": 0}
    [full] = await adapter.get_orders([order.external_id])
    assert full.status is OrderStatus.ready_to_ship
    assert full.platform_status == "READY_TO_SHIP"
    assert [(line.sku, line.quantity, line.unit_price_vnd) for line in full.lines] == [("A", 12, 120_000)]
    assert full.total_vnd == 12 * 120_000 + full.shipping_fee_vnd
    assert full.lines[0].external_sku_id is not None


async def test_orders_are_listed_two_a_page_by_update_time_within_since_and_until() -> None:
    adapter = connect()
    await listed(adapter, "A")
    start = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
    placed = [adapter.shop.place_order("A", at=start + timedelta(minutes=i)) for i in range(6)]

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await adapter.list_orders(since=start, until=start + timedelta(minutes=5), cursor=cursor)
        pages.append([ref.external_id for ref in page.orders])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    ids = [order.external_id for order in placed]
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]  # since included, until left out
    with pytest.raises(Rejected):
        await adapter.list_orders(since=start, until=start + timedelta(hours=1), cursor="not-a-cursor")


async def test_get_orders_leaves_out_ids_the_platform_does_not_know() -> None:
    adapter = connect()
    await listed(adapter, "A")
    order = adapter.shop.place_order("A")
    found = await adapter.get_orders(["nope", order.external_id])
    assert [o.external_id for o in found] == [order.external_id]


async def test_shipping_and_cancelling_move_the_order_and_refuse_the_wrong_status() -> None:
    adapter = connect()
    await listed(adapter, "A")
    shipped, cancelled, unpaid = (adapter.shop.place_order("A", paid=paid) for paid in (True, True, False))

    await adapter.ship(shipped.external_id, Shipment(tracking_number="VN123"))
    await adapter.cancel(cancelled.external_id, "out of stock")
    await adapter.cancel(unpaid.external_id, "buyer asked")

    statuses = {o.external_id: o.status for o in await adapter.get_orders(list(adapter.shop.orders))}
    assert statuses == {
        shipped.external_id: OrderStatus.shipped,
        cancelled.external_id: OrderStatus.cancelled,
        unpaid.external_id: OrderStatus.cancelled,
    }
    assert adapter.shop.orders[shipped.external_id].tracking_number == "VN123"
    with pytest.raises(Rejected):
        await adapter.ship(cancelled.external_id, Shipment())
    with pytest.raises(Rejected):
        await adapter.cancel(shipped.external_id, "too late")
    with pytest.raises(ChannelNotFound):
        await adapter.ship("nope", Shipment())


async def test_order_statuses_set_by_the_platform_map_to_ours() -> None:
    adapter = connect()
    await listed(adapter, "A")
    order = adapter.shop.place_order("A")
    for word, ours in (("TO_CONFIRM_RECEIVE", OrderStatus.delivered), ("COMPLETED", OrderStatus.completed)):
        adapter.shop.set_order_status(order.external_id, word)
        [found] = await adapter.get_orders([order.external_id])
        assert found.status is ours


async def test_a_signed_push_is_read_and_a_redelivery_keeps_its_event_id() -> None:
    adapter = connect()
    await listed(adapter, "A")
    order = adapter.shop.place_order("A")

    push = adapter.shop.push_payload(order)
    event = adapter.parse_webhook(url="https://x/hooks/reference", headers=push.headers, body=push.body)
    lower = {key.lower(): value for key, value in push.headers.items()}
    again = adapter.parse_webhook(url="https://x", headers=lower, body=adapter.shop.push_payload(order).body)
    adapter.shop.set_order_status(order.external_id, "COMPLETED")
    later = adapter.shop.push_payload(order)

    assert (event.kind, list(event.order_ids)) == (EventKind.order, [order.external_id])
    assert again.external_id == event.external_id
    assert adapter.parse_webhook(url="", headers=later.headers, body=later.body).external_id != event.external_id


async def test_a_push_with_a_bad_or_missing_signature_or_an_unreadable_body_is_refused() -> None:
    adapter = connect()
    await listed(adapter, "A")
    push = adapter.shop.push_payload(adapter.shop.place_order("A"))

    with pytest.raises(InvalidSignature):
        adapter.parse_webhook(url="", headers=push.headers, body=push.body.replace(b"READY", b"TAMPERED"))
    with pytest.raises(InvalidSignature):
        adapter.parse_webhook(url="", headers={}, body=push.body)
    with pytest.raises(InvalidSignature):
        adapter.parse_webhook(url="", headers={SIGNATURE_HEADER: "0" * 64}, body=push.body)
    other = connect(credentials={**adapter.credentials, "webhook_secret": "another"})
    with pytest.raises(InvalidSignature):
        other.parse_webhook(url="", headers=push.headers, body=push.body)
    from agrimarket.channels.reference.market import signature

    garbage = b"{not json"
    with pytest.raises(MalformedEvent):
        adapter.parse_webhook(
            url="", headers={SIGNATURE_HEADER: signature("reference-webhook-secret", garbage)}, body=garbage
        )


# -- a marketplace several processes share ------------------------------------------------------------------


async def test_a_file_backed_shop_is_one_marketplace_for_every_adapter_that_names_the_file(tmp_path: Path) -> None:
    store = tmp_path / "market.json"
    first = connect("shop-shared", settings={"store": str(store)})
    item_id, sku_ids = await listed(first, "A")
    ReferenceMarket.reset()  # nothing left in this process: only the file remembers

    second = connect("shop-shared", settings={"store": str(store)})
    assert (await second.set_stock([StockUpdate(item_id, sku_ids["A"], "A", 2)])).ok
    order = second.shop.place_order("A", at=datetime(2025, 6, 1, 8, 0, tzinfo=UTC))
    second.shop.expire_token()

    assert stock(ReferenceMarket.shop("shop-shared", store=store)) == {"A": 1}
    assert not ReferenceMarket.shop("shop-shared").items, "the in-memory shop of that name is another shop"
    saved = json.loads(store.read_text())
    assert saved["shop-shared"]["token_expired"] is True
    with pytest.raises(AuthExpired):
        await first.get_orders([])
    await first.refresh_credentials()
    page = await first.list_orders(since=order.created_at, until=order.created_at + timedelta(seconds=1))
    assert [ref.external_id for ref in page.orders] == [order.external_id]


CALL_AND_HANG = """
import asyncio, sys
from agrimarket.channels.base import ConnectionInfo
from agrimarket.channels.reference import plugin
import uuid

async def main() -> None:
    info = ConnectionInfo(uuid.uuid4(), uuid.uuid4(), "shop-k", {"shop_id": "shop-k", "access_token": "at-1",
        "refresh_token": "rt-1"}, {"store": sys.argv[1], "latency_ms": 60000})
    await plugin.adapter(info, None).get_orders([])

asyncio.run(main())
"""


@pytest.mark.slow
def test_a_call_from_a_killed_process_is_no_longer_in_flight(tmp_path: Path) -> None:
    store = tmp_path / "market.json"
    shop = ReferenceMarket.shop("shop-k", store=store)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    victim = subprocess.Popen([sys.executable, "-c", CALL_AND_HANG, str(store)], env=env)  # noqa: S603
    try:
        deadline = time.monotonic() + 30
        while shop.in_flight == 0:
            assert victim.poll() is None, "the process died before calling"
            assert time.monotonic() < deadline, "the call never reached the shop"
            time.sleep(0.02)
        assert shop.in_flight == 1
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()

    assert shop.in_flight == 0
    assert shop.max_in_flight_seen == 1
