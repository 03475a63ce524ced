"""Catalog rules: products, their variants, certifications. Never commits.

Every change bumps the changed row's ``version`` and marks the affected listings dirty in the same transaction,
so the sync engine pushes it to every channel. A product-level change (name, description, certifications, the
set of variants) affects every variant's listing; a variant's own change (price, weight, SKU) only its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from agrimarket.accounts.permissions import Access
from agrimarket.catalog.repository import CatalogRepository
from agrimarket.catalog.schemas import CertificationIn, ProductCreate, ProductUpdate, VariantIn, VariantUpdate
from agrimarket.errors import Conflict, Invalid, NotFound
from agrimarket.inventory.service import InventoryService
from agrimarket.kit.pagination import Cursor
from agrimarket.kit.text import fold
from agrimarket.models import Category, Certification, Product, ProductStatus, Role, StockLevel, Variant, utcnow


@dataclass(frozen=True)
class ProductView:
    product: Product
    variants: list[Variant]
    certifications: list[Certification]
    levels: dict[uuid.UUID, StockLevel] = field(default_factory=dict)


@dataclass(frozen=True)
class VariantView:
    variant: Variant
    level: StockLevel | None


@dataclass(frozen=True)
class ProductFilters:
    q: str | None = None
    category: Category | None = None
    status: ProductStatus | None = ProductStatus.active
    harvested_from: date | None = None
    harvested_to: date | None = None


class CatalogService:
    def __init__(self, repository: CatalogRepository, inventory: InventoryService) -> None:
        self.repo = repository
        self.inventory = inventory

    # -- products ---------------------------------------------------------------------------------------------

    async def create_product(
        self, access: Access, organization_id: uuid.UUID, data: ProductCreate, *, actor_user_id: uuid.UUID | None
    ) -> ProductView:
        """All or nothing: one refused variant and the request's transaction writes nothing."""
        access.require(organization_id)
        skus = [(f"variants.{i}.sku", v.sku) for i, v in enumerate(data.variants)]
        _no_sku_twice(skus)
        _no_certificate_twice(data.certifications)
        await self._skus_free(organization_id, skus, product_id=None)
        product = Product(
            id=uuid.uuid4(),
            organization_id=organization_id,
            name=data.name,
            description=data.description,
            category=data.category,
            status=ProductStatus.active,
            harvest_date=data.harvest_date,
            shelf_life_days=data.shelf_life_days,
            version=1,
            search_key=_search_key(data.name, [(v.name, v.sku) for v in data.variants]),
        )
        self.repo.add(product)
        await self.repo.flush()
        for position, variant_in in enumerate(data.variants):
            await self._insert_variant(product, variant_in, position, f"variants.{position}", actor_user_id)
        self.repo.add(*(_certification(product.id, c) for c in data.certifications))
        await self.repo.flush()
        return await self._view(product)

    async def get_product(self, access: Access, product_id: uuid.UUID) -> ProductView:
        return await self._view(await self._product_in_reach(access, product_id))

    async def list_products(
        self,
        access: Access,
        organization_id: uuid.UUID,
        filters: ProductFilters,
        *,
        cursor: Cursor | None,
        limit: int,
    ) -> tuple[list[ProductView], Cursor | None]:
        """Newest first, keyset-paginated over (created_at, id)."""
        access.require(organization_id)
        if filters.harvested_from and filters.harvested_to and filters.harvested_from > filters.harvested_to:
            raise Invalid("The harvest date range ends before it starts.", field="harvested_to")
        products = await self.repo.list_products(
            organization_id,
            folded_q=fold(filters.q) if filters.q else None,
            category=filters.category,
            status=filters.status,
            harvested_from=filters.harvested_from,
            harvested_to=filters.harvested_to,
            cursor=cursor,
            limit=limit + 1,
        )
        next_cursor = None
        if len(products) > limit:
            products = products[:limit]
            next_cursor = Cursor(products[-1].created_at, products[-1].id)
        return await self._views(products), next_cursor

    async def update_product(self, access: Access, product_id: uuid.UUID, data: ProductUpdate) -> ProductView:
        changes = data.model_dump(exclude_unset=True)
        product = await self._product_in_reach(access, product_id, lock=True)
        if changes.get("status") not in (None, product.status):
            access.require(product.organization_id, Role.admin)
        if _apply(product, changes):
            variants = (await self.repo.variants([product.id]))[product.id]
            product.search_key = _search_key(product.name, [(v.name, v.sku) for v in variants])
            await self.product_changed(product, variants)
        return await self._view(product)

    async def archive_product(self, access: Access, product_id: uuid.UUID) -> ProductView:
        """Off sale everywhere, history kept: variants, stock, movements and orders stay. Archiving twice is a no-op."""
        product = await self._product_in_reach(access, product_id, lock=True, at_least=Role.admin)
        if product.status is not ProductStatus.archived:
            product.status = ProductStatus.archived
            await self.product_changed(product)
        return await self._view(product)

    # -- variants ---------------------------------------------------------------------------------------------

    async def add_variant(
        self, access: Access, product_id: uuid.UUID, data: VariantIn, *, actor_user_id: uuid.UUID | None
    ) -> VariantView:
        product = await self._product_in_reach(access, product_id, lock=True)
        await self._skus_free(product.organization_id, [("sku", data.sku)], product_id=product.id)
        position = await self.repo.next_position(product.id)
        variant, level = await self._insert_variant(product, data, position, "", actor_user_id)
        variants = (await self.repo.variants([product.id]))[product.id]
        product.search_key = _search_key(product.name, [(v.name, v.sku) for v in variants])
        await self.product_changed(product, variants)
        return VariantView(variant, level)

    async def get_variant(self, access: Access, variant_id: uuid.UUID) -> VariantView:
        variant = await self._variant_in_reach(access, variant_id)
        return VariantView(variant, (await self.inventory.levels_of([variant.id])).get(variant.id))

    async def update_variant(self, access: Access, variant_id: uuid.UUID, data: VariantUpdate) -> VariantView:
        changes = data.model_dump(exclude_unset=True)
        product, variant = await self._lock_variant(await self._variant_in_reach(access, variant_id))
        if variant.archived_at is not None:
            raise Conflict(f"Variant {variant.sku} is archived and can no longer be changed.", field="variant_id")
        if changes.get("sku") not in (None, variant.sku):
            await self._skus_free(variant.organization_id, [("sku", changes["sku"])], product_id=product.id)
        if changed := _differences(variant, changes):
            sku = changed.get("sku") or variant.sku  # read now: a rolled-back savepoint expires the variant
            if not await self.repo.update_variant(variant, {**changed, "version": variant.version + 1}):
                raise Conflict(_sku_race(sku), field="sku")
            if {"sku", "name"} & changed.keys():
                variants = (await self.repo.variants([product.id]))[product.id]
                product.search_key = _search_key(product.name, [(v.name, v.sku) for v in variants])
                await self.repo.flush()
            await self.inventory.mark_listings_dirty([variant.id])
        return VariantView(variant, (await self.inventory.levels_of([variant.id])).get(variant.id))

    async def archive_variant(self, access: Access, variant_id: uuid.UUID) -> VariantView:
        """Off sale, history kept; its SKU stays taken. An active product keeps at least one variant on sale."""
        product, variant = await self._lock_variant(
            await self._variant_in_reach(access, variant_id, at_least=Role.admin)
        )
        if variant.archived_at is None:
            variants = (await self.repo.variants([product.id]))[product.id]
            on_sale = [v for v in variants if v.archived_at is None]
            if product.status is ProductStatus.active and on_sale == [variant]:
                raise Conflict(
                    f"{variant.sku} is the last variant on sale of this product. "
                    "Add another variant first, or archive the whole product.",
                    field="variant_id",
                )
            variant.archived_at = utcnow()
            variant.version += 1
            await self.product_changed(product, variants)
        return VariantView(variant, (await self.inventory.levels_of([variant.id])).get(variant.id))

    # -- certifications ---------------------------------------------------------------------------------------

    async def add_certification(self, access: Access, product_id: uuid.UUID, data: CertificationIn) -> Certification:
        product = await self._product_in_reach(access, product_id, lock=True)
        existing = (await self.repo.certifications([product.id]))[product.id]
        if any(c.kind is data.kind and fold(c.number) == fold(data.number) for c in existing):
            raise Conflict(f"This product already has {data.kind.value} certificate {data.number}.", field="number")
        certification = _certification(product.id, data)
        self.repo.add(certification)
        await self.product_changed(product)
        return certification

    async def remove_certification(self, access: Access, certification_id: uuid.UUID) -> None:
        certification = await self.repo.certification(certification_id)
        product = access.reach(
            await self.repo.product(certification.product_id) if certification else None, "Certification"
        )
        product = await self._locked_product(product.id)
        if (certification := await self.repo.certification(certification_id, lock=True)) is None:
            raise NotFound("Certification not found.")  # removed by someone else while this request waited
        await self.repo.delete(certification)
        await self.product_changed(product)

    # -- helpers ----------------------------------------------------------------------------------------------

    async def _product_in_reach(
        self, access: Access, product_id: uuid.UUID, *, lock: bool = False, at_least: Role = Role.member
    ) -> Product:
        return access.reach(await self.repo.product(product_id, lock=lock), "Product", at_least)

    async def _variant_in_reach(self, access: Access, variant_id: uuid.UUID, at_least: Role = Role.member) -> Variant:
        return access.reach(await self.repo.variant(variant_id), "Variant", at_least)

    async def _lock_variant(self, variant: Variant) -> tuple[Product, Variant]:
        """Every change under a product takes the product's lock first (one order: no deadlock, no lost bump),
        then re-reads the variant, which another transaction may have changed while this one waited."""
        product = await self._locked_product(variant.product_id)
        locked = await self.repo.variant(variant.id, lock=True)
        assert locked is not None  # variants are never deleted, only archived
        return product, locked

    async def _locked_product(self, product_id: uuid.UUID) -> Product:
        product = await self.repo.product(product_id, lock=True)
        assert product is not None  # a variant's or certification's product: the foreign key guarantees it
        return product

    async def product_changed(self, product: Product, variants: Sequence[Variant] | None = None) -> None:
        """Something the channels show changed (fields, variants, photos): bump the version, mark listings dirty."""
        product.version += 1
        await self.repo.flush()
        if variants is None:
            variants = (await self.repo.variants([product.id]))[product.id]
        await self.inventory.mark_listings_dirty([v.id for v in variants])

    async def _skus_free(
        self, organization_id: uuid.UUID, skus: Sequence[tuple[str, str]], *, product_id: uuid.UUID | None
    ) -> None:
        taken = await self.repo.skus_in_use(organization_id, [sku for _, sku in skus])
        for field_name, sku in skus:
            if sku in taken:
                variant, product_name = taken[sku]
                archived = " (archived)" if variant.archived_at is not None else ""
                if variant.product_id == product_id:
                    where = f"variant “{variant.name}”{archived} of this product"
                else:
                    where = f"another product of this organization (“{product_name}”{archived})"
                raise Conflict(f"SKU {sku} is already used by {where}. Choose another SKU.", field=field_name)

    async def _insert_variant(
        self, product: Product, data: VariantIn, position: int, prefix: str, actor_user_id: uuid.UUID | None
    ) -> tuple[Variant, StockLevel]:
        variant = Variant(
            id=uuid.uuid4(),
            product_id=product.id,
            organization_id=product.organization_id,
            sku=data.sku,
            name=data.name,
            unit=data.unit,
            price_vnd=data.price_vnd,
            weight_grams=data.weight_grams,
            position=position,
            version=1,
        )
        dot = "." if prefix else ""
        if not await self.repo.insert_variant(variant):
            raise Conflict(_sku_race(data.sku), field=f"{prefix}{dot}sku")
        level = await self.inventory.open_level(
            variant, data.initial_stock, actor_user_id=actor_user_id, field=f"{prefix}{dot}initial_stock"
        )
        return variant, level

    async def _view(self, product: Product) -> ProductView:
        return (await self._views([product]))[0]

    async def _views(self, products: Sequence[Product]) -> list[ProductView]:
        ids = [p.id for p in products]
        variants = await self.repo.variants(ids)
        certifications = await self.repo.certifications(ids)
        levels = await self.inventory.levels_of([v.id for vs in variants.values() for v in vs])
        return [ProductView(p, variants[p.id], certifications[p.id], levels) for p in products]


