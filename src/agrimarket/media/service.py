"""Photo rules: a product's photos, their order, their renditions. Never commits; only flushes.

Storage writes are not part of the database transaction. Adding a photo stores its (content-addressed) blobs
first, so a rolled-back request leaves at most an unreferenced blob, never a row pointing at nothing. Removing a
photo returns the keys no row uses any more; delete them *after* the commit (:func:`delete_blobs`), so a
rolled-back removal still has its files.

A product's photos are part of every listing of it: a change to them takes the product's lock first (as every
catalog change does), bumps the product's ``version`` and marks its listings dirty, in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agrimarket.accounts.permissions import Access
from agrimarket.catalog.repository import CatalogRepository
from agrimarket.catalog.service import CatalogService
from agrimarket.errors import Conflict, Invalid, NotFound
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.inventory.service import InventoryService
from agrimarket.media.pipeline import (
    DEFAULT_LIMITS,
    MediaLimits,
    NormalisedImage,
    RenditionResult,
    ingest,
    render,
    rendition_key,
)
from agrimarket.media.repository import MediaRepository
from agrimarket.media.rules import DEFAULT_RULES, ImageRule
from agrimarket.media.storage import Storage
from agrimarket.models import MediaAsset, Product, Rendition, Role
from agrimarket.observability import get_logger

log = get_logger(__name__)

PRODUCT_NOT_FOUND = "This product does not exist, or it belongs to another farm."
PHOTO_NOT_FOUND = "This photo does not exist, or it belongs to another farm."


@dataclass(frozen=True, slots=True)
class Photo:
    """A stored photo and its renditions, by purpose."""

    asset: MediaAsset
    renditions: dict[str, Rendition]


class MediaService:
    def __init__(
        self,
        repository: MediaRepository,
        storage: Storage,
        *,
        rules: Sequence[ImageRule] = tuple(DEFAULT_RULES.values()),
        limits: MediaLimits = DEFAULT_LIMITS,
        inventory: InventoryService | None = None,
    ) -> None:
        self.repo = repository
        self.storage = storage
        self.rules = tuple(rules)
        self.limits = limits
        self.catalog = CatalogRepository(repository.session)
        self.inventory = inventory or InventoryService(InventoryRepository(repository.session))

    async def product_organization(
        self, access: Access, product_id: uuid.UUID, *, variant_id: uuid.UUID | None = None
    ) -> uuid.UUID:
        """The organization of a product the caller reaches (404 otherwise, as for a product that does not exist);
        ``variant_id``, when given, must be one of the product's variants."""
        product = access.reach(await self.catalog.product(product_id), "Product", Role.member)
        if variant_id is not None and not await self.repo.variant_exists(
            product.organization_id, product.id, variant_id
        ):
            raise Invalid("This variant is not one of this product's variants.", field="variant_id")
        return product.organization_id

    async def photo_organization(self, access: Access, asset_id: uuid.UUID) -> uuid.UUID:
        """The organization of a photo the caller reaches (404 otherwise)."""
        return access.reach(await self.repo.asset_in(access.organization_ids, asset_id), "Photo").organization_id

    async def add_photo(
        self,
        *,
        organization_id: uuid.UUID,
        product_id: uuid.UUID,
        data: bytes,
        filename: str | None,
        variant_id: uuid.UUID | None = None,
    ) -> Photo:
        """Check, normalise and store the photo with every rendition; it goes last in the product's order.

        The CPU work runs before the first query, so SQLite's write lock (taken at the transaction's first
        statement) is not held while the photo is decoded. Sending the same photo again returns the first one.
        """
        normalised, results = await ingest(data, filename, self.storage, self.rules, limits=self.limits)
        product = await self._locked_product(organization_id, product_id)
        if variant_id is not None and not await self.repo.variant_exists(organization_id, product_id, variant_id):
            raise NotFound("This variant does not exist on this product.")
        existing = await self.repo.same_photo(organization_id, product_id, variant_id, normalised.content_hash)
        if existing is not None:
            return await self._with_renditions(existing, results)
        asset = _new_asset(normalised, organization_id, product_id, variant_id)
        asset.position = await self.repo.next_position(product_id)
        self.repo.session.add(asset)
        await self.repo.session.flush()
        photo = await self._with_renditions(asset, results)
        await CatalogService(self.catalog, self.inventory).product_changed(product)
        return photo

    async def photos(self, *, organization_id: uuid.UUID, product_id: uuid.UUID) -> list[Photo]:
        """The product's photos in display order (the first is the main image everywhere)."""
        assets = await self.repo.product_assets(organization_id, product_id)
        renditions = await self.repo.renditions([asset.id for asset in assets])
        return [Photo(asset, {rendition.purpose: rendition for rendition in renditions[asset.id]}) for asset in assets]

    async def photos_of_products(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Photo]]:
        """Photos of products the caller has already been checked to reach (two queries for a whole page)."""
        assets = await self.repo.assets_of_products(product_ids)
        renditions = await self.repo.renditions([a.id for photos in assets.values() for a in photos])
        return {
            product_id: [Photo(a, {r.purpose: r for r in renditions[a.id]}) for a in product_assets]
            for product_id, product_assets in assets.items()
        }

    async def reorder(
        self, *, organization_id: uuid.UUID, product_id: uuid.UUID, asset_ids: Sequence[uuid.UUID]
    ) -> list[Photo]:
        """Put the product's photos in this order; the list must name each of them exactly once."""
        product = await self._locked_product(organization_id, product_id)
        assets = {asset.id: asset for asset in await self.repo.product_assets(organization_id, product_id)}
        if len(asset_ids) != len(set(asset_ids)) or set(asset_ids) != set(assets):
            raise Conflict(
                "The photo list has changed since this page was loaded. Reload the page and try again.",
                field="photo_ids",
            )
        if [asset.id for asset in assets.values()] != list(asset_ids):  # assets come in their current order
            for position, asset_id in enumerate(asset_ids):
                assets[asset_id].position = position
            await CatalogService(self.catalog, self.inventory).product_changed(product)
        return await self.photos(organization_id=organization_id, product_id=product_id)

    async def remove_photo(self, *, organization_id: uuid.UUID, asset_id: uuid.UUID) -> list[str]:
        """Delete the photo's rows; returns the storage keys nothing uses any more, to delete after commit."""
        asset = await self.repo.asset(organization_id, asset_id)
        if asset is None:
            raise NotFound(PHOTO_NOT_FOUND)
        product = await self._locked_product(organization_id, asset.product_id) if asset.product_id else None
        if product is not None and (asset := await self.repo.asset(organization_id, asset_id)) is None:
            raise NotFound(PHOTO_NOT_FOUND)  # removed by someone else while this request waited for the lock
        renditions = (await self.repo.renditions([asset.id]))[asset.id]
        await self.repo.delete_renditions(asset.id)
        await self.repo.session.delete(asset)
        await self.repo.session.flush()
        if product is not None:
            remaining = await self.repo.product_assets(organization_id, product.id)
            for position, other in enumerate(remaining):
                other.position = position
            await CatalogService(self.catalog, self.inventory).product_changed(product)
        if await self.repo.photo_in_use(asset.content_hash):
            return []  # the same photo is used elsewhere (same bytes, another product or farm)
        return [asset.storage_key, *(rendition.storage_key for rendition in renditions)]

    async def refresh_renditions(self, *, organization_id: uuid.UUID, asset_id: uuid.UUID) -> Photo:
        """Make any rendition the current rules lack for this photo (new channel, changed rule); reuse the rest."""
        asset = await self.repo.asset(organization_id, asset_id)
        if asset is None:
            raise NotFound(PHOTO_NOT_FOUND)
        current = {r.purpose: r for r in (await self.repo.renditions([asset.id]))[asset.id]}
        results = await render(asset, self.rules, self.storage, known=current)
        return await self._with_renditions(asset, results)

    async def _locked_product(self, organization_id: uuid.UUID, product_id: uuid.UUID) -> Product:
        """Row-locked and re-read: concurrent uploads cannot take the same position or lose a version bump."""
        product = await self.catalog.product(product_id, lock=True)
        if product is None or product.organization_id != organization_id:
            raise NotFound(PRODUCT_NOT_FOUND)
        return product

    async def _with_renditions(self, asset: MediaAsset, results: Iterable[RenditionResult]) -> Photo:
        """Rendition rows brought in line with ``results``: new ones added, outdated ones updated."""
        rows = {r.purpose: r for r in (await self.repo.renditions([asset.id]))[asset.id]}
        for result in results:
            row = rows.get(result.purpose)
            if row is None:
                row = Rendition(asset_id=asset.id, purpose=result.purpose)
                self.repo.session.add(row)
                rows[result.purpose] = row
            if row.storage_key != result.storage_key or row.content_hash != result.content_hash:
                row.source_hash = result.source_hash
                row.content_hash = result.content_hash
                row.storage_key = result.storage_key
                row.mime_type = result.mime_type
                row.width = result.width
                row.height = result.height
                row.byte_size = result.byte_size
        await self.repo.session.flush()
        return Photo(asset, rows)


def _new_asset(
    normalised: NormalisedImage,
    organization_id: uuid.UUID,
    product_id: uuid.UUID,
    variant_id: uuid.UUID | None,
) -> MediaAsset:
    return MediaAsset(
        organization_id=organization_id,
        product_id=product_id,
        variant_id=variant_id,
        content_hash=normalised.content_hash,
        storage_key=normalised.storage_key,
        mime_type=normalised.mime_type,
        width=normalised.width,
        height=normalised.height,
        byte_size=normalised.byte_size,
        original_filename=normalised.original_filename,
    )


def is_current(rendition: Rendition, asset: MediaAsset, rule: ImageRule) -> bool:
    """The rendition was made from this photo under this exact rule."""
    return rendition.storage_key == rendition_key(asset.content_hash, rule)


async def delete_blobs(storage: Storage, keys: Iterable[str]) -> None:
    """Delete stored files after the removing transaction committed; failures are logged, not raised."""
    for key in keys:
        try:
            await storage.delete(key)
        except Exception:
            log.warning("media.delete_failed", key=key, exc_info=True)
