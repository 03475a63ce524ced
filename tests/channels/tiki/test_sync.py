"""Products published to Tiki through the sync engine (no ``Feature.variants``: each variant is a Tiki product of
its own), when Tiki approves at once and when a person reviews first, with or without a call that fails just after
the product request went out (the demo's throttled shop): every listing ends live with its Tiki product ids, each
product is requested once, a stock change is a stock update, and a run with nothing to do makes no call."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.channels.base import PublishState
from agrimarket.channels.errors import RateLimited, Retryable
from agrimarket.channels.tiki import TikiAdapter
from agrimarket.config import Settings
from agrimarket.models import ListingStatus
from agrimarket.sandbox.core import Fault
from agrimarket.sandbox.tiki import TikiSandbox
from agrimarket.sync.engine import RunReport
from agrimarket.worker import RetryLater
from tests.channels.tiki.conftest import draft, variant
from tests.channels.tiki.pipeline import TikiShop, open_tiki_shop
from tests.media import images
from tests.orders.support import sku_of
from tests.worker.conftest import db, engine_b, worker_settings  # noqa: F401

Db = async_sessionmaker[AsyncSession]
CREATE = "POST /integration/v2.1/requests"
TRACKING = "GET /integration/v2/tracking/{track_id}"
REQUEST = "GET /integration/v2/requests/{request_id}"
UPDATE_SKU = "PUT /integration/v2/products/updateSku"
UPDATE_SKUS = "PUT /integration/v2.1/products/updateSkus"
REVIEW_CHECK = 300.0


@pytest.fixture
def tiki_settings(worker_settings: Settings) -> Settings:  # noqa: F811
    return worker_settings.model_copy(
        update={"sync_coalesce_seconds": 0.0, "sync_review_check_seconds": REVIEW_CHECK, "sync_circuit_threshold": 10}
    )


@pytest.fixture(params=[0.0, None], ids=["approved-at-once", "reviewed"])
async def tiki(
    request: pytest.FixtureRequest,
    db: Db,  # noqa: F811
    tiki_settings: Settings,
) -> AsyncIterator[TikiShop]:
    shop = await open_tiki_shop(db, tiki_settings, review_seconds=request.param)
    # A second product with one variant, next to the pipeline's product with two.
    single = await shop.farm.product("Tiêu đen Chư Sê hũ 250 g", variants=1, stock=6, price=85_000)
    await shop.farm.photo(tiki_settings, single, images.jpeg(images.photo((1400, 1400))))
    await shop.farm.list_product(shop.connection, single)
    yield shop
    await shop.aclose()


async def run(tiki: TikiShop, *, attempts: int = 4) -> RunReport:
    """One engine run, and the runs the worker would make after it when it ends in RetryLater."""
    for _ in range(attempts - 1):
        try:
            return await tiki.sync()
        except RetryLater:
            continue
    return await tiki.sync()


async def settle(tiki: TikiShop) -> None:
    """Run until every listing is out of review: a person approves what Tiki is still reviewing."""
    await run(tiki)
    if tiki.sandbox.review_seconds is None:
        assert {row.status for row in await tiki.listings()} == {ListingStatus.pending}
        for found in list(tiki.sandbox.state.requests.values()):
            tiki.sandbox.approve(found.request_id)
        tiki.clock.advance(REVIEW_CHECK)  # the scheduled look
        await run(tiki)


@pytest.mark.parametrize(
    "fault",
    [
        None,
        (TRACKING, Fault.throttle),  # the look just after the request
        (REQUEST, Fault.server_error),  # the approved request's products
        (UPDATE_SKUS, Fault.server_error),  # putting the approved products on sale
        (UPDATE_SKU, Fault.server_error),
    ],
    ids=["clean", "tracking-throttled", "request-failed", "activation-failed", "one-activation-failed"],
)
async def test_every_product_is_requested_once_goes_live_and_then_gets_stock_updates(
    tiki: TikiShop, fault: tuple[str, Fault] | None
) -> None:
    if fault is not None:
        tiki.sandbox.market.inject(*fault)

    await settle(tiki)

    rows = await tiki.listings()
    assert len(rows) == 3
    assert {row.status for row in rows} == {ListingStatus.live}, [(r.status, r.channel_message) for r in rows]
    assert {row.channel_message for row in rows} == {None}
    shop = tiki.sandbox.market.shops[tiki.seller_id]
    product_of = {sku.seller_sku: item for item in shop.items.values() for sku in item.skus.values()}
    assert len(product_of) == 3
    for row in rows:
        assert row.external_sku_id == str(product_of[await sku_of(tiki.db, row.variant_id)].item_id)
        assert (row.external_item_id or "").startswith("r")  # the request, decided
    assert {item.status for item in shop.items.values()} == {"active"}
    # One request per product, none refused ("already exists"), whatever failed on the way.
    assert len(tiki.sandbox.market.calls_of(CREATE, outcome=None)) == 2
    assert len(tiki.sandbox.state.requests) == 2

    # A stock change is one stock update of that Tiki product: no publish, no new request.
    single = next(p for p, variants in tiki.farm.products.items() if len(variants) == 1)
    [variant] = tiki.farm.products[single]
    await tiki.farm.set_stock(variant, 2)
    report = await tiki.sync()
    assert report.calls == {"set_stock": 1}
    [row] = [r for r in await tiki.listings() if r.variant_id == variant]
    assert row.status is ListingStatus.live
    assert product_of[await sku_of(tiki.db, variant)].skus[int(row.external_sku_id or 0)].stock == 2
    assert len(tiki.sandbox.market.calls_of(CREATE, outcome=None)) == 2

    # Nothing left to do: a run (even after the review check's period) asks Tiki nothing.
    calls = len(tiki.sandbox.market.calls)
    tiki.clock.advance(REVIEW_CHECK)
    report = await tiki.sync()
    assert report.calls == {}
    assert len(tiki.sandbox.market.calls) == calls


async def test_a_publish_failing_after_its_request_went_out_names_the_request_and_the_next_one_carries_on(
    adapter: TikiAdapter, sandbox: TikiSandbox
) -> None:
    sandbox.review_seconds = 0
    two = draft(variant("BUOI-1", "1 quả"), variant("BUOI-2", "Cặp 2 quả"))
    sandbox.market.inject(TRACKING, Fault.throttle)

    with pytest.raises(RateLimited) as throttled:
        await adapter.publish(two)
    [sent] = sandbox.state.requests.values()
    assert throttled.value.external_item_id == f"t{sent.track_id}"

    sandbox.market.inject(UPDATE_SKUS, Fault.server_error)
    with pytest.raises(Retryable) as failed:
        await adapter.publish(dataclasses.replace(two, external_item_id=throttled.value.external_item_id))
    # It looked at the request already sent and sent none: nothing new for the engine to keep.
    assert failed.value.external_item_id is None
    assert len(sandbox.state.requests) == 1

    result = await adapter.publish(dataclasses.replace(two, external_item_id=throttled.value.external_item_id))
    assert result.state is PublishState.live
    assert result.external_item_id == f"r{sent.request_id}"
    assert sorted(result.external_sku_ids.values()) == sorted(str(i) for i in sent.product_ids)
    assert len(sandbox.market.calls_of(CREATE, outcome=None)) == 1
