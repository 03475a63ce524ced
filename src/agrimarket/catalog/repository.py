"""All catalog queries."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.inventory.repository import keyset, like_pattern
from agrimarket.kit.pagination import Cursor
from agrimarket.models import Category, Certification, Product, ProductStatus, Variant

# Every sync run's read of the products it plans, built once: building a statement cost about as much as running it.
_VARIANTS_OF_PRODUCTS = (
    select(Variant)
    .where(Variant.product_id.in_(bindparam("product_ids", expanding=True)))
    .order_by(Variant.position, Variant.created_at, Variant.id)
)


class CatalogRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def product(self, product_id: uuid.UUID, *, lock: bool = False) -> Product | None:
        """With ``lock``: row-locked and re-read, so two edits cannot both read version N and both write N + 1."""
        return await self.session.get(Product, product_id, with_for_update=lock or None, populate_existing=lock)

    async def variant(self, variant_id: uuid.UUID, *, lock: bool = False) -> Variant | None:
        return await self.session.get(Variant, variant_id, with_for_update=lock or None, populate_existing=lock)

    async def variants(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Variant]]:
        found: dict[uuid.UUID, list[Variant]] = defaultdict(list)
        if product_ids:
            result = await self.session.execute(_VARIANTS_OF_PRODUCTS, {"product_ids": list(product_ids)})
            for variant in result.scalars():
                found[variant.product_id].append(variant)
        return found

    async def certifications(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Certification]]:
        found: dict[uuid.UUID, list[Certification]] = defaultdict(list)
        if product_ids:
            result = await self.session.execute(
                select(Certification)
                .where(Certification.product_id.in_(product_ids))
                .order_by(Certification.created_at, Certification.id)
            )
            for certification in result.scalars():
                found[certification.product_id].append(certification)
        return found

    async def certification(self, certification_id: uuid.UUID, *, lock: bool = False) -> Certification | None:
        return await self.session.get(
            Certification, certification_id, with_for_update=lock or None, populate_existing=lock
        )

    async def skus_in_use(self, organization_id: uuid.UUID, skus: Sequence[str]) -> dict[str, tuple[Variant, str]]:
        """Each SKU already taken in the organization, with the variant and its product's name."""
        if not skus:
            return {}
        result = await self.session.execute(
            select(Variant, Product.name)
            .join(Product, Product.id == Variant.product_id)
            .where(Variant.organization_id == organization_id, Variant.sku.in_(list(skus)))
        )
        return {variant.sku: (variant, name) for variant, name in result.all()}

    async def insert_variant(self, variant: Variant) -> bool:
        """Insert in a savepoint; False when another transaction took the SKU since it was checked."""
        try:
            async with self.session.begin_nested():
                self.session.add(variant)
                await self.session.flush()
        except IntegrityError as exc:
            if "sku" not in str(exc.orig).lower():
                raise
            return False
        return True

    async def update_variant(self, variant: Variant, changes: dict[str, Any]) -> bool:
        """Apply and flush in a savepoint; False when another transaction took the new SKU since it was checked.

        The changes are made inside the savepoint: ``begin_nested`` flushes what is pending before it starts,
        and a failure there would break the whole transaction instead of only the savepoint.
        """
        try:
            async with self.session.begin_nested():
                for name, value in changes.items():
                    setattr(variant, name, value)
                await self.session.flush()
        except IntegrityError as exc:
            if "sku" not in str(exc.orig).lower():
                raise
            return False
        return True

    async def next_position(self, product_id: uuid.UUID) -> int:
        result = await self.session.execute(
            select(func.coalesce(func.max(Variant.position), -1)).where(Variant.product_id == product_id)
        )
        return int(result.scalar_one()) + 1

    async def list_products(
        self,
        organization_id: uuid.UUID,
        *,
        folded_q: str | None,
        category: Category | None,
        status: ProductStatus | None,
        harvested_from: date | None,
        harvested_to: date | None,
        cursor: Cursor | None,
        limit: int,
    ) -> list[Product]:
        stmt = select(Product).where(Product.organization_id == organization_id)
        if folded_q:
            stmt = stmt.where(Product.search_key.like(like_pattern(folded_q), escape="\\"))
        if category is not None:
            stmt = stmt.where(Product.category == category)
        if status is not None:
            stmt = stmt.where(Product.status == status)
        if harvested_from is not None:
            stmt = stmt.where(Product.harvest_date >= harvested_from)
        if harvested_to is not None:
            stmt = stmt.where(Product.harvest_date <= harvested_to)
        stmt = keyset(stmt, Product.created_at, Product.id, cursor, newest_first=True)
        result = await self.session.execute(stmt.limit(limit))
        return list(result.scalars())

    def add(self, *objects: object) -> None:
        self.session.add_all(objects)

    async def delete(self, obj: object) -> None:
        await self.session.delete(obj)

    async def flush(self) -> None:
        await self.session.flush()
