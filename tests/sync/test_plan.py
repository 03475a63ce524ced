"""What the engine decides to send for one product, from the catalogue and what the shop was last told (no I/O)."""

from __future__ import annotations

import uuid
from typing import Any

from agrimarket.channels.reference import ReferencePlugin
from agrimarket.models import (
    Category,
    ChannelConnection,
    Listing,
    ListingStatus,
    Product,
    ProductStatus,
    StockLevel,
    Unit,
    Variant,
    utcnow,
)
from agrimarket.sync.plan import Action, ProductPlan, plan_product

CAPABILITIES = ReferencePlugin().capabilities


def _world(
    *, overrides: dict[str, Any] | None = None, status: ListingStatus = ListingStatus.pending, variants: int = 2
) -> tuple[ChannelConnection, Product, list[Variant], list[Listing], dict[uuid.UUID, StockLevel]]:
    org = uuid.uuid4()
    connection = ChannelConnection(
        id=uuid.uuid4(),
        organization_id=org,
        channel="reference",
        name="shop",
        settings={"category_map": {"nuts": "N1"}},
    )
    product = Product(
        id=uuid.uuid4(),
        organization_id=org,
        name="Hạt điều",
        description="Rang củi",
        category=Category.nuts,
        status=ProductStatus.active,
        version=1,
    )
    made = [
        Variant(
            id=uuid.uuid4(),
            product_id=product.id,
            organization_id=org,
            sku=f"DIEU-{i}",
            name=f"Hũ {i}",
            unit=Unit.hu,
            price_vnd=100_000 * (i + 1),
            weight_grams=500,
        )
        for i in range(variants)
    ]
    rows = [
        Listing(
            id=uuid.uuid4(),
            organization_id=org,
            connection_id=connection.id,
            product_id=product.id,
            variant_id=v.id,
            status=status,
            overrides=overrides or {},
            desired_version=2,
            pushed_version=1,
        )
        for v in made
    ]
    levels = {v.id: StockLevel(variant_id=v.id, organization_id=org, on_hand=30, reserved=10) for v in made}
    return connection, product, made, rows, levels


def _plan(
    connection: ChannelConnection,
    product: Product,
    variants: list[Variant],
    rows: list[Listing],
    levels: dict[uuid.UUID, StockLevel],
) -> ProductPlan:
    return plan_product(
        capabilities=CAPABILITIES,
        connection=connection,
        product=product,
        variants=variants,
        rows=rows,
        levels=levels,
        images=[],
    )


def _as_published(plan: ProductPlan, rows: list[Listing]) -> None:
    """Make the rows say the channel shows exactly what the plan wants."""
    for row, row_plan in zip(rows, plan.rows, strict=True):
        row.external_item_id = "ITEM-1"
        row.external_sku_id = f"SKU-{row_plan.sku}"
        row.pushed_state = {"content": plan.content, "price_vnd": row_plan.price_vnd, "stock": row_plan.stock}


def test_a_new_listing_is_published_whole_at_the_rules_price_and_stock_with_the_mapped_category() -> None:
    world = _world(overrides={"price_rule": {"markup_percent": 5}, "stock_rule": {"buffer": 3}})
    plan = _plan(*world)
    assert plan.action is Action.publish
    assert plan.category == "N1"
    assert [(r.price_vnd, r.stock) for r in plan.rows] == [(105_000, 17), (210_000, 17)]  # available 20 − 3


def test_a_listing_the_channel_already_shows_needs_nothing() -> None:
    connection, product, variants, rows, levels = _world()
    _as_published(_plan(connection, product, variants, rows, levels), rows)
    plan = _plan(connection, product, variants, rows, levels)
    assert plan.action is None
    assert all(r.done for r in plan.rows)


def test_only_the_stock_that_changed_is_sent() -> None:
    connection, product, variants, rows, levels = _world()
    _as_published(_plan(connection, product, variants, rows, levels), rows)
    levels[variants[1].id].on_hand = 12
    plan = _plan(connection, product, variants, rows, levels)
    assert plan.action is None
    assert [r.pending for r in plan.rows] == [set(), {Action.stock}]
    assert plan.rows[1].stock == 2


def test_a_paused_listing_offers_zero_and_an_archived_variant_is_kept_at_zero_outside_the_publish() -> None:
    connection, product, variants, rows, levels = _world(status=ListingStatus.paused)
    assert {r.stock for r in _plan(connection, product, variants, rows, levels).rows} == {0}

    connection, product, variants, rows, levels = _world()
    _as_published(_plan(connection, product, variants, rows, levels), rows)
    variants[0].archived_at = utcnow()
    plan = _plan(connection, product, variants, rows, levels)
    assert plan.action is Action.publish  # the set of variants changed
    assert [r.sku for r in plan.rows if Action.publish in r.pending] == ["DIEU-1"]
    assert plan.rows[0].stock == 0
    assert plan.rows[0].pending == {Action.stock}


def test_a_title_override_changes_the_content_and_republishes() -> None:
    connection, product, variants, rows, levels = _world()
    _as_published(_plan(connection, product, variants, rows, levels), rows)
    for row in rows:
        row.overrides = {"title": "Điều rang muối Bình Phước"}
    plan = _plan(connection, product, variants, rows, levels)
    assert plan.action is Action.publish
    assert plan.title == "Điều rang muối Bình Phước"


def test_a_delisted_listing_is_delisted_once() -> None:
    connection, product, variants, rows, levels = _world(status=ListingStatus.delisted)
    assert _plan(connection, product, variants, rows, levels).action is None  # never published: nothing to take off
    for row in rows:
        row.external_item_id = "ITEM-1"
    assert _plan(connection, product, variants, rows, levels).action is Action.delist
    for row in rows:
        row.pushed_state = {"delisted": True}
    assert _plan(connection, product, variants, rows, levels).action is None
