"""The Tiki sandbox's own promises: reviews over sandbox time (and by themselves after ``review_seconds``), Tiki-style
refusals, mounting under a prefix, the shop page's buy button, snapshot and restore."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from agrimarket.channels.base import PublishState
from agrimarket.sandbox.core import SandboxConfig
from agrimarket.sandbox.tiki import REVIEW_STEPS, TikiSandbox
from tests.channels.support import FakeClock
from tests.channels.tiki.conftest import SETTINGS, connect, draft, variant


async def test_a_request_walks_the_review_steps_and_approves_itself_after_review_seconds(clock: FakeClock) -> None:
    sandbox = TikiSandbox(SandboxConfig(rate_calls=1000, burst=1000), clock=clock, review_seconds=60, step_seconds=10)
    shop = sandbox.add_shop("Vườn xoài Cát Chu")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(sandbox.app), base_url=SETTINGS["api_url"]) as http:
        first = await connect(shop, http, clock).publish(draft())
        track = first.external_item_id[1:]
        seen = []
        for _ in range(5):
            seen.append(sandbox.request_state(track))
            clock.advance(10)
        assert seen == list(REVIEW_STEPS)
        clock.advance(10)
        assert sandbox.request_state(track) == "approved"
        live = await connect(shop, http, clock).publish(draft(external_item_id=first.external_item_id))
    assert live.state is PublishState.live


async def test_mounted_under_a_prefix_it_builds_its_own_urls_and_the_page_sells_to_a_buyer(
    sandbox: TikiSandbox, shop: dict[str, Any], clock: FakeClock
) -> None:
    outer = Starlette(routes=[Mount("/sandbox/tiki", app=sandbox.app)])
    base = "http://agrimarket.test/sandbox/tiki"
    settings = {**SETTINGS, "api_url": base, "auth_url": f"{base}/sc/oauth2"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(outer), base_url=base) as http:
        adapter = connect(shop, http, clock)
        adapter.settings = adapter.settings.model_validate(settings)
        first = await adapter.publish(draft(variant("XOAI-1", "Hộp 1 kg", 70_000, 4)))
        assert next(iter(first.uploaded_images.values())).startswith(f"{base}/images/")
        sandbox.approve(first.external_item_id[1:])
        await adapter.publish(draft(variant("XOAI-1", "Hộp 1 kg", 70_000, 4), external_item_id=first.external_item_id))

        page = await http.get(f"/sandbox/shops/{shop['seller_id']}")
        assert page.status_code == 200
        assert f'action="{base}/sandbox/shops/{shop["seller_id"]}/orders"' in page.text
        assert "Product requests" in page.text
        bought = await http.post(f"/sandbox/shops/{shop['seller_id']}/orders", data={"seller_sku": "XOAI-1"})
        assert bought.status_code == 303

    [order] = sandbox.market.shops[shop["seller_id"]].orders.values()
    assert (order.status, order.lines[0].quantity) == ("queueing", 1)
    assert sandbox.market.shops[shop["seller_id"]].by_seller_sku("XOAI-1") is not None


async def test_refusals_come_in_tikis_shapes(
    sandbox: TikiSandbox, shop: dict[str, Any], http: httpx.AsyncClient
) -> None:
    bearer = {"Authorization": f"Bearer {shop['access_token']}"}
    missing = await http.get("/integration/v2/orders/424242", headers=bearer)
    bad = await http.post("/integration/v2.1/requests", json={"name": "Xoài"}, headers=bearer)
    app_only = await http.get("/integration/v1/queues", headers=bearer)

    assert (missing.status_code, missing.json()["code"]) == (404, "ORDER_NOT_FOUND")
    assert bad.status_code == 400
    assert bad.json()["errors"] == [bad.json()["message"]]
    assert (app_only.status_code, app_only.json()["code"]) == (403, "PERMISSION_DENIED")


async def test_snapshot_and_restore_keep_shops_requests_products_and_queues(
    sandbox: TikiSandbox, shop: dict[str, Any], http: httpx.AsyncClient, clock: FakeClock
) -> None:
    adapter = connect(shop, http, clock)
    first = await adapter.publish(draft())
    await adapter.pull_events(10)
    waiting = await adapter.publish(draft(variant("BUOI-9", "Thùng")))  # a second request, still in review
    sandbox.approve(first.external_item_id[1:])
    await adapter.publish(draft(external_item_id=first.external_item_id))

    again = TikiSandbox(clock=clock)
    again.restore(sandbox.snapshot())

    assert again.credentials(shop["seller_id"])["access_token"] == shop["access_token"]
    assert again.request_state(first.external_item_id[1:]) == "approved"
    assert again.request_state(waiting.external_item_id[1:]) == sandbox.request_state(waiting.external_item_id[1:])
    assert [s.seller_sku for i in again.market.shops[shop["seller_id"]].items.values() for s in i.skus.values()] == [
        "BUOI-1"
    ]
    assert len(again.state.queues) == 1
    assert len(again.state.subscriptions) == 2
