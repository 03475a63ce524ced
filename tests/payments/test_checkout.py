"""A checkout from the storefront page to the order: stock held before the Stripe Checkout Session is made (in VND,
whole dong, an idempotency key on every call), carried over to the order when Stripe says it is paid, released when
it expires or is abandoned; Stripe's webhook verified over the raw body, kept once, and handled whatever the order
of events."""

from __future__ import annotations

import json
import time
import uuid

from sqlalchemy import func, select

from agrimarket.db import transaction
from agrimarket.models import CheckoutState, HoldState, InboundEvent, OrderStatus, StockMovement
from agrimarket.payments.events import HANDLE_KIND, StripeEvents
from agrimarket.payments.holds import EXPIRE_KIND
from agrimarket.sandbox.stripe import sign
from tests.payments.conftest import PRICE, SLUG, WEBHOOK_SECRET, World


async def _references(world: World) -> list[str]:
    async with transaction(world.db) as session:
        rows = await session.execute(
            select(StockMovement.reference)
            .where(StockMovement.variant_id == world.variant_id, StockMovement.reference.is_not(None))
            .order_by(StockMovement.created_at)
        )
        return [str(ref).split(":")[0] + ":" + str(ref).split(":")[-1] for ref in rows.scalars()]


async def _inbox(world: World) -> list[InboundEvent]:
    async with transaction(world.db) as session:
        rows = await session.execute(select(InboundEvent).where(InboundEvent.source == "stripe"))
        return list(rows.scalars())


async def test_checkout_holds_stock_then_opens_a_vnd_session_with_an_idempotency_key(world: World) -> None:
    marketplace_before = await world.listing_version(world.marketplace.id)
    response = await world.buy(2)
    assert response.status_code == 303
    checkout = await world.checkout()
    assert response.headers["location"] == checkout.session_url
    assert (checkout.state, checkout.hold, checkout.total_vnd) == (CheckoutState.open, HoldState.held, 2 * PRICE)
    level = await world.level()
    assert (level.on_hand, level.reserved) == (3, 2)
    # The hold reaches every marketplace: the reference shop's listing is dirty, to be told 1.
    assert await world.listing_version(world.marketplace.id) > marketplace_before

    session = world.fake.sessions[await world.session_id()]
    assert (session["currency"], session["amount_total"], session["mode"]) == ("vnd", 300_000, "payment")
    [item] = world.fake.line_items[session["id"]]
    assert (item["price"]["unit_amount"], item["quantity"]) == (150_000, 2)  # zero-decimal: never × 100
    assert session["client_reference_id"] == str(checkout.id)
    assert session["metadata"]["checkout_id"] == str(checkout.id)
    assert session["metadata"]["organization_id"] == world.account.organization_id
    assert 30 * 60 < session["expires_at"] - time.time() <= 32 * 60
    assert session["locale"] == "vi"
    [(method, path, key)] = world.fake.requests
    assert (method, path, key) == ("POST", "/v1/checkout/sessions", f"agrimarket-checkout-{checkout.id}")


async def test_not_enough_stock_is_said_on_the_page_and_nothing_is_held_or_created(world: World) -> None:
    response = await world.buy(4)
    assert response.status_code == 409
    assert "Không đủ hàng" in response.text
    assert "chỉ còn 3" in response.text
    assert world.fake.sessions == {}
    level = await world.level()
    assert level.reserved == 0
    async with transaction(world.db) as session:
        from agrimarket.models import StorefrontCheckout

        assert (await session.execute(select(func.count()).select_from(StorefrontCheckout))).scalar_one() == 0
    empty = await world.buy(0)
    assert empty.status_code == 409
    assert "Hãy chọn số lượng" in empty.text


async def test_stripe_down_releases_the_hold_at_once(world: World) -> None:
    world.fake.faults["POST /v1/checkout/sessions"] = 1
    response = await world.buy(1)
    assert response.status_code == 503
    assert "thử lại sau" in response.text
    checkout = await world.checkout()
    assert (checkout.state, checkout.hold) == (CheckoutState.failed, HoldState.released)
    assert (await world.level()).reserved == 0


