"""Order rules. Never commits: the job or the request owns the transaction.

Ingest turns a marketplace's order (re-fetched, never taken from a push) into ours: the order upserted by
(connection, external id) under a row lock, its lines mapped to our variants, the status moved only forward, and
the stock effects of the move applied exactly once each, by deterministic movement references.

Stock effects, per line with a known variant (references ``order:<order id>:<line id>:<effect>``):

- **reserve** when the order is first seen live: ``unpaid``, ``paid`` or ``ready_to_ship``. Unpaid orders reserve
  too: Shopee and Lazada take the unit off sale for an unpaid buyer, so if we did not hold it another channel could
  sell it; an unpaid order that lapses is cancelled by the platform and its hold is released.
- **sale** when it reaches ``shipped``, ``delivered`` or ``completed``: the held quantity (and, for an order first
  seen already shipped, what is available) leaves ``on_hand``.
- **release** when a live order is cancelled or returned before it shipped: the hold goes back to available.
- **return** when a shipped order comes back (``returned``): what left stock is on hand again. A shipped order
  later ``cancelled`` (a parcel the carrier lost) gives nothing back: the goods are gone.

What stock cannot cover is recorded on the line (``oversold_quantity``) and flags the order (``oversold``); stock
never goes below zero and the channels are only ever told absolute quantities of zero or more.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone
from enum import StrEnum
from typing import Any

from agrimarket.accounts.permissions import Access
from agrimarket.channels.base import ChannelOrder, ChannelOrderLine
from agrimarket.errors import Conflict
from agrimarket.inventory.service import InventoryService, StockChange
from agrimarket.kit.pagination import Cursor
from agrimarket.models import ChannelConnection, Order, OrderLine, OrderStatus, Role, utcnow
from agrimarket.observability import get_logger
from agrimarket.orders.repository import OrderRepository
from agrimarket.payments.holds import make_room

log = get_logger(__name__)

LIVE = frozenset({OrderStatus.unpaid, OrderStatus.paid, OrderStatus.ready_to_ship})
SOLD = frozenset({OrderStatus.shipped, OrderStatus.delivered, OrderStatus.completed})
TERMINAL = frozenset({OrderStatus.cancelled, OrderStatus.returned})
RANK: Mapping[OrderStatus, int] = {
    OrderStatus.unpaid: 0,
    OrderStatus.paid: 1,
    OrderStatus.ready_to_ship: 2,
    OrderStatus.shipped: 3,
    OrderStatus.delivered: 4,
    OrderStatus.completed: 5,
    OrderStatus.cancelled: 6,
    OrderStatus.returned: 6,
}
# Dates in filters are the farmer's calendar days.
VIETNAM = timezone(timedelta(hours=7))


def next_status(current: OrderStatus | None, incoming: OrderStatus) -> OrderStatus:
    """Forward only: a higher rank wins; cancelled and returned are terminal and end every other status."""
    if current is None:
        return incoming
    if current in TERMINAL:
        return current
    if incoming in TERMINAL or RANK[incoming] > RANK[current]:
        return incoming
    return current


class Stage(StrEnum):
    """What a line's stock has been through, as its order's status says."""

    none = "none"  # nothing applied yet
    held = "held"  # reserved
    sold = "sold"  # left on_hand
    closed = "closed"  # cancelled or returned: nothing more happens


def stage_of(status: OrderStatus | None) -> Stage:
    if status is None:
        return Stage.none
    if status in LIVE:
        return Stage.held
    if status in SOLD:
        return Stage.sold
    return Stage.closed


class Effect(StrEnum):
    reserve = "reserve"
    sale = "sale"
    release = "release"
    return_ = "return"


def effect_of(stage: Stage, target: OrderStatus) -> Effect | None:
    """The one stock effect that takes a line from ``stage`` to what ``target`` means, if any."""
    if stage is Stage.closed:
        return None
    if target in LIVE:
        return Effect.reserve if stage is Stage.none else None
    if target in SOLD:
        return Effect.sale if stage in (Stage.none, Stage.held) else None
    if stage is Stage.held:
        return Effect.release
    if stage is Stage.sold and target is OrderStatus.returned:
        return Effect.return_
    return None


def reference(order_id: uuid.UUID, line_id: uuid.UUID, effect: Effect) -> str:
    return f"order:{order_id}:{line_id}:{effect.value}"


@dataclass(frozen=True)
class LineEffect:
    line_id: uuid.UUID
    variant_id: uuid.UUID
    effect: Effect
    reference: str
    applied: int
    short: int
    replayed: bool


@dataclass
class IngestResult:
    """What one ingest did. ``status`` is the order's status after it (a stale status leaves it unchanged)."""

    order: Order
    lines: list[OrderLine]
    created: bool
    previous_status: OrderStatus | None
    status: OrderStatus
    effects: list[LineEffect] = field(default_factory=list)
    unknown_skus: list[str] = field(default_factory=list)

    @property
    def status_changed(self) -> bool:
        return self.previous_status != self.status

    @property
    def oversold(self) -> bool:
        return self.order.oversold