def _differences(obj: object, changes: dict[str, Any]) -> dict[str, Any]:
    """What would really change: an unchanged PATCH bumps no version and pushes nothing."""
    return {name: value for name, value in changes.items() if getattr(obj, name) != value}


def _apply(obj: object, changes: dict[str, Any]) -> bool:
    """Set what differs; True when anything did."""
    changed = _differences(obj, changes)
    for name, value in changed.items():
        setattr(obj, name, value)
    return bool(changed)


def _search_key(name: str, variants: Iterable[tuple[str, str]]) -> str:
    parts = [name]
    for variant_name, sku in variants:
        parts += [variant_name, sku]
    return " ".join(fold(part) for part in parts)


def _sku_race(sku: str) -> str:
    return f"SKU {sku} was just saved for another product at the same moment. Choose another SKU."


def _no_sku_twice(skus: Sequence[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for field_name, sku in skus:
        if sku in seen:
            raise Conflict(
                f"SKU {sku} is given to two variants ({seen[sku]} and {field_name}); each variant needs its own SKU.",
                field=field_name,
            )
        seen[sku] = field_name


def _no_certificate_twice(certifications: Sequence[CertificationIn]) -> None:
    seen: set[tuple[str, str]] = set()
    for i, certification in enumerate(certifications):
        key = (certification.kind.value, fold(certification.number))
        if key in seen:
            raise Conflict(
                f"{certification.kind.value} certificate {certification.number} is listed twice.",
                field=f"certifications.{i}.number",
            )
        seen.add(key)


def _certification(product_id: uuid.UUID, data: CertificationIn) -> Certification:
    return Certification(
        product_id=product_id,
        kind=data.kind,
        number=data.number,
        issuer=data.issuer,
        stars=data.stars,
        expires_on=data.expires_on,
    )
