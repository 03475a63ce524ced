"""The local fake of the Stripe API, through stripe-python pointed at it: Stripe's shapes and error envelope,
zero-decimal VND, idempotency-key replay, and events signed the documented way."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import stripe

from agrimarket.channels.errors import AuthExpired, ChannelNotFound, Rejected, Retryable
from agrimarket.payments.gateway import StripeConfig, StripeGateway
from agrimarket.sandbox.stripe import StripeFake, parse_params, sign

KEY = "sk_test_fake_only"
BASE = "http://stripe.test"


@pytest.fixture
def fake() -> StripeFake:
    return StripeFake(api_key=KEY, public_base=BASE, delivery="manual")


@pytest.fixture
async def gateway(fake: StripeFake) -> AsyncIterator[StripeGateway]:
    async with httpx.AsyncClient(mounts={BASE: httpx.ASGITransport(app=fake.app)}) as http:
        yield StripeGateway(StripeConfig(api_key=KEY, api_base=BASE), http)


def session_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {"currency": "vnd", "unit_amount": 150_000, "product_data": {"name": "Hạt điều"}},
                "quantity": 2,
            }
        ],
        "success_url": "http://shop.test/done?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://shop.test/back",
        "expires_at": int(time.time()) + 31 * 60,
        "client_reference_id": "chk_1",
        "metadata": {"checkout_id": "chk_1"},
    }
    params.update(overrides)
    return params


def test_the_documented_signature_vector() -> None:
    header = sign(b'{"id":"evt_test","object":"event"}', "whsec_test", 1700000000)
    assert header == "t=1700000000,v1=c25fec335f20601dcb662f0e7c4944646158a9324bb6ed8b7f6ab126449f507a"


def test_bracket_parameters_become_objects_and_lists() -> None:
    parsed = parse_params(
        [
            ("line_items[0][price_data][unit_amount]", "150000"),
            ("line_items[0][quantity]", "2"),
            ("line_items[1][quantity]", "1"),
            ("metadata[checkout_id]", "x"),
            ("expand[0]", "line_items"),
        ]
    )
    assert parsed == {
        "line_items": [{"price_data": {"unit_amount": "150000"}, "quantity": "2"}, {"quantity": "1"}],
        "metadata": {"checkout_id": "x"},
        "expand": ["line_items"],
    }


async def test_a_session_in_vnd_is_in_whole_dong_and_reads_back(gateway: StripeGateway, fake: StripeFake) -> None:
    created = await gateway.create_session(session_params(), idempotency_key="k-1")
    assert created["object"] == "checkout.session"
    assert (created["currency"], created["amount_total"], created["status"]) == ("vnd", 300_000, "open")
    assert created["url"] == f"{BASE}/pay/{created['id']}"
    read = await gateway.session(created["id"])
    assert read["client_reference_id"] == "chk_1"
    [item] = fake.line_items[created["id"]]
    assert (item["price"]["unit_amount"], item["quantity"], item["amount_total"]) == (150_000, 2, 300_000)


async def test_the_same_idempotency_key_replays_and_other_parameters_are_refused(
    gateway: StripeGateway, fake: StripeFake
) -> None:
    params = session_params()
    first = await gateway.create_session(params, idempotency_key="k-2")
    again = await gateway.create_session(params, idempotency_key="k-2")
    assert again["id"] == first["id"]
    assert len(fake.sessions) == 1
    with pytest.raises(Rejected) as refused:
        await gateway.create_session(session_params(client_reference_id="other"), idempotency_key="k-2")
    assert "same parameters" in refused.value.message
    assert [key for method, _path, key in fake.requests if method == "POST"] == ["k-2", "k-2", "k-2"]


async def test_errors_come_in_stripes_envelope_and_map_to_channel_errors(
    gateway: StripeGateway, fake: StripeFake
) -> None:
    with pytest.raises(ChannelNotFound):
        await gateway.session("cs_test_nothing")
    with pytest.raises(Rejected) as refused:
        await gateway.create_session(session_params(expires_at=int(time.time()) + 60), idempotency_key="k-3")
    assert refused.value.field == "expires_at"
    assert fake.sessions == {}  # a refused request saves nothing
    fake.faults["POST /v1/checkout/sessions"] = 1
    with pytest.raises(Retryable):
        await gateway.create_session(session_params(), idempotency_key="k-4")
    async with httpx.AsyncClient(mounts={BASE: httpx.ASGITransport(app=fake.app)}) as http:
        wrong = StripeGateway(StripeConfig(api_key="sk_test_wrong", api_base=BASE), http)
        with pytest.raises(AuthExpired):
            await wrong.session("cs_test_x")
        raw = await http.get(f"{BASE}/v1/checkout/sessions/cs_test_x", headers={"Authorization": f"Bearer {KEY}"})
    assert raw.status_code == 404
    assert raw.json()["error"]["type"] == "invalid_request_error"
    assert raw.json()["error"]["code"] == "resource_missing"


async def test_paying_emits_a_signed_completion_that_stripe_python_verifies(
    gateway: StripeGateway, fake: StripeFake
) -> None:
    endpoint = fake.add_endpoint("http://shop.test/webhooks/stripe", events=("checkout.session.completed",))
    created = await gateway.create_session(session_params(), idempotency_key="k-5")
    await fake.pay(created["id"])
    [outgoing] = fake.outbox
    sent: list[httpx.Request] = []

    async def receive(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    fake.http = httpx.AsyncClient(transport=httpx.MockTransport(receive))
    assert await fake.deliver(outgoing) == 200
    [request] = sent
    event = stripe.Webhook.construct_event(request.content, request.headers["Stripe-Signature"], endpoint.secret)
    assert event.type == "checkout.session.completed"
    assert event.data.object["payment_status"] == "paid"
    assert event.data.object["payment_intent"].startswith("pi_")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(request.content + b" ", request.headers["Stripe-Signature"], endpoint.secret)
    await fake.http.aclose()


async def test_expiry_and_refunds(gateway: StripeGateway, fake: StripeFake) -> None:
    open_one = await gateway.create_session(session_params(), idempotency_key="k-6")
    expired = await gateway.expire_session(open_one["id"], idempotency_key="x-6")
    assert expired is not None
    assert expired["status"] == "expired"
    assert await gateway.expire_session(open_one["id"], idempotency_key="x-6b") is None  # not open any more

    paid = await gateway.create_session(session_params(), idempotency_key="k-7")
    await fake.pay(paid["id"])
    intent = (await gateway.session(paid["id"]))["payment_intent"]
    refund = await gateway.refund(intent, idempotency_key="r-7", metadata={"why": "test"})
    assert refund.amount_vnd == 300_000
    assert (await gateway.refund(intent, idempotency_key="r-7", metadata={"why": "test"})).refund_id == refund.refund_id
    assert await gateway.refunded_vnd(intent) == 300_000
    with pytest.raises(Rejected):
        await gateway.refund(intent, idempotency_key="r-8", metadata={})
    assert [s["id"] for s in await gateway.sessions_of_payment(intent)] == [paid["id"]]

    lapsing = await gateway.create_session(session_params(), idempotency_key="k-9")
    await fake.advance(32 * 60)
    assert (await gateway.session(lapsing["id"]))["status"] == "expired"
    assert [e["type"] for e in fake.events.values()].count("checkout.session.expired") == 2
