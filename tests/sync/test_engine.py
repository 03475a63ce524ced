"""The sync engine against the reference market: what goes out, how often, and what is recorded."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid
from collections import Counter

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.catalog.repository import CatalogRepository
from agrimarket.catalog.schemas import VariantIn
from agrimarket.catalog.service import CatalogService
from agrimarket.channels.base import BatchLimit, ListingLimits, RateLimit
from agrimarket.channels.errors import AuthExpired, RateLimited, Retryable
from agrimarket.channels.reference import ReferenceMarket, ReferencePlugin
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService
from agrimarket.kit.crypto import CredentialCipher
from agrimarket.models import ConnectionStatus, Job, Listing, ListingStatus, Rendition, utcnow
from agrimarket.sync.engine import chunks
from agrimarket.sync.repository import SyncRepository
from agrimarket.worker import RetryLater
from tests.media import images
from tests.sync.support import (
    Farm,
    connection_row,
    dirty,
    listings,
    make_engine,
    queued_syncs,
    registry_of,
    run,
)
from tests.worker.conftest import wait_for

Db = async_sessionmaker[AsyncSession]


def plugin_with(**changes: object) -> ReferencePlugin:
    base = ReferencePlugin()
    return ReferencePlugin(capabilities=dataclasses.replace(base.capabilities, **changes))  # type: ignore[arg-type]


def ops(shop_id: str) -> Counter[str]:
    return Counter(call.op for call in ReferenceMarket.shop(shop_id).calls)


def stock_on_channel(shop_id: str) -> dict[str, int]:
    return {sku.sku: sku.stock for item in ReferenceMarket.shop(shop_id).items.values() for sku in item.skus.values()}


def price_on_channel(shop_id: str) -> dict[str, int]:
    return {
        sku.sku: sku.price_vnd for item in ReferenceMarket.shop(shop_id).items.values() for sku in item.skus.values()
    }


async def test_publishing_creates_the_item_with_every_variant_at_the_rules_price_and_stock(
    db: Db, sync_settings: Settings
) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=3, stock=40, price=100_000)
    connection = await farm.connect(sync_settings)
    rules = {"price_rule": {"markup_percent": 8}, "stock_rule": {"share_percent": 50, "buffer": 2}}
    await farm.list_product(connection, product, overrides=rules)

    report = await run(make_engine(db, sync_settings, registry_of(ReferencePlugin())), connection)

    shop = connection.external_shop_id
    assert shop is not None
    assert report.outcome == "done"
    assert ops(shop)["publish"] == 1
    [item] = ReferenceMarket.shop(shop).items.values()
    assert item.title == "Hạt điều rang muối"
    # 100.000 × 1.08 = 108.000; 200.000 × 1.08 = 216.000; 300.000 × 1.08 = 324.000. Stock: 40 × 50 % − 2 = 18.
    assert sorted(price_on_channel(shop).values()) == [108_000, 216_000, 324_000]
    assert set(stock_on_channel(shop).values()) == {18}
    rows = await listings(db, connection.id)
    assert len(rows) == 3
    assert not dirty(rows)
    assert {r.status for r in rows} == {ListingStatus.live}
    assert all(r.external_item_id and r.external_sku_id for r in rows)
    assert {r.pushed_state["stock"] for r in rows if r.pushed_state} == {18}


async def test_ten_quick_stock_changes_go_out_as_one_push_of_the_last_quantity(db: Db, sync_settings: Settings) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=1, stock=10)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    engine = make_engine(db, sync_settings, registry_of(ReferencePlugin()))
    await run(engine, connection)
    [variant] = farm.products[product]
    for quantity in range(11, 21):
        await farm.set_stock(variant, quantity)
    assert len(await queued_syncs(db, connection.id)) == 1  # ten changes, one queued job

    report = await run(engine, connection)

    shop = connection.external_shop_id
    assert shop is not None
    assert report.calls == Counter({"set_stock": 1})
    assert list(stock_on_channel(shop).values()) == [20]
    assert not dirty(await listings(db, connection.id))


async def test_changes_that_end_where_they_started_cost_no_call(db: Db, sync_settings: Settings) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=1, stock=10)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    engine = make_engine(db, sync_settings, registry_of(ReferencePlugin()))
    await run(engine, connection)
    [variant] = farm.products[product]
    await farm.set_stock(variant, 3)
    await farm.set_stock(variant, 10)

    report = await run(engine, connection)

    assert sum(report.calls.values()) == 0
    assert not dirty(await listings(db, connection.id))


async def test_a_change_made_during_the_push_is_pushed_again(db: Db, sync_settings: Settings) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=1, stock=10)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    engine = make_engine(db, sync_settings, registry_of(ReferencePlugin()))
    await run(engine, connection)
    shop_id = connection.external_shop_id
    assert shop_id is not None
    shop = ReferenceMarket.shop(shop_id)
    [variant] = farm.products[product]
    await farm.set_stock(variant, 7)
    shop.gate = asyncio.Event()
    pushing = asyncio.create_task(run(engine, connection))
    await wait_for(lambda: shop.in_flight > 0, what="the push to reach the marketplace")
    await farm.set_stock(variant, 5)  # committed while 7 is on its way
    shop.gate.set()
    shop.gate = None
    report = await pushing

    # The version read before the push was recorded by compare-and-set; the bump made meanwhile left the row
    # dirty, and the run's next pass sent 5.
    assert report.calls == Counter({"set_stock": 2})
    assert report.passes == 2
    assert list(stock_on_channel(shop_id).values()) == [5]
    [row] = await listings(db, connection.id)
    assert row.pushed_state is not None
    assert row.pushed_state["stock"] == 5
    assert not dirty([row])


async def test_recording_a_push_never_claims_a_version_bumped_meanwhile(db: Db, sync_settings: Settings) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=1)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    [row] = await listings(db, connection.id)
    await farm.set_stock(farm.products[product][0], 3)  # desired 1 → 2 while "version 1" was being pushed

    async def record(stock: int) -> bool:
        async with transaction(db) as session:
            return await SyncRepository(session).record(
                row.id,
                1,
                done=True,
                pushed_state={"stock": stock},
                status=ListingStatus.live,
                channel_message=None,
                external_item_id=row.external_item_id,
                external_sku_id=row.external_sku_id,
                pushed_at=utcnow(),
            )

    written = await record(10)
    [after] = await listings(db, connection.id)
    assert written
    assert (after.desired_version, after.pushed_version) == (2, 1)
    assert after.pushed_state == {"stock": 10}
    assert after.status is ListingStatus.live
    assert not await record(99), "a second record of the same version (a run that lost its lease) changes nothing"
    [unchanged] = await listings(db, connection.id)
    assert unchanged.pushed_state == {"stock": 10}


async def test_stock_goes_out_in_batches_of_the_channels_declared_maximum(db: Db, sync_settings: Settings) -> None:
    farm = await Farm.make(db)
    products = [await farm.product(f"Tiêu đen {i}", variants=40, stock=5) for i in range(3)]
    plugin = plugin_with(limits=ListingLimits(variants_max=50))
    connection = await farm.connect(sync_settings)
    for product in products:
        await farm.list_product(connection, product)
    engine = make_engine(db, sync_settings, registry_of(plugin))
    await run(engine, connection)
    for product in products:
        for variant in farm.products[product]:
            await farm.set_stock(variant, 9)

    report = await run(engine, connection)

    assert report.calls == Counter({"set_stock": 3})  # 120 SKUs, 50 per call: the minimum, 3
    shop_id = connection.external_shop_id
    assert shop_id is not None
    assert [call.size for call in ReferenceMarket.shop(shop_id).calls if call.op == "set_stock"] == [50, 50, 20]
    assert set(stock_on_channel(shop_id).values()) == {9}


async def test_a_part_filled_batch_waits_for_the_next_page_of_products_so_calls_stay_at_the_minimum(
    db: Db, sync_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agrimarket.sync.engine.PAGE", 2)  # plan two products per pass
    farm = await Farm.make(db)
    products = [await farm.product(f"Mật ong {i}", variants=1, stock=5) for i in range(6)]
    plugin = plugin_with(stock_batch=BatchLimit(4))
    connection = await farm.connect(sync_settings)
    for product in products:
        await farm.list_product(connection, product)
    engine = make_engine(db, sync_settings, registry_of(plugin))
    await run(engine, connection)
    for product in products:
        [variant] = farm.products[product]
        await farm.set_stock(variant, 8)

    report = await run(engine, connection)

    # Six SKUs at four a call: two calls, not one part-filled call per page of two products.
    assert report.calls == Counter({"set_stock": 2})
    assert report.passes >= 3
    shop_id = connection.external_shop_id
    assert shop_id is not None
    assert sorted(call.size for call in ReferenceMarket.shop(shop_id).calls if call.op == "set_stock") == [2, 4]
    assert set(stock_on_channel(shop_id).values()) == {8}
    assert not dirty(await listings(db, connection.id))


def test_per_item_batches_never_mix_items_and_stay_within_the_limit() -> None:
    updates = [(item, n) for item in ("A", "B") for n in range(7)]
    batches = list(chunks(updates, BatchLimit(3, per_item=True), lambda u: u[0]))
    assert [len(b) for b in batches] == [3, 3, 1, 3, 3, 1]
    assert all(len({item for item, _ in batch}) == 1 for batch in batches)
    mixed = list(chunks(updates, BatchLimit(5), lambda u: u[0]))
    assert [len(b) for b in mixed] == [5, 5, 4]


async def test_calls_to_a_shop_keep_to_its_rate_limit(db: Db, sync_settings: Settings) -> None:
    farm = await Farm.make(db)
    products = [await farm.product(f"Cà phê {i}", variants=1) for i in range(6)]
    plugin = plugin_with(rate_limit=RateLimit(calls=10, per_seconds=1.0, burst=1))
    connection = await farm.connect(sync_settings)
    for product in products:
        await farm.list_product(connection, product)

    report = await run(make_engine(db, sync_settings, registry_of(plugin)), connection)

    shop_id = connection.external_shop_id
    assert shop_id is not None
    starts = sorted(call.started for call in ReferenceMarket.shop(shop_id).calls)
    assert len(starts) == 6
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.09, gaps  # 10 per second: 100 ms apart (a little clock slack)
    assert report.waited_seconds >= 0.4
    assert "rate_limited" not in {call.outcome for call in ReferenceMarket.shop(shop_id).calls}


async def test_throttling_ends_the_run_with_the_platforms_retry_after_and_the_next_run_finishes(
    db: Db, sync_settings: Settings
) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=1)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    engine = make_engine(db, sync_settings, registry_of(ReferencePlugin()))
    shop_id = connection.external_shop_id
    assert shop_id is not None
    ReferenceMarket.shop(shop_id).inject("publish", RateLimited("Too many requests", retry_after=0.4))

    with pytest.raises(RetryLater) as raised:
        await run(engine, connection)

    assert raised.value.retry_after == pytest.approx(0.4)
    stored = await connection_row(db, connection.id)
    assert stored.sync_lease_owner is None
    assert stored.rate_next_at is not None  # the wait holds for whichever worker calls next
    assert stored.circuit_failures == 0  # throttling is not a fault
    assert dirty(await listings(db, connection.id))
    report = await run(engine, connection)
    assert report.outcome == "done"
    assert report.waited_seconds > 0.2
    assert not dirty(await listings(db, connection.id))


async def test_repeated_faults_open_the_shops_circuit_and_it_closes_after_a_good_run(
    db: Db, sync_settings: Settings
) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=1)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    engine = make_engine(db, sync_settings, registry_of(ReferencePlugin()))
    shop_id = connection.external_shop_id
    assert shop_id is not None
    ReferenceMarket.shop(shop_id).inject("publish", Retryable("HTTP 503 from the marketplace", status=503), times=3)

    for _ in range(3):
        with pytest.raises(RetryLater):
            await run(engine, connection)

    stored = await connection_row(db, connection.id)
    assert stored.circuit_failures == 3
    assert stored.circuit_open_until is not None
    assert "503" in (stored.last_error or "")
    calls_before = len(ReferenceMarket.shop(shop_id).calls)
    async with transaction(db) as session:  # the job list_product queued; this test runs the engine by hand
        await session.execute(delete(Job))
    report = await run(engine, connection)
    assert report.outcome == "circuit_open"
    assert len(ReferenceMarket.shop(shop_id).calls) == calls_before  # left alone while open
    [waiting] = await queued_syncs(db, connection.id)
    assert waiting.run_at >= stored.circuit_open_until.replace(microsecond=0)

    await asyncio.sleep(sync_settings.sync_circuit_cooldown_seconds)
    report = await run(engine, connection)
    assert report.outcome == "done"
    stored = await connection_row(db, connection.id)
    assert (stored.circuit_failures, stored.circuit_open_until, stored.last_error) == (0, None, None)


async def test_a_rejected_listing_shows_the_platforms_message_and_is_not_retried_until_it_changes(
    db: Db, sync_settings: Settings
) -> None:
    farm = await Farm.make(db)
    product = await farm.product("Mật ong hoa cà phê (hàng cấm)", variants=2)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    engine = make_engine(db, sync_settings, registry_of(ReferencePlugin()))
    shop_id = connection.external_shop_id
    assert shop_id is not None
    ReferenceMarket.shop(shop_id).reject_titles_containing("hàng cấm", "Tên sản phẩm chứa từ bị cấm.")

    report = await run(engine, connection)

    assert report.outcome == "done"
    rows = await listings(db, connection.id)
    assert {r.status for r in rows} == {ListingStatus.rejected}
    assert {r.channel_message for r in rows} == {"Tên sản phẩm chứa từ bị cấm."}
    assert not dirty(rows), "a refusal is recorded; retrying the same data cannot help"
    assert await run(engine, connection) is not None
    assert ops(shop_id)["publish"] == 1

    await farm.update_product(product, name="Mật ong hoa cà phê")
    await run(engine, connection)
    rows = await listings(db, connection.id)
    assert {r.status for r in rows} == {ListingStatus.live}
    assert {r.channel_message for r in rows} == {None}


async def test_a_listing_outside_the_channels_limits_is_marked_error_and_nothing_is_sent(
    db: Db, sync_settings: Settings
) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=1)
    plugin = plugin_with(required_fields=frozenset({"category"}))
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)

    await run(make_engine(db, sync_settings, registry_of(plugin)), connection)

    shop_id = connection.external_shop_id
    assert shop_id is not None
    assert not ReferenceMarket.shop(shop_id).calls
    [row] = await listings(db, connection.id)
    assert row.status is ListingStatus.error
    assert row.channel_message
    assert "category" in row.channel_message.lower()


async def test_an_expired_token_is_refreshed_once_stored_encrypted_and_the_call_retried(
    db: Db, sync_settings: Settings
) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=1)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    engine = make_engine(db, sync_settings, registry_of(ReferencePlugin()))
    shop_id = connection.external_shop_id
    assert shop_id is not None
    ReferenceMarket.shop(shop_id).expire_token()

    report = await run(engine, connection)

    assert report.outcome == "done"
    assert report.calls["refresh"] == 1
    assert report.calls["publish"] == 2  # refused once with the old token, then made with the new one
    stored = await connection_row(db, connection.id)
    assert stored.credentials_version == 2
    assert stored.credentials_encrypted is not None
    credentials = CredentialCipher(sync_settings.encryption_keys).decrypt_json(stored.credentials_encrypted)
    assert credentials["access_token"] != "at-1"
    assert b"access_token" not in stored.credentials_encrypted
    assert not dirty(await listings(db, connection.id))


async def test_a_shop_whose_refresh_fails_is_marked_for_a_new_authorisation(db: Db, sync_settings: Settings) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=1)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    shop_id = connection.external_shop_id
    assert shop_id is not None
    ReferenceMarket.shop(shop_id).expire_token()
    ReferenceMarket.shop(shop_id).inject("refresh", AuthExpired("refresh_token_expired"))

    report = await run(make_engine(db, sync_settings, registry_of(ReferencePlugin())), connection)

    assert report.outcome == "auth_expired"
    stored = await connection_row(db, connection.id)
    assert stored.status is ConnectionStatus.auth_expired
    assert stored.last_error
    assert "connect it again" in stored.last_error
    assert dirty(await listings(db, connection.id)), "nothing is lost: it goes out once the shop is reconnected"


async def test_pause_offers_zero_and_resume_offers_the_stock_again(db: Db, sync_settings: Settings) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=2, stock=12)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    engine = make_engine(db, sync_settings, registry_of(ReferencePlugin()))
    await run(engine, connection)
    shop_id = connection.external_shop_id
    assert shop_id is not None

    await _set_status(db, connection.id, ListingStatus.paused)
    await run(engine, connection)
    assert set(stock_on_channel(shop_id).values()) == {0}
    assert {r.status for r in await listings(db, connection.id)} == {ListingStatus.paused}

    await _set_status(db, connection.id, ListingStatus.pending)
    await run(engine, connection)
    assert set(stock_on_channel(shop_id).values()) == {12}
    assert {r.status for r in await listings(db, connection.id)} == {ListingStatus.live}


async def test_delisting_takes_the_item_off_the_channel_once(db: Db, sync_settings: Settings) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=2)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    engine = make_engine(db, sync_settings, registry_of(ReferencePlugin()))
    await run(engine, connection)
    shop_id = connection.external_shop_id
    assert shop_id is not None

    await _set_status(db, connection.id, ListingStatus.delisted)
    await run(engine, connection)
    await farm.set_stock(farm.products[product][0], 3)  # a delisted listing is not pushed any more
    await run(engine, connection)

    assert ops(shop_id)["delist"] == 1
    assert {item.status for item in ReferenceMarket.shop(shop_id).items.values()} == {"unlisted"}
    rows = await listings(db, connection.id)
    assert {r.status for r in rows} == {ListingStatus.delisted}
    assert not dirty(rows)


async def test_a_variant_added_to_a_listed_product_joins_its_listing(db: Db, sync_settings: Settings) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=1)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    engine = make_engine(db, sync_settings, registry_of(ReferencePlugin()))
    await run(engine, connection)
    await _add_variant(farm, product)

    await run(engine, connection)

    shop_id = connection.external_shop_id
    assert shop_id is not None
    rows = await listings(db, connection.id)
    assert len(rows) == 2
    assert not dirty(rows)
    [item] = ReferenceMarket.shop(shop_id).items.values()
    assert len(item.skus) == 2
    assert ops(shop_id)["publish"] == 2


async def test_a_price_change_goes_out_as_a_price_update_not_a_republish(db: Db, sync_settings: Settings) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=2, price=50_000)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product, overrides={"price_rule": {"markup_percent": 10}})
    engine = make_engine(db, sync_settings, registry_of(ReferencePlugin()))
    await run(engine, connection)

    await farm.update_variant(farm.products[product][0], price_vnd=61_000)
    report = await run(engine, connection)

    assert report.calls == Counter({"set_prices": 1})
    shop_id = connection.external_shop_id
    assert shop_id is not None
    assert 68_000 in price_on_channel(shop_id).values()  # 61.000 × 1.1 = 67.100, rounded up to 68.000


async def test_a_busy_shop_is_left_to_the_worker_holding_it(db: Db, sync_settings: Settings) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=1)
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    shop_id = connection.external_shop_id
    assert shop_id is not None
    shop = ReferenceMarket.shop(shop_id)
    shop.gate = asyncio.Event()
    first = make_engine(db, sync_settings, registry_of(ReferencePlugin()), owner="first")
    second = make_engine(db, sync_settings, registry_of(ReferencePlugin()), owner="second")
    holding = asyncio.create_task(run(first, connection))
    await wait_for(lambda: shop.in_flight > 0, what="the first worker's push to reach the marketplace")

    report = await run(second, connection)

    assert report.outcome == "busy"
    assert sum(report.calls.values()) == 0
    shop.gate.set()
    assert (await holding).outcome == "done"


async def _set_status(db: Db, connection_id: uuid.UUID, status: ListingStatus) -> None:
    """What the listings API does on pause, resume and delist."""
    async with transaction(db) as session:
        await session.execute(
            update(Listing)
            .where(Listing.connection_id == connection_id)
            .values(status=status, desired_version=Listing.desired_version + 1)
        )


async def _add_variant(farm: Farm, product_id: uuid.UUID) -> None:
    async with transaction(farm.db) as session:
        catalog = CatalogService(CatalogRepository(session), InventoryService(InventoryRepository(session)))
        view = await catalog.add_variant(
            farm.access,
            product_id,
            VariantIn.model_validate(
                {
                    "sku": "DIEU-THUNG-5KG",
                    "name": "Thùng 5 kg",
                    "unit": "thung",
                    "price_vnd": 900_000,
                    "weight_grams": 5_000,
                    "initial_stock": 4,
                }
            ),
            actor_user_id=None,
        )
    farm.products[product_id].append(view.variant.id)


async def test_photos_go_out_as_the_channels_rendition_and_are_uploaded_once(db: Db, sync_settings: Settings) -> None:
    farm = await Farm.make(db)
    product = await farm.product(variants=1)
    await farm.photo(sync_settings, product, images.jpeg(images.photo((1600, 1200)), metadata=False))
    plugin = plugin_with(image_rule="lazada.main")
    connection = await farm.connect(sync_settings)
    await farm.list_product(connection, product)
    engine = make_engine(db, sync_settings, registry_of(plugin))

    await run(engine, connection)
    await farm.update_product(product, name="Hạt điều rang củi Bình Phước")
    await run(engine, connection)

    shop_id = connection.external_shop_id
    assert shop_id is not None
    shop = ReferenceMarket.shop(shop_id)
    async with transaction(db) as session:
        [rendition] = (
            (await session.execute(select(Rendition).where(Rendition.purpose == "lazada.main"))).scalars().all()
        )
    assert list(shop.images) == [rendition.content_hash]  # the channel's rendition, not the photo as stored
    assert ops(shop_id)["upload_image"] == 1, "the second publish refers to the image already on the channel"
    assert ops(shop_id)["publish"] == 2
    [item] = shop.items.values()
    assert item.title == "Hạt điều rang củi Bình Phước"
    assert len(item.image_ids) == 1
