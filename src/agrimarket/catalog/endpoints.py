"""Catalog API: products, their variants and certifications."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from agrimarket.catalog import schemas
from agrimarket.catalog.repository import CatalogRepository
from agrimarket.catalog.service import CatalogService, ProductFilters, ProductView, VariantView
from agrimarket.config import Settings
from agrimarket.deps import PrincipalDep, SessionDep, SettingsDep
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService
from agrimarket.kit.pagination import Cursor, Page
from agrimarket.kit.text import SearchText
from agrimarket.media.endpoints import MediaServiceDep, photo_out
from agrimarket.media.service import MediaService
from agrimarket.models import Category, ProductStatus, StockLevel, Variant

router = APIRouter(prefix="/api/v1", tags=["catalog"])


def get_catalog_service(session: SessionDep) -> CatalogService:
    return CatalogService(CatalogRepository(session), InventoryService(InventoryRepository(session)))


CatalogServiceDep = Annotated[CatalogService, Depends(get_catalog_service)]


def _variant_out(variant: Variant, level: StockLevel | None) -> schemas.VariantOut:
    on_hand, reserved = (level.on_hand, level.reserved) if level else (0, 0)
    return schemas.VariantOut(
        id=variant.id,
        product_id=variant.product_id,
        sku=variant.sku,
        name=variant.name,
        unit=variant.unit,
        price_vnd=variant.price_vnd,
        weight_grams=variant.weight_grams,
        position=variant.position,
        version=variant.version,
        archived_at=variant.archived_at,
        created_at=variant.created_at,
        updated_at=variant.updated_at,
        stock=schemas.StockSummary(on_hand=on_hand, reserved=reserved, available=on_hand - reserved),
    )


def variant_out(view: VariantView) -> schemas.VariantOut:
    return _variant_out(view.variant, view.level)


def product_out(view: ProductView) -> schemas.ProductOut:
    product = view.product
    return schemas.ProductOut(
        id=product.id,
        organization_id=product.organization_id,
        name=product.name,
        description=product.description,
        category=product.category,
        status=product.status,
        harvest_date=product.harvest_date,
        shelf_life_days=product.shelf_life_days,
        best_before=schemas.best_before(product.harvest_date, product.shelf_life_days),
        version=product.version,
        created_at=product.created_at,
        updated_at=product.updated_at,
        variants=[_variant_out(v, view.levels.get(v.id)) for v in view.variants],
        certifications=[schemas.CertificationOut.model_validate(c) for c in view.certifications],
    )


@router.post("/organizations/{organization_id}/products", status_code=status.HTTP_201_CREATED)
async def create_product(
    organization_id: uuid.UUID, body: schemas.ProductCreate, principal: PrincipalDep, catalog: CatalogServiceDep
) -> schemas.ProductOut:
    """Create a product with its variants, opening stock and certifications, all or nothing."""
    view = await catalog.create_product(principal.access, organization_id, body, actor_user_id=principal.user.id)
    return product_out(view)


@router.get("/organizations/{organization_id}/products")
async def list_products(
    organization_id: uuid.UUID,
    principal: PrincipalDep,
    catalog: CatalogServiceDep,
    media: MediaServiceDep,
    settings: SettingsDep,
    q: SearchText | None = None,
    category: Category | None = None,
    status: Annotated[ProductStatus, Query(description="Archived products are listed only when asked for.")] = (
        ProductStatus.active
    ),
    harvested_from: date | None = None,
    harvested_to: date | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page[schemas.ProductWithPhotosOut]:
    """The organization's products with their photos, newest first, filtered; pass `next_cursor` back as `cursor`."""
    filters = ProductFilters(
        q=q, category=category, status=status, harvested_from=harvested_from, harvested_to=harvested_to
    )
    views, next_cursor = await catalog.list_products(
        principal.access, organization_id, filters, cursor=Cursor.decode(cursor) if cursor else None, limit=limit
    )
    return Page(
        items=await _with_photos(views, media, settings), next_cursor=next_cursor.encode() if next_cursor else None
    )


