"""What a shop should show for one product, compared with what it was last told: the engine's pure part.

``plan_product`` reads the catalogue, stock, photos and the listing's overrides and decides, per listing row,
what must go out: a full publish (new item, or content changed), a price, a stock quantity, a delist, or
nothing (ten changes that end where they started cost no call). No I/O here, so the rules are easy to test.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agrimarket.channels.base import Capabilities, VariantDraft
from agrimarket.channels.rules import ListingOverrides
from agrimarket.models import (
    ChannelConnection,
    Listing,
    ListingStatus,
    MediaAsset,
    Product,
    ProductStatus,
    Rendition,
    StockLevel,
    Variant,
)


class Action(StrEnum):
    publish = "publish"
    stock = "stock"
    price = "price"
    delist = "delist"


@dataclass(frozen=True, slots=True)
class Image:
    """A photo as this channel should get it: the channel's rendition, or the normalised photo itself."""

    content_hash: str
    storage_key: str
    mime_type: str
    width: int
    height: int


@dataclass
class RowPlan:
    """One listing row (a variant on this shop) and what this run still owes it."""

    listing_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    read_version: int
    state: dict[str, Any]  # what the channel has, as far as we know (``Listing.pushed_state``)
    pending: set[Action]
    status: ListingStatus
    message: str | None
    external_item_id: str | None
    external_sku_id: str | None
    price_vnd: int
    stock: int
    active: bool  # False: an archived variant, kept at 0 on the channel

    @property
    def done(self) -> bool:
        return not self.pending

    def values(self) -> dict[str, Any]:
        return {
            "pushed_state": dict(self.state),
            "status": self.status,
            "channel_message": self.message,
            "external_item_id": self.external_item_id,
            "external_sku_id": self.external_sku_id,
        }


@dataclass
class ProductPlan:
    product: Product
    rows: list[RowPlan]
    content: str  # fingerprint of everything a publish sends except price and stock
    title: str
    description: str
    category: str | None
    attributes: Mapping[str, str]
    images: list[Image] = field(default_factory=list)
    action: Action | None = None  # publish or delist for the product as a whole; else per row

    @property
    def external_item_id(self) -> str | None:
        return next((r.external_item_id for r in self.rows if r.external_item_id), None)

    @property
    def uploaded_images(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for row in self.rows:
            merged.update(row.state.get("images") or {})
        return merged

    def variant_drafts(self, variants: Mapping[uuid.UUID, Variant]) -> list[VariantDraft]:
        return [
            VariantDraft(
                sku=row.sku,
                name=variants[row.variant_id].name,
                price_vnd=row.price_vnd,
                stock=row.stock,
                weight_grams=variants[row.variant_id].weight_grams,
                unit=variants[row.variant_id].unit.value,
                external_sku_id=row.external_sku_id,
            )
            for row in self.rows
            if row.active
        ]


def channel_images(
    assets: Sequence[MediaAsset], renditions: Mapping[uuid.UUID, Sequence[Rendition]], purpose: str | None
) -> list[Image]:
    images: list[Image] = []
    for asset in assets:
        chosen = next((r for r in renditions.get(asset.id, ()) if r.purpose == purpose), None) if purpose else None
        if chosen is not None:
            images.append(Image(chosen.content_hash, chosen.storage_key, chosen.mime_type, chosen.width, chosen.height))
        else:
            images.append(Image(asset.content_hash, asset.storage_key, asset.mime_type, asset.width, asset.height))
    return images


def _fingerprint(value: Any) -> str:
    payload = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def plan_product(
    *,
    capabilities: Capabilities,
    connection: ChannelConnection,
    product: Product,
    variants: Sequence[Variant],
    rows: Sequence[Listing],
    levels: Mapping[uuid.UUID, StockLevel],
    images: Sequence[Image],
) -> ProductPlan:
    """Decide what this product's listing rows need. ``rows`` are every row of the product on this shop."""
    overrides = ListingOverrides.of(rows[0].overrides if rows else None)
    by_variant = {v.id: v for v in variants}
    category_map: Mapping[str, str] = (connection.settings or {}).get("category_map") or {}
    title = overrides.title or product.name
    description = overrides.description if overrides.description is not None else product.description
    category = overrides.category or category_map.get(product.category.value)
    on_sale = product.status is ProductStatus.active
    status_of_product = _product_status(rows)

    plans: list[RowPlan] = []
    for row in rows:
        variant = by_variant[row.variant_id]
        level = levels.get(variant.id)
        available = level.on_hand - level.reserved if level is not None else 0
        active = variant.archived_at is None
        offered = on_sale and active and status_of_product is not ListingStatus.paused
        plans.append(
            RowPlan(
                listing_id=row.id,
                variant_id=variant.id,
                sku=variant.sku,
                read_version=row.desired_version,
                state=dict(row.pushed_state or {}),
                pending=set(),
                status=row.status,
                message=row.channel_message,
                external_item_id=row.external_item_id,
                external_sku_id=row.external_sku_id,
                price_vnd=overrides.price_rule.apply(variant.price_vnd),
                stock=overrides.stock_rule.apply(available, channel_max=capabilities.limits.stock_max)
                if offered
                else 0,
                active=active,
            )
        )
    content = _fingerprint(
        {
            "title": title,
            "description": description,
            "category": category,
            "attributes": dict(overrides.attributes),
            "images": [i.content_hash for i in images],
            "variants": [
                (
                    p.sku,
                    by_variant[p.variant_id].name,
                    by_variant[p.variant_id].weight_grams,
                    by_variant[p.variant_id].unit.value,
                )
                for p in plans
                if p.active
            ],
            "harvest_date": product.harvest_date,
            "shelf_life_days": product.shelf_life_days,
        }
    )
    plan = ProductPlan(product, plans, content, title, description, category, overrides.attributes, list(images))

    if status_of_product is ListingStatus.delisted:
        if plan.external_item_id is not None and not all(p.state.get("delisted") for p in plans):
            plan.action = Action.delist
            for p in plans:
                p.pending.add(Action.delist)
        return plan

    active_rows = [p for p in plans if p.active]
    needs_publish = bool(active_rows) and (
        any(p.external_item_id is None or p.external_sku_id is None for p in active_rows)
        or any(p.state.get("content") != content for p in active_rows)
        or any(p.state.get("delisted") for p in active_rows)
    )
    if needs_publish:
        plan.action = Action.publish
        for p in active_rows:
            p.pending.add(Action.publish)
    for p in plans:
        if Action.publish in p.pending or p.external_sku_id is None:
            continue
        if p.state.get("stock") != p.stock:
            p.pending.add(Action.stock)
        if p.active and p.state.get("price_vnd") != p.price_vnd:
            p.pending.add(Action.price)
    return plan


def _product_status(rows: Sequence[Listing]) -> ListingStatus | None:
    """The listing's own state as the API set it: delisted and paused apply to the whole product."""
    statuses = {row.status for row in rows}
    for status in (ListingStatus.delisted, ListingStatus.paused):
        if status in statuses:
            return status
    return None