@dataclass
class _Plan:
    result: IngestResult
    target: OrderStatus
    effects: list[tuple[OrderLine, Effect]]
    fresh: list[OrderLine]  # new lines: not in the session, inserted once their stock effects are known


@dataclass(frozen=True)
class OrderRow:
    order: Order
    channel: str
    unknown_sku: bool


@dataclass(frozen=True)
class OrderView:
    order: Order
    channel: str
    lines: list[OrderLine]

    @property
    def unknown_sku(self) -> bool:
        return any(line.unknown_sku for line in self.lines)


@dataclass(frozen=True)
class OrderFilters:
    status: OrderStatus | None = None
    channel: str | None = None
    connection_id: uuid.UUID | None = None
    placed_from: datetime | None = None
    placed_before: datetime | None = None
    oversold: bool | None = None
    unknown_sku: bool | None = None


def day_start(day: Any) -> datetime:
    """The first instant of a calendar day in Vietnam, in UTC."""
    return datetime.combine(day, time.min, tzinfo=VIETNAM).astimezone(UTC)


class OrderService:
    def __init__(self, repository: OrderRepository, inventory: InventoryService) -> None:
        self.repo = repository
        self.inventory = inventory

    # -- ingest ---------------------------------------------------------------------------------------------

    async def ingest(self, connection: ChannelConnection, channel_order: ChannelOrder) -> IngestResult:
        """Upsert one order from ``connection``'s marketplace and apply its stock effects, in the caller's
        transaction. Safe to repeat and to run twice at once: the second sees the first's work and adds none."""
        [result] = await self.ingest_many(connection, [channel_order])
        return result

    async def ingest_many(
        self, connection: ChannelConnection, channel_orders: Sequence[ChannelOrder]
    ) -> list[IngestResult]:
        """:meth:`ingest` for several orders of one shop at once (the inbox drain, reconciliation): the SKU
        lookups are batched and the rows locked in one order, orders before stock levels, as everywhere else."""
        latest: dict[str, ChannelOrder] = {}
        for channel_order in channel_orders:  # the same order twice in a batch: its latest state
            seen = latest.get(_external_id(channel_order))
            if seen is None or channel_order.updated_at >= seen.updated_at:
                latest[_external_id(channel_order)] = channel_order
        ordered = [latest[key] for key in sorted(latest)]
        if not ordered:
            return []
        now = utcnow()
        created = await self.repo.insert_orders_if_absent(
            [_new_order_values(connection, channel_order, now) for channel_order in ordered]
        )
        orders = await self.repo.orders_for_update(connection.id, sorted(latest))
        # An order this call made has no lines yet: only the others' are read.
        lines_of = await self.repo.lines([order.id for key, order in orders.items() if key not in created])
        variants = await self._variants_for(connection, [line for o in ordered for line in o.lines])
        plans = [
            self._plan(
                orders[_external_id(channel_order)],
                lines_of.get(orders[_external_id(channel_order)].id, []),
                channel_order,
                variants,
                created=_external_id(channel_order) in created,
            )
            for channel_order in ordered
        ]
        # The stock levels locked after the orders, as everywhere else; read with the references once (a new
        # line's references name a line id made just now: none can have been applied).
        fresh = {line.id for plan in plans for line in plan.fresh}
        references = [
            (reference(plan.result.order.id, line.id, effect), line.id in fresh)
            for plan in plans
            for line, effect in plan.effects
        ]
        await self.inventory.begin_batch(
            [line.variant_id for plan in plans for line in plan.result.lines if line.variant_id is not None],
            [ref for ref, _new in references],
            unapplied=[ref for ref, new in references if new],
        )
        results = [await self._carry_out(plan) for plan in plans]
        await self.inventory.end_batch()
        # New lines are written once, as their stock effects left them (one statement for the batch).
        await self.repo.insert_lines([line for plan in plans for line in plan.fresh])
        await self.repo.flush()
        return results

    def _plan(
        self,
        order: Order,
        lines: list[OrderLine],
        channel_order: ChannelOrder,
        variants: Mapping[tuple[str | None, str | None, str | None], uuid.UUID | None],
        *,
        created: bool,
    ) -> _Plan:
        """What one ingest changes, before any stock moves: the order's fields, its new lines (added, not yet
        flushed), its target status and each line's stock effect."""
        previous = None if created else order.status
        result = IngestResult(order, lines, created=created, previous_status=previous, status=order.status)
        if previous is not None and (
            order.remote_updated_at is None or channel_order.updated_at >= order.remote_updated_at
        ):
            order.total_vnd = channel_order.total_vnd
            order.shipping_fee_vnd = channel_order.shipping_fee_vnd
            order.buyer_name = _clip(channel_order.buyer_name, 200)
            order.remote_updated_at = channel_order.updated_at
            order.raw = _json(channel_order.raw)
        target = next_status(previous, channel_order.status)
        # Lines already here went through what the order's old status means; a line new to us, through nothing.
        stage = stage_of(previous)
        known = {line.external_line_id: line for line in lines}
        fresh: list[OrderLine] = []
        for channel_line in channel_order.lines:
            line_id = _clip(channel_line.external_line_id, 100)
            if line_id in known:
                continue
            variant_id = variants.get(_key(channel_line))
            line = OrderLine(
                id=uuid.uuid4(),
                order_id=order.id,
                variant_id=variant_id,
                external_line_id=line_id,
                sku=_clip(channel_line.sku, 64) or "",
                name=_clip(channel_line.name, 300) or (channel_line.sku or ""),
                quantity=channel_line.quantity,
                unit_price_vnd=channel_line.unit_price_vnd,
                unknown_sku=variant_id is None,
                reserved_quantity=0,
                oversold_quantity=0,
            )
            fresh.append(line)
            lines.append(line)
            known[line_id] = line
            if variant_id is None:
                result.unknown_skus.append(channel_line.sku or "(no SKU)")
        new_ids = {line.id for line in fresh}
        effects: list[tuple[OrderLine, Effect]] = []
        for line in sorted(lines, key=lambda x: (str(x.variant_id), str(x.id))):
            if line.variant_id is None or line.quantity <= 0:
                continue
            effect = effect_of(Stage.none if line.id in new_ids else stage, target)
            if effect is not None:
                effects.append((line, effect))
        return _Plan(result, target, effects, fresh)

    async def _carry_out(self, plan: _Plan) -> IngestResult:
        """Apply a planned ingest's stock effects (the levels locked) and move the order to its status."""
        result, order = plan.result, plan.result.order
        for line, effect in plan.effects:
            assert line.variant_id is not None
            result.effects.append(await self._apply(order, line, line.variant_id, effect))
        order.status = plan.target
        order.oversold = any(line.oversold_quantity > 0 for line in result.lines)
        result.status = plan.target
        if result.unknown_skus:
            log.warning(
                "order_unknown_sku", order_id=str(order.id), external_id=order.external_id, skus=result.unknown_skus
            )
        if result.effects and any(e.short for e in result.effects):
            log.warning("order_oversold", order_id=str(order.id), external_id=order.external_id)
        return result

    async def _apply(self, order: Order, line: OrderLine, variant_id: uuid.UUID, effect: Effect) -> LineEffect:
        ref = reference(order.id, line.id, effect)
        reason = f"Order {order.external_id}"
        change: StockChange
        if effect in (Effect.reserve, Effect.sale):
            # Stock an open storefront checkout holds gives way to an order (agrimarket.payments.holds).
            needed = line.quantity - (line.reserved_quantity if effect is Effect.sale else 0)
            await make_room(self.repo.session, self.inventory, variant_id, needed, ref)
        if effect is Effect.reserve:
            change = await self.inventory.reserve(variant_id, line.quantity, reference=ref, reason=reason)
            line.reserved_quantity = change.applied
            line.oversold_quantity = change.short
        elif effect is Effect.sale:
            change = await self.inventory.commit_sale(
                variant_id, line.quantity, reference=ref, from_reserved=line.reserved_quantity, reason=reason
            )
            line.reserved_quantity = 0
            line.oversold_quantity = change.short
        elif effect is Effect.release:
            if line.reserved_quantity <= 0:
                return LineEffect(line.id, variant_id, effect, ref, 0, 0, replayed=False)
            change = await self.inventory.release(variant_id, line.reserved_quantity, reference=ref, reason=reason)
            line.reserved_quantity = 0
        else:
            back = line.quantity - line.oversold_quantity  # what actually left our stock
            if back <= 0:
                return LineEffect(line.id, variant_id, effect, ref, 0, 0, replayed=False)
            change = await self.inventory.restock(variant_id, back, reference=ref, reason=reason)
        return LineEffect(line.id, variant_id, effect, ref, change.applied, change.short, change.replayed)

    async def _variants_for(
        self, connection: ChannelConnection, lines: Sequence[ChannelOrderLine]
    ) -> dict[tuple[str | None, str | None, str | None], uuid.UUID | None]:
        """Each line's variant: the shop's listing with the platform's SKU id (and item id, when both sides
        have one), else our SKU, case-insensitively, in the shop's organization; else None (unknown)."""
        sku_ids = sorted({line.external_sku_id for line in lines if line.external_sku_id})
        listed = await self.repo.listed_variants(connection.id, sku_ids)
        by_item_sku = {(item, sku): variant for item, sku, variant in listed if item is not None}
        by_sku: dict[str, set[uuid.UUID]] = {}
        for _item, sku, listed_variant in listed:
            by_sku.setdefault(sku, set()).add(listed_variant)
        ours = await self.repo.variants_by_sku(
            connection.organization_id, sorted({line.sku for line in lines if line.sku})
        )
        found: dict[tuple[str | None, str | None, str | None], uuid.UUID | None] = {}
        for line in lines:
            key = _key(line)
            variant: uuid.UUID | None = None
            if line.external_sku_id:
                variant = (
                    by_item_sku.get((line.external_item_id, line.external_sku_id)) if line.external_item_id else None
                )
                candidates = by_sku.get(line.external_sku_id, set())
                if variant is None and len(candidates) == 1:
                    variant = next(iter(candidates))
            if variant is None and line.sku:
                variant = ours.get(line.sku.lower())
            found[key] = variant
        return found

    # -- moves made here (fulfilment) -----------------------------------------------------------------------

    async def advance(
        self, order_id: uuid.UUID, status: OrderStatus, *, tracking_number: str | None = None
    ) -> IngestResult:
        """Move an order on after the marketplace accepted our ship or cancel, with the same stock effects as an
        ingest of that status."""
        order = await self.repo.order_for_update(order_id)
        if order is None:
            raise Conflict("The order was removed meanwhile.")
        lines = (await self.repo.lines([order.id]))[order.id]
        await self.repo.lock_levels([line.variant_id for line in lines if line.variant_id is not None])
        result = IngestResult(order, lines, created=False, previous_status=order.status, status=order.status)
        target = next_status(order.status, status)
        stage = stage_of(order.status)
        for line in sorted(lines, key=lambda x: (str(x.variant_id), str(x.id))):
            if line.variant_id is None or line.quantity <= 0:
                continue
            effect = effect_of(stage, target)
            if effect is not None:
                result.effects.append(await self._apply(order, line, line.variant_id, effect))
        if tracking_number:
            order.tracking_number = tracking_number[:100]
        order.status = target
        order.oversold = any(line.oversold_quantity > 0 for line in lines)
        result.status = target
        await self.repo.flush()
        return result

    # -- reading --------------------------------------------------------------------------------------------

    async def order_in_reach(self, access: Access, order_id: uuid.UUID, at_least: Role = Role.member) -> Order:
        return access.reach(await self.repo.order(order_id), "Order", at_least)

    async def view(self, access: Access, order_id: uuid.UUID, at_least: Role = Role.member) -> OrderView:
        order = await self.order_in_reach(access, order_id, at_least)
        return await self.view_of(order)

    async def view_of(self, order: Order) -> OrderView:
        connection = await self.repo.connection(order.connection_id)
        lines = (await self.repo.lines([order.id]))[order.id]
        return OrderView(order, connection.channel if connection else "", lines)

    async def connection_of(self, order: Order) -> ChannelConnection:
        connection = await self.repo.connection(order.connection_id)
        if connection is None:  # pragma: no cover - orders keep their connection (RESTRICT)
            raise Conflict("The order's shop is no longer connected.")
        return connection

    async def search(
        self, access: Access, organization_id: uuid.UUID, filters: OrderFilters, cursor: Cursor | None, limit: int
    ) -> tuple[list[OrderRow], Cursor | None]:
        access.require(organization_id)
        rows = await self.repo.search(
            organization_id,
            status=filters.status,
            channel=filters.channel,
            connection_id=filters.connection_id,
            placed_from=filters.placed_from,
            placed_before=filters.placed_before,
            oversold=filters.oversold,
            unknown_sku=filters.unknown_sku,
            cursor=cursor,
            limit=limit + 1,
        )
        items = [OrderRow(order, channel, unknown) for order, channel, unknown in rows]
        if len(items) <= limit:
            return items, None
        items = items[:limit]
        return items, Cursor(items[-1].order.placed_at, items[-1].order.id)