async def test_a_paid_session_becomes_an_order_with_the_hold_carried_over(world: World) -> None:
    await world.buy(2)
    await world.fake.pay(await world.session_id(), name="Lê Thị Hoa")
    await world.deliver()
    order = await world.order()
    assert order is not None
    assert (order.status, order.total_vnd, order.oversold, order.buyer_name) == (
        OrderStatus.paid,
        300_000,
        False,
        "Lê Thị Hoa",
    )
    assert order.external_id == await world.session_id()
    checkout = await world.checkout()
    assert (checkout.state, checkout.hold) == (CheckoutState.complete, HoldState.converted)
    level = await world.level()
    assert (level.on_hand, level.reserved) == (3, 2)  # held once, never twice, never free in between
    assert await _references(world) == ["checkout:hold", "checkout:release", "order:reserve"]
    # The storefront is a channel like any other: its order is listed with the marketplaces'.
    listed = await world.client.get(
        f"/api/v1/organizations/{world.account.organization_id}/orders", headers=world.account.headers
    )
    [row] = listed.json()["items"]
    assert (row["channel"], row["status"]) == ("storefront", "paid")
    done = await world.client.get(f"/shop/{SLUG}/done", params={"session_id": await world.session_id()})
    assert "Cảm ơn bạn" in done.text


async def test_duplicate_events_are_kept_once_and_change_stock_once(world: World) -> None:
    await world.buy(1)
    await world.fake.pay(await world.session_id())
    outgoing = list(world.fake.outbox)
    for _ in range(3):
        for one in outgoing:
            assert await world.fake.deliver(one) == 200
    world.fake.outbox.clear()
    assert len(await _inbox(world)) == len(outgoing)
    await world.handle()
    await world.handle()
    level = await world.level()
    assert (level.on_hand, level.reserved) == (3, 1)
    assert await _references(world) == ["checkout:hold", "checkout:release", "order:reserve"]
    assert all(event.handled_at is not None for event in await _inbox(world))


async def test_events_out_of_order_end_in_what_stripe_says_now(world: World) -> None:
    await world.buy(1)
    session_id = await world.session_id()
    await world.fake.pay(session_id)
    completed = world.fake.take("checkout.session.completed")
    # The farmer refunds at once (in Stripe's dashboard): the refund's events overtake the completion's.
    intent = world.fake.sessions[session_id]["payment_intent"]
    refunded = await world.http.post(
        "http://stripe.test/v1/refunds",
        data={"payment_intent": intent},
        headers={"Authorization": f"Bearer {world.settings.stripe_secret_key.get_secret_value()}"},  # type: ignore[union-attr]
    )
    assert refunded.status_code == 200
    await world.deliver()  # payment_intent.succeeded, refund.created, charge.refunded
    for one in completed:
        await world.fake.deliver(one)
    await world.handle()
    order = await world.order()
    assert order is not None
    assert order.status is OrderStatus.cancelled
    level = await world.level()
    assert (level.on_hand, level.reserved) == (3, 0)
    # A late expiry of the same session (never sent by Stripe, but a replay could be) changes nothing.
    event = {
        "id": "evt_late",
        "object": "event",
        "type": "checkout.session.expired",
        "data": {"object": {**world.fake.sessions[session_id], "status": "expired"}},
    }
    body = json.dumps(event).encode()
    late = await world.client.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET, int(time.time()))}
    )
    assert late.status_code == 200
    await world.handle()
    assert (await world.order()).status is OrderStatus.cancelled  # type: ignore[union-attr]
    assert (await world.level()).reserved == 0


async def test_expiry_releases_the_hold(world: World) -> None:
    await world.buy(2)
    assert (await world.level()).reserved == 2
    await world.fake.advance(32 * 60)
    await world.deliver()
    checkout = await world.checkout()
    assert (checkout.state, checkout.hold, checkout.order_id) == (CheckoutState.expired, HoldState.released, None)
    assert (await world.level()).reserved == 0
    assert await _references(world) == ["checkout:hold", "checkout:release"]


async def test_going_back_from_stripe_abandons_the_checkout(world: World) -> None:
    await world.buy(1)
    checkout = await world.checkout()
    back = await world.client.get(f"/shop/{SLUG}/back", params={"checkout": str(checkout.id)})
    assert back.status_code == 200
    assert "Chưa thanh toán" in back.text
    [job] = await world.jobs(EXPIRE_KIND)
    await StripeEvents(world.db, world.settings, world.http).expire(uuid.UUID(job.payload["checkout_id"]))
    assert world.fake.sessions[await world.session_id()]["status"] == "expired"
    assert (await world.level()).reserved == 0
    await world.deliver()  # Stripe's own expiry event afterwards: nothing more to do
    assert (await world.checkout()).state is CheckoutState.expired
    another_shop = await world.client.get(f"/shop/{SLUG}/back", params={"checkout": str(uuid.uuid4())})
    assert another_shop.status_code == 404


