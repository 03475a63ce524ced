"""The reference marketplace's rules: what each API operation accepts, refuses and changes in a shop's state.

Each function checks everything before it changes anything, and refuses the way a strict platform does: a batch
over the declared size or mixing items, an unknown item, a title over the limit, in its own words.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from agrimarket.channels.base import (
    BatchLimit,
    BatchResult,
    Capabilities,
    EntryFailure,
    Feature,
    ListingDraft,
    OrderPage,
    OrderRef,
    PriceUpdate,
    PublishResult,
    Shipment,
    StockUpdate,
)
from agrimarket.channels.errors import ChannelNotFound, Rejected
from agrimarket.channels.reference.market import Shop
from agrimarket.channels.reference.state import Item, Order, ShopState, Sku

ORDER_PAGE_SIZE = 2


def _refused(message: str, code: str, field: str | None = None) -> Rejected:
    return Rejected(message, code=code, status=400, field=field)


def _require(capabilities: Capabilities, feature: Feature) -> None:
    if not capabilities.supports(feature):
        raise _refused(f"This shop does not support {feature.value}.", "unsupported_operation")


def _check_listing(state: ShopState, draft: ListingDraft, capabilities: Capabilities) -> None:
    limits = capabilities.limits
    title = draft.title.strip()
    if not limits.title_min <= len(title) <= limits.title_max:
        raise _refused(
            f"Product name length should be between {limits.title_min} and {limits.title_max} characters "
            f"(got {len(title)}).",
            "title_length_invalid",
            "title",
        )
    for rule in state.banned_titles:
        if rule.text.casefold() in title.casefold():
            raise _refused(rule.message, "title_prohibited", "title")
    if len(draft.description) > limits.description_max:
        raise _refused(
            f"Description must be at most {limits.description_max} characters (got {len(draft.description)}).",
            "description_too_long",
            "description",
        )
    for name in sorted(capabilities.required_fields):
        if not _has(draft, name):
            raise _refused(f"The field {name} is required.", "required_field_missing", name)
    _check_images(draft, capabilities)
    _check_variants(draft, capabilities)


def _has(draft: ListingDraft, name: str) -> bool:
    if name.startswith("attributes."):
        return bool(draft.attributes.get(name.removeprefix("attributes.")))
    present = {
        "category": bool(draft.category),
        "description": bool(draft.description.strip()),
        "images": bool(draft.images),
        "weight": all(variant.weight_grams > 0 for variant in draft.variants),
    }
    return present.get(name, True)


def _check_images(draft: ListingDraft, capabilities: Capabilities) -> None:
    limits = capabilities.limits
    if not limits.images_min <= len(draft.images) <= limits.images_max:
        raise _refused(
            f"A product takes {limits.images_min} to {limits.images_max} images (got {len(draft.images)}).",
            "image_count_invalid",
            "images",
        )
    if not capabilities.supports(Feature.image_upload) and any(image.url is None for image in draft.images):
        raise _refused("Images must be given by a public URL.", "image_url_required", "images")


def _check_variants(draft: ListingDraft, capabilities: Capabilities) -> None:
    limits = capabilities.limits
    count = len(draft.variants)
    most = limits.variants_max if capabilities.supports(Feature.variants) else 1
    if not 1 <= count <= most:
        raise _refused(f"A product takes 1 to {most} models (got {count}).", "model_count_invalid", "variants")
    skus = [variant.sku for variant in draft.variants]
    if len(set(skus)) != len(skus):
        raise _refused("Two models of a product have the same SKU.", "model_sku_duplicate", "sku")
    for variant in draft.variants:
        if not 1 <= len(variant.sku) <= limits.sku_max:
            raise _refused(f"SKU {variant.sku!r} must be 1 to {limits.sku_max} characters.", "sku_invalid", "sku")
        if not max(limits.price_min_vnd, 1) <= variant.price_vnd <= limits.price_max_vnd:
            raise _refused(
                f"Price of {variant.sku} must be between {limits.price_min_vnd} and {limits.price_max_vnd} VND.",
                "price_invalid",
                "price_vnd",
            )
        if not 0 <= variant.stock <= limits.stock_max:
            raise _refused(
                f"Stock of {variant.sku} must be between 0 and {limits.stock_max}.", "stock_invalid", "stock"
            )


def publish(
    shop: Shop, state: ShopState, draft: ListingDraft, capabilities: Capabilities, touched: list[str]
) -> PublishResult:
    """Create the item or bring it up to date. Models are matched by the seller's SKU; models the draft leaves
    out are left as they are. Images are uploaded once per content hash, ever."""
    _check_listing(state, draft, capabilities)
    item = state.items.get(draft.external_item_id) if draft.external_item_id else None
    if draft.external_item_id and item is None:
        raise ChannelNotFound(f"Item {draft.external_item_id} does not exist.", code="item_not_found", status=404)
    if draft.external_item_id:
        touched.append(draft.external_item_id)
    image_ids: list[str] = []
    uploaded: dict[str, str] = {}
    for image in draft.images:
        if not capabilities.supports(Feature.image_upload):
            image_ids.append(image.url or "")
            continue
        image_id = uploaded[image.content_hash] = shop.upload_image(state, image, touched)
        image_ids.append(image_id)
    if item is None:
        item = Item(str(state.new_id()), "", "", None, {}, [], {})
        state.items[item.external_item_id] = item
        touched.append(item.external_item_id)
    item.title, item.description, item.category = draft.title.strip(), draft.description, draft.category
    item.attributes, item.image_ids, item.status = dict(draft.attributes), image_ids, "live"
    by_sku = {sku.sku: sku for sku in item.skus.values()}
    for variant in draft.variants:
        sku = by_sku.get(variant.sku)
        if sku is None:
            sku = Sku(str(state.new_id()), variant.sku, "", 0, 0, 0)
            item.skus[sku.external_sku_id] = sku
        sku.name, sku.price_vnd, sku.stock, sku.weight_grams = (
            variant.name,
            variant.price_vnd,
            variant.stock,
            variant.weight_grams,
        )
        by_sku[variant.sku] = sku
    return PublishResult(
        external_item_id=item.external_item_id,
        external_sku_ids={variant.sku: by_sku[variant.sku].external_sku_id for variant in draft.variants},
        uploaded_images=uploaded,
    )


def _check_batch(state: ShopState, item_ids: Sequence[str], limit: BatchLimit) -> None:
    if len(item_ids) > limit.max_size:
        raise _refused(f"A request takes at most {limit.max_size} entries (got {len(item_ids)}).", "batch_too_large")
    if limit.per_item and len(set(item_ids)) > 1:
        raise _refused("All entries of a request must belong to one item.", "batch_mixes_items")
    if limit.per_item and item_ids and item_ids[0] not in state.items:
        raise ChannelNotFound(f"Item {item_ids[0]} does not exist.", code="item_not_found", status=404)


def _sku(state: ShopState, item_id: str, sku_id: str) -> Sku | ChannelNotFound:
    item = state.items.get(item_id)
    if item is None:
        return ChannelNotFound(f"Item {item_id} does not exist.", code="item_not_found", status=404)
    sku = item.skus.get(sku_id)
    if sku is None:
        return ChannelNotFound(f"Model {sku_id} of item {item_id} does not exist.", code="model_not_found", status=404)
    return sku


def set_stock(state: ShopState, updates: Sequence[StockUpdate], capabilities: Capabilities) -> BatchResult:
    """Absolute quantities. An entry the shop cannot take fails on its own; the others are applied."""
    _check_batch(state, [update.external_item_id for update in updates], capabilities.stock_batch)
    most = capabilities.limits.stock_max
    failures: list[EntryFailure] = []
    changes: list[tuple[Sku, int]] = []
    for update in updates:
        found = _sku(state, update.external_item_id, update.external_sku_id)
        if isinstance(found, ChannelNotFound):
            failures.append(EntryFailure(update.sku, found))
        elif not 0 <= update.quantity <= most:
            error = _refused(f"Stock must be between 0 and {most} (got {update.quantity}).", "stock_invalid", "stock")
            failures.append(EntryFailure(update.sku, error))
        else:
            changes.append((found, update.quantity))
    for sku, quantity in changes:
        sku.stock = quantity
    return BatchResult(failures)


def set_prices(state: ShopState, updates: Sequence[PriceUpdate], capabilities: Capabilities) -> BatchResult:
    _require(capabilities, Feature.price_update)
    _check_batch(state, [update.external_item_id for update in updates], capabilities.price_batch)
    limits = capabilities.limits
    failures: list[EntryFailure] = []
    changes: list[tuple[Sku, int]] = []
    for update in updates:
        found = _sku(state, update.external_item_id, update.external_sku_id)
        if isinstance(found, ChannelNotFound):
            failures.append(EntryFailure(update.sku, found))
        elif not max(limits.price_min_vnd, 1) <= update.price_vnd <= limits.price_max_vnd:
            message = f"Price must be between {limits.price_min_vnd} and {limits.price_max_vnd} VND."
            failures.append(EntryFailure(update.sku, _refused(message, "price_invalid", "price_vnd")))
        else:
            changes.append((found, update.price_vnd))
    for sku, price in changes:
        sku.price_vnd = price
    return BatchResult(failures)


def delist(state: ShopState, external_item_id: str, capabilities: Capabilities) -> None:
    _require(capabilities, Feature.delist)
    item = state.items.get(external_item_id)
    if item is None:
        raise ChannelNotFound(f"Item {external_item_id} does not exist.", code="item_not_found", status=404)
    item.status = "unlisted"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _cursor(order: Order) -> str:
    return base64.urlsafe_b64encode(json.dumps([order.updated_at.isoformat(), order.external_id]).encode()).decode()


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        moment, order_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return _utc(datetime.fromisoformat(moment)), str(order_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _refused("The cursor is not one this shop gave.", "cursor_invalid") from exc


def list_orders(
    state: ShopState, since: datetime, until: datetime, cursor: str | None, capabilities: Capabilities
) -> OrderPage:
    """Orders updated in [since, until), oldest change first, a page at a time."""
    _require(capabilities, Feature.order_polling)
    since, until = _utc(since), _utc(until)
    matching = sorted(
        (order for order in state.orders.values() if since <= order.updated_at < until),
        key=lambda order: (order.updated_at, order.external_id),
    )
    if cursor is not None:
        after = _after(cursor)
        matching = [order for order in matching if (order.updated_at, order.external_id) > after]
    page = matching[:ORDER_PAGE_SIZE]
    more = len(matching) > ORDER_PAGE_SIZE
    return OrderPage(
        [OrderRef(order.external_id, order.updated_at) for order in page],
        _cursor(page[-1]) if more else None,
    )


def _order(state: ShopState, external_id: str) -> Order:
    order = state.orders.get(external_id)
    if order is None:
        raise ChannelNotFound(f"Order {external_id} does not exist.", code="order_not_found", status=404)
    return order


def _moved(order: Order, status: str) -> None:
    order.status = status
    order.updated_at = datetime.now(UTC)
    order.version += 1


def ship(state: ShopState, external_id: str, shipment: Shipment, capabilities: Capabilities) -> None:
    _require(capabilities, Feature.fulfilment)
    order = _order(state, external_id)
    if order.status != "READY_TO_SHIP":
        raise _refused(f"Order {external_id} cannot be shipped in status {order.status}.", "order_status_invalid")
    order.tracking_number = shipment.tracking_number or f"RFT{state.new_id()}"
    order.carrier = shipment.carrier or "Reference Express"
    _moved(order, "SHIPPED")


def cancel(state: ShopState, external_id: str, reason: str, capabilities: Capabilities) -> None:
    _require(capabilities, Feature.fulfilment)
    order = _order(state, external_id)
    if order.status not in ("UNPAID", "READY_TO_SHIP"):
        raise _refused(f"Order {external_id} cannot be cancelled in status {order.status}.", "order_status_invalid")
    order.cancel_reason = reason
    _moved(order, "CANCELLED")