def _external_id(channel_order: ChannelOrder) -> str:
    return channel_order.external_id[:100]


def _key(line: ChannelOrderLine) -> tuple[str | None, str | None, str | None]:
    return (line.external_item_id, line.external_sku_id, line.sku)


def _clip(value: str | None, size: int) -> str | None:
    return value[:size] if value is not None else None


def _json(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The platform's order, for people and for debugging: the JSON column keeps anything JSON has no type for as
    its text (:func:`agrimarket.db.json_dumps`), so it is stored as it is, serialised once."""
    return dict(raw)


def _new_order_values(connection: ChannelConnection, channel_order: ChannelOrder, now: datetime) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "organization_id": connection.organization_id,
        "connection_id": connection.id,
        "external_id": _external_id(channel_order),
        # What the order had before this ingest: nothing. The status is set with its stock effects afterwards.
        "status": channel_order.status,
        "currency": "VND",
        "total_vnd": channel_order.total_vnd,
        "shipping_fee_vnd": channel_order.shipping_fee_vnd,
        "buyer_name": _clip(channel_order.buyer_name, 200),
        "oversold": False,
        "placed_at": channel_order.created_at,
        "remote_updated_at": channel_order.updated_at,
        "tracking_number": None,
        "raw": _json(channel_order.raw),
        "created_at": now,
        "updated_at": now,
    }
