"""All photo queries. Every read of an asset is scoped to its organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.models import MediaAsset, Rendition, Variant

# Every sync run's reads of the products it plans, built once: building a statement cost about as much as running it.
_ASSETS_OF_PRODUCTS = (
    select(MediaAsset)
    .where(MediaAsset.product_id.in_(bindparam("product_ids", expanding=True)))
    .order_by(MediaAsset.position, MediaAsset.created_at, MediaAsset.id)
)
_RENDITIONS = (
    select(Rendition).where(Rendition.asset_id.in_(bindparam("asset_ids", expanding=True))).order_by(Rendition.purpose)
)


class MediaRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def variant_exists(self, organization_id: uuid.UUID, product_id: uuid.UUID, variant_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            select(Variant.id).where(
                Variant.id == variant_id,
                Variant.product_id == product_id,
                Variant.organization_id == organization_id,
            )
        )
        return result.first() is not None

    async def asset(self, organization_id: uuid.UUID, asset_id: uuid.UUID) -> MediaAsset | None:
        result = await self.session.execute(
            select(MediaAsset).where(MediaAsset.id == asset_id, MediaAsset.organization_id == organization_id)
        )
        return result.scalar_one_or_none()

    async def asset_in(self, organization_ids: Sequence[uuid.UUID], asset_id: uuid.UUID) -> MediaAsset | None:
        """The asset, if it belongs to one of these organizations (those a caller reaches)."""
        if not organization_ids:
            return None
        result = await self.session.execute(
            select(MediaAsset).where(MediaAsset.id == asset_id, MediaAsset.organization_id.in_(organization_ids))
        )
        return result.scalar_one_or_none()

    async def assets_of_products(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[MediaAsset]]:
        """Photos of many products at once (a page of a product list), each product's in display order."""
        found: dict[uuid.UUID, list[MediaAsset]] = {product_id: [] for product_id in product_ids}
        if not product_ids:
            return found
        result = await self.session.execute(_ASSETS_OF_PRODUCTS, {"product_ids": list(product_ids)})
        for asset in result.scalars():
            if asset.product_id is not None:
                found[asset.product_id].append(asset)
        return found

    async def product_assets(self, organization_id: uuid.UUID, product_id: uuid.UUID) -> list[MediaAsset]:
        result = await self.session.execute(
            select(MediaAsset)
            .where(MediaAsset.organization_id == organization_id, MediaAsset.product_id == product_id)
            .order_by(MediaAsset.position, MediaAsset.created_at, MediaAsset.id)
        )
        return list(result.scalars())

    async def same_photo(
        self,
        organization_id: uuid.UUID,
        product_id: uuid.UUID,
        variant_id: uuid.UUID | None,
        content_hash: str,
    ) -> MediaAsset | None:
        """This product (and variant) already has this exact photo: a repeated upload."""
        variant = MediaAsset.variant_id.is_(None) if variant_id is None else MediaAsset.variant_id == variant_id
        result = await self.session.execute(
            select(MediaAsset)
            .where(
                MediaAsset.organization_id == organization_id,
                MediaAsset.product_id == product_id,
                variant,
                MediaAsset.content_hash == content_hash,
            )
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def next_position(self, product_id: uuid.UUID) -> int:
        result = await self.session.execute(
            select(func.max(MediaAsset.position)).where(MediaAsset.product_id == product_id)
        )
        highest = result.scalar_one_or_none()
        return 0 if highest is None else highest + 1

    async def renditions(self, asset_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Rendition]]:
        found: dict[uuid.UUID, list[Rendition]] = {asset_id: [] for asset_id in asset_ids}
        if not asset_ids:
            return found
        result = await self.session.execute(_RENDITIONS, {"asset_ids": list(asset_ids)})
        for rendition in result.scalars():
            found[rendition.asset_id].append(rendition)
        return found

    async def delete_renditions(self, asset_id: uuid.UUID) -> None:
        await self.session.execute(delete(Rendition).where(Rendition.asset_id == asset_id))

    async def photo_in_use(self, content_hash: str) -> bool:
        """Any asset, of any organization, still uses this stored photo (storage is shared by content)."""
        result = await self.session.execute(
            select(MediaAsset.id).where(MediaAsset.content_hash == content_hash).limit(1)
        )
        return result.first() is not None
