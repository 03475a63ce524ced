"""A Tiki listing through the sync engine while Tiki reviews it: pending with the review state in plain words, looked
at again only every ``sync_review_check_seconds``, live with the Tiki product ids once approved, rejected with
Tiki's reason (and no more calls) when rejected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.config import Settings
from agrimarket.models import ListingStatus
from agrimarket.sync.queue import SYNC_KIND, review_check_key
from tests.channels.tiki.pipeline import TikiShop, open_tiki_shop
from tests.worker.conftest import db, engine_b, worker_settings  # noqa: F401

TRACKING = "GET /integration/v2/tracking/{track_id}"
CREATE = "POST /integration/v2.1/requests"


@pytest.fixture
def tiki_settings(worker_settings: Settings) -> Settings:  # noqa: F811
    return worker_settings.model_copy(update={"sync_coalesce_seconds": 0.0, "sync_review_check_seconds": 300.0})


@pytest.fixture
async def tiki(db: async_sessionmaker[AsyncSession], tiki_settings: Settings) -> AsyncIterator[TikiShop]:  # noqa: F811
    shop = await open_tiki_shop(db, tiki_settings)
    yield shop
    await shop.aclose()


def track_of(shop: TikiShop, item_id: str | None) -> str:
    assert item_id is not None
    assert item_id.startswith("t")
    return item_id[1:]


async def test_a_listing_waits_pending_in_plain_words_is_looked_at_on_schedule_and_goes_live_once_approved(
    tiki: TikiShop,
) -> None:
    await tiki.sync()

    rows = await tiki.listings()
    assert {row.status for row in rows} == {ListingStatus.pending}
    assert {row.external_sku_id for row in rows} == {None}
    assert all("Waiting for Tiki's review" in (row.channel_message or "") for row in rows)
    [check] = await tiki.queued(SYNC_KIND, review_check_key(tiki.connection.id))
    assert abs((check.run_at.replace(tzinfo=None) - tiki.now().replace(tzinfo=None)) - timedelta(seconds=300)) < (
        timedelta(seconds=1)
    )
    track = track_of(tiki, rows[0].external_item_id)

    # Runs for other reasons soon after do not ask Tiki again: no spam while it reviews.
    tiki.clock.advance(60)
    await tiki.sync()
    assert (tiki.calls(TRACKING), tiki.calls(CREATE)) == (1, 1)

    tiki.clock.advance(300)  # the scheduled look: the automatic steps are over, a person reviews it now
    await tiki.sync()
    rows = await tiki.listings()
    assert tiki.calls(TRACKING) == 2
    assert {row.status for row in rows} == {ListingStatus.pending}
    assert all("content team is reviewing" in (row.channel_message or "") for row in rows)
    assert all("(awaiting_approve)" in (row.channel_message or "") for row in rows)

    product_ids = tiki.sandbox.approve(track)
    tiki.clock.advance(300)
    await tiki.sync()

    rows = await tiki.listings()
    assert {row.status for row in rows} == {ListingStatus.live}
    assert {row.external_sku_id for row in rows} == {str(i) for i in product_ids}
    assert {row.channel_message for row in rows} == {None}
    assert all(not row.pushed_state or not row.pushed_state.get("in_review") for row in rows)
    shop = tiki.sandbox.market.shops[tiki.seller_id]
    assert {(item.status, sku.stock) for item in shop.items.values() for sku in item.skus.values()} == {("active", 8)}

    # From now on a stock change is one updateSku, and reviews are not asked about any more.
    await tiki.farm.set_stock(tiki.farm.products[tiki.product_id][0], 5)
    tiki.clock.advance(600)
    await tiki.sync()
    assert tiki.calls("PUT /integration/v2/products/updateSku") == 1
    assert tiki.calls(TRACKING) == 3
    assert tiki.calls(CREATE) == 1


async def test_a_rejected_request_shows_tikis_reason_and_is_not_retried_until_something_changes(
    tiki: TikiShop,
) -> None:
    await tiki.sync()
    track = track_of(tiki, (await tiki.listings())[0].external_item_id)
    tiki.sandbox.reject(track, "Ảnh sản phẩm bị mờ")

    tiki.clock.advance(300)
    await tiki.sync()
    rows = await tiki.listings()
    assert {row.status for row in rows} == {ListingStatus.rejected}
    assert all("Ảnh sản phẩm bị mờ" in (row.channel_message or "") for row in rows)
    assert {row.external_item_id for row in rows} == {None}  # a rejected request is final: the next one is new

    calls = len(tiki.sandbox.market.calls)
    for _ in range(3):
        tiki.clock.advance(300)
        await tiki.sync()
    assert len(tiki.sandbox.market.calls) == calls

    await tiki.farm.update_product(tiki.product_id, name="Bưởi Phúc Trạch loại đặc biệt")
    await tiki.sync()
    assert tiki.calls(CREATE) == 2
    assert {row.status for row in await tiki.listings()} == {ListingStatus.pending}
