"""The storefront is a channel like any other: its sales take stock off every marketplace, and a marketplace's sale of
the last unit while a buyer is at Stripe's card form wins that unit. The buyer who pays in the moment before their
session is expired gets an order flagged oversold, refunded or kept as ``storefront_oversold_policy`` says."""

from __future__ import annotations

import uuid

import pytest

from agrimarket.config import OversoldPolicy
from agrimarket.models import CheckoutState, HoldState, OrderStatus
from agrimarket.payments.events import StripeEvents
from agrimarket.payments.holds import EXPIRE_KIND
from tests.payments.conftest import SLUG, World


@pytest.fixture
def stock() -> int:
    return 1


async def _last_unit_sold_elsewhere_while_paying(world: World) -> str:
    await world.buy(1)
    session_id = await world.session_id()
    assert (await world.level()).available == 0
    marketplace_order = await world.marketplace_sale(1)
    # The marketplace's order is placed already: it takes the unit from the open checkout, and is not oversold.
    assert not marketplace_order.oversold
    checkout = await world.checkout()
    assert checkout.hold is HoldState.preempted
    level = await world.level()
    assert (level.on_hand, level.reserved) == (1, 1)
    [expire] = await world.jobs(EXPIRE_KIND)
    assert expire.payload == {"checkout_id": str(checkout.id)}
    # …but the buyer pays before that job expires the session.
    await world.fake.pay(session_id)
    await world.deliver()
    return session_id


@pytest.mark.parametrize("policy", [OversoldPolicy.refund])
async def test_refund_policy_refunds_the_oversold_storefront_order(world: World) -> None:
    session_id = await _last_unit_sold_elsewhere_while_paying(world)
    order = await world.order()
    assert order is not None
    assert order.oversold
    assert order.status is OrderStatus.cancelled
    [refund] = world.fake.refunds.values()
    assert refund["amount"] == 150_000
    assert (await world.checkout()).refund_id == refund["id"]
    level = await world.level()
    assert (level.on_hand, level.reserved) == (1, 1)  # the marketplace's unit, still held for it
    done = await world.client.get(f"/shop/{SLUG}/done", params={"session_id": session_id})
    assert "hoàn tiền toàn bộ" in done.text
    # The expire job runs late: the session is complete, so Stripe refuses, and nothing changes.
    [expire] = await world.jobs(EXPIRE_KIND)
    await StripeEvents(world.db, world.settings, world.http).expire(uuid.UUID(expire.payload["checkout_id"]))
    await world.deliver()  # and Stripe's refund events
    assert len(world.fake.refunds) == 1
    assert (await world.level()).reserved == 1


@pytest.mark.parametrize("policy", [OversoldPolicy.keep])
async def test_keep_policy_keeps_the_order_flagged_oversold(world: World) -> None:
    await _last_unit_sold_elsewhere_while_paying(world)
    order = await world.order()
    assert order is not None
    assert (order.status, order.oversold) == (OrderStatus.paid, True)
    assert world.fake.refunds == {}
    level = await world.level()
    assert (level.on_hand, level.reserved) == (1, 1)  # never below zero: the shortfall is on the order
    flagged = await world.client.get(
        f"/api/v1/organizations/{world.account.organization_id}/orders",
        params={"oversold": "true"},
        headers=world.account.headers,
    )
    assert [row["channel"] for row in flagged.json()["items"]] == ["storefront"]


async def test_a_checkout_whose_session_is_expired_in_time_never_becomes_an_order(world: World) -> None:
    await world.buy(1)
    await world.marketplace_sale(1)
    [expire] = await world.jobs(EXPIRE_KIND)
    await StripeEvents(world.db, world.settings, world.http).expire(uuid.UUID(expire.payload["checkout_id"]))
    checkout = await world.checkout()
    assert (checkout.state, checkout.order_id) == (CheckoutState.expired, None)
    level = await world.level()
    assert (level.on_hand, level.reserved) == (1, 1)
    html = (await world.client.get(f"/shop/{SLUG}")).text
    assert "Hết hàng" in html


async def test_a_storefront_sale_takes_the_stock_off_every_marketplace(world: World) -> None:
    before = await world.listing_version(world.marketplace.id)
    await world.buy(1)
    held = await world.listing_version(world.marketplace.id)
    assert held > before  # the hold: the marketplace is told one fewer at once
    await world.fake.pay(await world.session_id())
    await world.deliver()
    order = await world.order()
    assert order is not None
    assert order.status is OrderStatus.paid
    shipped = await world.client.post(
        f"/api/v1/orders/{order.id}/ship", json={"tracking_number": "VNPOST-1"}, headers=world.account.headers
    )
    assert shipped.status_code == 200
    level = await world.level()
    assert (level.on_hand, level.reserved) == (0, 0)
    # The marketplace's listing stays dirty until the sync engine pushes 0 to it.
    assert await world.listing_version(world.marketplace.id) >= held
    # And a marketplace order now finds nothing: it is the oversold one, the storefront's sale stands.
    late = await world.marketplace_sale(1)
    assert late.oversold