async def test_a_lost_expiry_event_is_caught_by_the_sweep(world: World) -> None:
    await world.buy(1)
    await world.fake.advance(40 * 60)
    world.fake.outbox.clear()  # Stripe's expiry event never arrives
    async with transaction(world.db) as session:
        from agrimarket.models import StorefrontCheckout

        checkout = (await session.execute(select(StorefrontCheckout))).scalar_one()
        checkout.expires_at = checkout.expires_at.replace(year=2020)
    assert await StripeEvents(world.db, world.settings, world.http).sweep() == 1
    assert (await world.checkout()).state is CheckoutState.expired
    assert (await world.level()).reserved == 0


async def test_the_webhook_is_verified_over_the_raw_body(world: World) -> None:
    body = json.dumps(
        {
            "id": "evt_1",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {"object": {"id": "cs_test_x", "object": "checkout.session"}},
        }
    ).encode()
    now = int(time.time())
    missing = await world.client.post("/webhooks/stripe", content=body)
    assert missing.status_code == 400
    forged = await world.client.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, "whsec_someone_else", now)}
    )
    assert forged.status_code == 401
    stale = await world.client.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET, now - 301)}
    )
    assert stale.status_code == 401
    altered = await world.client.post(
        "/webhooks/stripe",
        content=body.replace(b"cs_test_x", b"cs_test_y"),
        headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET, now)},
    )
    assert altered.status_code == 401
    assert await _inbox(world) == []
    good = await world.client.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET, now)}
    )
    assert good.status_code == 200
    assert len(await world.jobs(HANDLE_KIND)) == 1
    [event] = await _inbox(world)
    assert (event.external_id, event.event_type, event.order_ids) == (
        "evt_1",
        "checkout.session.completed",
        ["cs_test_x"],
    )
    await world.handle()  # a session that is none of ours: handled, said so
    [event] = await _inbox(world)
    assert event.handled_at is not None
    assert event.last_error is not None

    world.app.state.settings = world.settings.model_copy(update={"stripe_webhook_secret": None})
    unset = await world.client.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET, now)}
    )
    assert unset.status_code == 404


async def test_cancelling_a_paid_storefront_order_refunds_it_through_stripe(world: World) -> None:
    await world.buy(2)
    session_id = await world.session_id()
    await world.fake.pay(session_id)
    await world.deliver()
    order = await world.order()
    assert order is not None
    cancelled = await world.client.post(
        f"/api/v1/orders/{order.id}/cancel", json={"reason": "Khách đổi ý"}, headers=world.account.headers
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    [refund] = world.fake.refunds.values()
    assert (refund["amount"], refund["payment_intent"]) == (300_000, world.fake.sessions[session_id]["payment_intent"])
    refund_keys = [key for method, path, key in world.fake.requests if path == "/v1/refunds" and method == "POST"]
    assert refund_keys == [f"agrimarket-refund-{session_id}"]
    assert (await world.level()).reserved == 0
    await world.deliver()  # Stripe's charge.refunded: the order is cancelled already
    assert (await world.order()).status is OrderStatus.cancelled  # type: ignore[union-attr]
    level = await world.level()
    assert (level.on_hand, level.reserved) == (3, 0)
    assert len(world.fake.refunds) == 1


async def test_a_shipped_storefront_order_refunded_in_full_comes_back_on_hand(world: World) -> None:
    await world.buy(1)
    session_id = await world.session_id()
    await world.fake.pay(session_id)
    await world.deliver()
    order = await world.order()
    assert order is not None
    shipped = await world.client.post(
        f"/api/v1/orders/{order.id}/ship", json={"tracking_number": "GHN123"}, headers=world.account.headers
    )
    assert shipped.status_code == 200, shipped.text
    assert (await world.level()).on_hand == 2
    intent = world.fake.sessions[session_id]["payment_intent"]
    await world.http.post(
        "http://stripe.test/v1/refunds",
        data={"payment_intent": intent},
        headers={"Authorization": f"Bearer {world.settings.stripe_secret_key.get_secret_value()}"},  # type: ignore[union-attr]
    )
    await world.deliver()
    assert (await world.order()).status is OrderStatus.returned  # type: ignore[union-attr]
    assert (await world.level()).on_hand == 3
