"""What an import pass does for speed changes nothing else: the same keys as the catalog's, the collector as it was."""

from __future__ import annotations

import gc
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.imports.repository import (
    LOOKUP_LIMIT,
    LOOKUP_ORGANIZATIONS,
    PRODUCT_COLUMNS,
    ImportRepository,
    _by_organization,
)
from agrimarket.imports.service import fewer_collections, fold
from agrimarket.kit.text import fold as catalog_fold
from agrimarket.models import Category, Organization, OrganizationKind, Product, ProductStatus


@pytest.mark.parametrize(
    "text",
    ["SR-RI6-1KG", "  Hop  1\tkg ", "A\x1cB", "MIXED case.Sku_1", "", "Sầu riêng Ri6", "ĐẮK LẮK", "Tiêu  đen\u00a0 "],
)
def test_an_import_folds_like_the_catalog(text: str) -> None:
    assert fold(text) == catalog_fold(text)


def test_the_collector_runs_less_while_imports_run_and_as_before_after() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] >= 10_000
        with fewer_collections():  # a second import at the same time
            assert gc.get_threshold()[0] >= 10_000
        assert gc.get_threshold()[0] >= 10_000  # the first still runs
    assert gc.get_threshold() == before


@pytest.mark.parametrize(
    "sizes",
    [[], [1], [LOOKUP_LIMIT], [LOOKUP_LIMIT, 1], [LOOKUP_LIMIT - 1, 2, LOOKUP_LIMIT * 2 + 3], [7] * 200, [1] * 250],
)
def test_skus_are_looked_up_by_organization_in_lists_of_at_most_the_limits(sizes: list[int]) -> None:
    keys = [
        (organization, f"SKU-{i}") for organization, size in ((uuid.uuid4(), s) for s in sizes) for i in range(size)
    ]

    batches = list(_by_organization(keys + keys[:5]))  # a key asked for twice is looked up once

    assert sorted((o, s) for batch in batches for o, skus in batch for s in skus) == sorted(keys)
    assert all(0 < sum(len(skus) for _, skus in batch) <= LOOKUP_LIMIT for batch in batches)
    assert all(len(batch) <= LOOKUP_ORGANIZATIONS for batch in batches)
    assert all(skus for batch in batches for _, skus in batch)


async def test_a_bulk_insert_stores_each_value_as_an_orm_insert_does(session: AsyncSession) -> None:
    """Ids, timestamps, dates, enums and numbers converted column by column (and once for a repeated value) are
    stored as SQLAlchemy's own insert stores them."""
    organization_id = uuid.uuid4()
    now = datetime(2026, 6, 15, 8, 30, 0, 0, tzinfo=UTC)  # no microseconds: the form most likely to differ
    values = {
        "organization_id": organization_id,
        "name": "Sầu riêng",
        "description": "",
        "category": Category.fruit,
        "status": ProductStatus.active,
        "harvest_date": date(2026, 6, 1),
        "shelf_life_days": None,
        "version": 1,
        "search_key": "sau rieng",
        "created_at": now,
        "updated_at": now + timedelta(microseconds=5),
    }
    session.add(Organization(id=organization_id, name="Hộ An", kind=OrganizationKind.household))
    await session.flush()
    ours, theirs = uuid.uuid4(), uuid.uuid4()
    await ImportRepository(session).insert_products(
        [tuple(({"id": product_id} | values)[name] for name in PRODUCT_COLUMNS) for product_id in (ours, uuid.uuid4())]
    )
    await session.execute(insert(Product), [{"id": theirs, **values}])

    on_sqlite = (await session.connection()).dialect.name == "sqlite"
    stored = {}
    for product_id in (ours, theirs):
        row = await session.execute(
            text(
                "SELECT CAST(id AS TEXT), CAST(created_at AS TEXT), CAST(updated_at AS TEXT), CAST(harvest_date AS "
                "TEXT), category, status, shelf_life_days FROM products WHERE CAST(id AS TEXT) = :id"
            ),
            {"id": product_id.hex if on_sqlite else str(product_id)},
        )
        stored[product_id] = row.one()
    assert stored[ours][1:] == stored[theirs][1:]


async def test_a_lookup_over_many_households_at_once_is_split_where_the_database_needs(session: AsyncSession) -> None:
    keys = [(uuid.uuid4(), f"SKU-{i}") for i in range(LOOKUP_ORGANIZATIONS * 10 + 1)]  # a row for each household

    assert await ImportRepository(session).existing(keys) == {}
