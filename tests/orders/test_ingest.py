"""Ingest: an order from any shop is recorded once, its status only moves forward, and each stock effect of a
move happens exactly once, whatever the order or repetition of what the marketplace tells us."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update

from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.models import ChannelConnection, MovementKind, Order, OrderLine, OrderStatus
from tests.orders.support import (
    Db,
    at_status,
    channel_order,
    ingest,
    ledger_matches,
    level,
    movements,
    order_and_lines,
    sku_of,
)
from tests.sync.support import Farm, dirty, listings, queued_syncs


async def _farm(db: Db, settings: Settings, *, stock: int = 10) -> tuple[Farm, ChannelConnection, uuid.UUID, str]:
    farm = await Farm.make(db)
    product = await farm.product("Sầu riêng Ri6", variants=1, stock=stock)
    connection = await farm.connect(settings)
    variant = farm.products[product][0]
    return farm, connection, variant, await sku_of(db, variant)


async def test_a_new_paid_order_is_recorded_with_its_lines_and_reserves_its_stock(
    db: Db, worker_settings: Settings
) -> None:
    _, connection, variant, sku = await _farm(db, worker_settings)
    placed = channel_order([(sku, 3)])

    result = await ingest(db, connection, placed)

    assert result.created
    assert result.status is OrderStatus.paid
    order, [line] = await order_and_lines(db, connection.id, placed.external_id)
    assert (order.total_vnd, order.oversold, order.buyer_name) == (300_000, False, "Nguyễn Thị Lan")
    assert (line.variant_id, line.quantity, line.reserved_quantity, line.oversold_quantity) == (variant, 3, 3, 0)
    stock = await level(db, variant)
    assert (stock.on_hand, stock.reserved, stock.available) == (10, 3, 7)
    [held] = await movements(db, variant)
    assert held.kind is MovementKind.reserve
    assert held.reference == f"order:{order.id}:{line.id}:reserve"


async def test_the_platforms_raw_order_is_kept_with_what_json_has_no_type_for_as_its_text(
    db: Db, worker_settings: Settings
) -> None:
    _, connection, _variant, sku = await _farm(db, worker_settings)
    shipped_by = uuid.UUID("5b0f7a52-7c1e-4a57-9a43-1f6f1d2b8e11")
    placed = dataclasses.replace(
        channel_order([(sku, 1)]),
        raw={"order_sn": "SO1", "paid_at": datetime(2026, 12, 3, 8, 0, tzinfo=UTC), "carrier": shipped_by, "n": 2},
    )

    await ingest(db, connection, placed)

    order, _lines = await order_and_lines(db, connection.id, placed.external_id)
    assert order.raw == {"order_sn": "SO1", "paid_at": "2026-12-03 08:00:00+00:00", "carrier": str(shipped_by), "n": 2}


async def test_an_unpaid_order_reserves_too_because_the_platform_holds_the_unit_for_the_buyer(
    db: Db, worker_settings: Settings
) -> None:
    _, connection, variant, sku = await _farm(db, worker_settings)

    await ingest(db, connection, channel_order([(sku, 2)], status=OrderStatus.unpaid))

    assert (await level(db, variant)).reserved == 2


async def test_the_same_order_twice_reserves_once(db: Db, worker_settings: Settings) -> None:
    _, connection, variant, sku = await _farm(db, worker_settings)
    placed = channel_order([(sku, 4)])

    await ingest(db, connection, placed)
    again = await ingest(db, connection, placed)

    assert not again.created
    assert not again.effects
    assert (await level(db, variant)).reserved == 4
    async with transaction(db) as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 1
        assert await session.scalar(select(func.count()).select_from(OrderLine)) == 1


async def test_two_ingests_of_the_same_order_at_once_record_it_and_reserve_once(
    db: Db, worker_settings: Settings
) -> None:
    _, connection, variant, sku = await _farm(db, worker_settings)
    placed = channel_order([(sku, 4)])

    first, second = await asyncio.gather(ingest(db, connection, placed), ingest(db, connection, placed))

    assert {first.created, second.created} == {True, False}
    assert (await level(db, variant)).reserved == 4
    assert len(await movements(db, variant)) == 1


async def test_a_late_paid_or_unpaid_after_shipped_changes_nothing_and_the_sale_is_committed_once(
    db: Db, worker_settings: Settings
) -> None:
    _, connection, variant, sku = await _farm(db, worker_settings)
    placed = channel_order([(sku, 2)])

    await ingest(db, connection, at_status(placed, OrderStatus.shipped, minutes=10))
    late_paid = await ingest(db, connection, at_status(placed, OrderStatus.paid, minutes=1))
    late_unpaid = await ingest(db, connection, at_status(placed, OrderStatus.unpaid, minutes=0))
    await ingest(db, connection, at_status(placed, OrderStatus.shipped, minutes=10))

    assert late_paid.status is OrderStatus.shipped
    assert not late_paid.effects
    assert late_unpaid.status is OrderStatus.shipped
    assert not late_unpaid.effects
    stock = await level(db, variant)
    assert (stock.on_hand, stock.reserved) == (8, 0)
    assert [m.kind for m in await movements(db, variant)] == [MovementKind.sale]
    assert await ledger_matches(db, variant)


async def test_paid_then_shipped_moves_the_reservation_out_of_stock(db: Db, worker_settings: Settings) -> None:
    _, connection, variant, sku = await _farm(db, worker_settings)
    placed = channel_order([(sku, 2)])

    await ingest(db, connection, placed)
    await ingest(db, connection, at_status(placed, OrderStatus.ready_to_ship, minutes=2))
    await ingest(db, connection, at_status(placed, OrderStatus.shipped, minutes=5))
    await ingest(db, connection, at_status(placed, OrderStatus.completed, minutes=9))

    stock = await level(db, variant)
    assert (stock.on_hand, stock.reserved, stock.available) == (8, 0, 8)
    assert [m.kind for m in await movements(db, variant)] == [MovementKind.reserve, MovementKind.sale]
    _order, [line] = await order_and_lines(db, connection.id, placed.external_id)
    assert (line.reserved_quantity, line.oversold_quantity) == (0, 0)


async def test_a_cancelled_order_releases_its_hold_once_and_stays_cancelled(db: Db, worker_settings: Settings) -> None:
    _, connection, variant, sku = await _farm(db, worker_settings)
    placed = channel_order([(sku, 3)])

    await ingest(db, connection, placed)
    await ingest(db, connection, at_status(placed, OrderStatus.cancelled, minutes=3))
    await ingest(db, connection, at_status(placed, OrderStatus.cancelled, minutes=3))
    after = await ingest(db, connection, at_status(placed, OrderStatus.shipped, minutes=8))

    assert after.status is OrderStatus.cancelled
    assert not after.effects
    stock = await level(db, variant)
    assert (stock.on_hand, stock.reserved) == (10, 0)
    assert [m.kind for m in await movements(db, variant)] == [MovementKind.reserve, MovementKind.release]


async def test_a_returned_order_restocks_once(db: Db, worker_settings: Settings) -> None:
    _, connection, variant, sku = await _farm(db, worker_settings)
    placed = channel_order([(sku, 3)])

    await ingest(db, connection, placed)
    await ingest(db, connection, at_status(placed, OrderStatus.delivered, minutes=60))
    await ingest(db, connection, at_status(placed, OrderStatus.returned, minutes=90))
    await ingest(db, connection, at_status(placed, OrderStatus.returned, minutes=91))

    stock = await level(db, variant)
    assert (stock.on_hand, stock.reserved) == (10, 0)
    kinds = [m.kind for m in await movements(db, variant)]
    assert kinds == [MovementKind.reserve, MovementKind.sale, MovementKind.return_]
    assert await ledger_matches(db, variant)


async def test_an_order_first_seen_cancelled_touches_no_stock(db: Db, worker_settings: Settings) -> None:
    _, connection, variant, sku = await _farm(db, worker_settings)

    result = await ingest(db, connection, channel_order([(sku, 3)], status=OrderStatus.cancelled))

    assert result.status is OrderStatus.cancelled
    assert not result.effects
    assert await movements(db, variant) == []


async def test_an_unknown_sku_is_kept_and_flagged_and_the_known_lines_still_reserve(
    db: Db, worker_settings: Settings
) -> None:
    _, connection, variant, sku = await _farm(db, worker_settings)
    placed = channel_order([(sku.lower(), 1), ("KHONG-CO-SKU-NAY", 2)])

    result = await ingest(db, connection, placed)

    assert result.unknown_skus == ["KHONG-CO-SKU-NAY"]
    _order, [known, unknown] = await order_and_lines(db, connection.id, placed.external_id)
    assert (known.variant_id, known.unknown_sku, known.reserved_quantity) == (variant, False, 1)
    assert (unknown.variant_id, unknown.unknown_sku, unknown.sku, unknown.quantity) == (
        None,
        True,
        "KHONG-CO-SKU-NAY",
        2,
    )
    assert (await level(db, variant)).reserved == 1


async def test_a_line_maps_by_the_shops_listing_before_the_sku(db: Db, worker_settings: Settings) -> None:
    farm, connection, variant, _sku = await _farm(db, worker_settings)
    await farm.list_product(connection, next(iter(farm.products)))
    async with transaction(db) as session:
        from agrimarket.models import Listing

        listing = (await session.execute(select(Listing).where(Listing.connection_id == connection.id))).scalar_one()
        listing.external_item_id, listing.external_sku_id = "900", "901"
    from agrimarket.channels.base import ChannelOrder, ChannelOrderLine
    from tests.orders.support import T0

    placed = ChannelOrder(
        external_id="BY-LISTING",
        status=OrderStatus.paid,
        platform_status="READY_TO_SHIP",
        created_at=T0,
        updated_at=T0,
        lines=[ChannelOrderLine("L1", "a seller sku we never had", 2, 50_000, "900", "901", "Sầu riêng")],
        total_vnd=100_000,
    )

    await ingest(db, connection, placed)

    _order, [line] = await order_and_lines(db, connection.id, "BY-LISTING")
    assert (line.variant_id, line.unknown_sku) == (variant, False)


async def test_the_second_order_for_the_last_unit_is_flagged_oversold_and_stock_never_goes_negative(
    db: Db, worker_settings: Settings
) -> None:
    _, connection, variant, sku = await _farm(db, worker_settings, stock=1)
    first, second = channel_order([(sku, 1)]), channel_order([(sku, 1)])

    await ingest(db, connection, first)
    result = await ingest(db, connection, second)

    assert result.oversold
    order, [line] = await order_and_lines(db, connection.id, second.external_id)
    assert order.oversold
    assert (line.reserved_quantity, line.oversold_quantity) == (0, 1)
    stock = await level(db, variant)
    assert (stock.on_hand, stock.reserved, stock.available) == (1, 1, 0)

    await ingest(db, connection, at_status(second, OrderStatus.shipped, minutes=5))

    stock = await level(db, variant)
    assert stock.on_hand == 1
    assert stock.available == 0
    order, [line] = await order_and_lines(db, connection.id, second.external_id)
    assert order.oversold
    assert line.oversold_quantity == 1
    assert await ledger_matches(db, variant)


async def test_a_sale_on_one_shop_marks_the_variants_listings_on_every_other_shop_dirty_and_queues_their_sync(
    db: Db, worker_settings: Settings
) -> None:
    farm = await Farm.make(db)
    product = await farm.product("Hạt điều", variants=1, stock=10)
    selling, other = await farm.connect(worker_settings), await farm.connect(worker_settings)
    for connection in (selling, other):
        await farm.list_product(connection, product)
    async with transaction(db) as session:
        from agrimarket.models import Job, Listing

        await session.execute(update(Listing).values(pushed_version=Listing.desired_version))
        await session.execute(delete(Job))
    assert not dirty(await listings(db, other.id))
    sku = await sku_of(db, farm.products[product][0])

    await ingest(db, selling, channel_order([(sku, 2)]))

    assert len(dirty(await listings(db, other.id))) == 1
    assert len(dirty(await listings(db, selling.id))) == 1
    assert len(await queued_syncs(db, other.id)) == 1