@router.get("/products/{product_id}")
async def get_product(
    product_id: uuid.UUID,
    principal: PrincipalDep,
    catalog: CatalogServiceDep,
    media: MediaServiceDep,
    settings: SettingsDep,
) -> schemas.ProductWithPhotosOut:
    """One product with its variants, stock, certifications and photos."""
    (product,) = await _with_photos([await catalog.get_product(principal.access, product_id)], media, settings)
    return product


async def _with_photos(
    views: list[ProductView], media: MediaService, settings: Settings
) -> list[schemas.ProductWithPhotosOut]:
    photos = await media.photos_of_products([view.product.id for view in views])
    return [
        schemas.ProductWithPhotosOut(
            **product_out(view).model_dump(), photos=[photo_out(settings, p) for p in photos[view.product.id]]
        )
        for view in views
    ]


@router.patch("/products/{product_id}")
async def update_product(
    product_id: uuid.UUID, body: schemas.ProductUpdate, principal: PrincipalDep, catalog: CatalogServiceDep
) -> schemas.ProductOut:
    """Change a product's fields; its listings on every channel are updated."""
    return product_out(await catalog.update_product(principal.access, product_id, body))


@router.delete("/products/{product_id}")
async def archive_product(
    product_id: uuid.UUID, principal: PrincipalDep, catalog: CatalogServiceDep
) -> schemas.ProductOut:
    """Archive a product (admins and owners): off sale everywhere, its history kept; PATCH status to restore."""
    return product_out(await catalog.archive_product(principal.access, product_id))


@router.post("/products/{product_id}/variants", status_code=status.HTTP_201_CREATED)
async def add_variant(
    product_id: uuid.UUID, body: schemas.VariantIn, principal: PrincipalDep, catalog: CatalogServiceDep
) -> schemas.VariantOut:
    """Add a variant (a SKU with its own price and stock) to a product."""
    view = await catalog.add_variant(principal.access, product_id, body, actor_user_id=principal.user.id)
    return variant_out(view)


@router.get("/variants/{variant_id}")
async def get_variant(variant_id: uuid.UUID, principal: PrincipalDep, catalog: CatalogServiceDep) -> schemas.VariantOut:
    """One variant with its stock."""
    return variant_out(await catalog.get_variant(principal.access, variant_id))


@router.patch("/variants/{variant_id}")
async def update_variant(
    variant_id: uuid.UUID, body: schemas.VariantUpdate, principal: PrincipalDep, catalog: CatalogServiceDep
) -> schemas.VariantOut:
    """Change a variant's SKU, name, unit, price, weight or position."""
    return variant_out(await catalog.update_variant(principal.access, variant_id, body))


@router.delete("/variants/{variant_id}")
async def archive_variant(
    variant_id: uuid.UUID, principal: PrincipalDep, catalog: CatalogServiceDep
) -> schemas.VariantOut:
    """Archive a variant (admins and owners): off sale, its stock history and orders kept."""
    return variant_out(await catalog.archive_variant(principal.access, variant_id))


@router.post("/products/{product_id}/certifications", status_code=status.HTTP_201_CREATED)
async def add_certification(
    product_id: uuid.UUID, body: schemas.CertificationIn, principal: PrincipalDep, catalog: CatalogServiceDep
) -> schemas.CertificationOut:
    """Add a certification: VietGAP, GlobalGAP or organic (number and expiry), or OCOP (3 to 5 stars)."""
    certification = await catalog.add_certification(principal.access, product_id, body)
    return schemas.CertificationOut.model_validate(certification)


@router.delete("/certifications/{certification_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_certification(
    certification_id: uuid.UUID, principal: PrincipalDep, catalog: CatalogServiceDep
) -> None:
    """Remove a certification from its product."""
    await catalog.remove_certification(principal.access, certification_id)
