"""Stock rules. Never commits.

Every change locks the variant's level row, computes from what the lock protects, writes the new level and one
movement, and marks the variant's listings dirty, all in the caller's transaction. So ``on_hand`` is always the
sum of its movements, and ``available = on_hand − reserved`` is never pushed below zero by two requests at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from agrimarket.accounts.permissions import Access
from agrimarket.catalog.fields import MAX_ON_HAND
from agrimarket.errors import Conflict, Invalid, NotFound
from agrimarket.inventory.repository import InventoryRepository
from agrimarket.kit.pagination import Cursor
from agrimarket.kit.text import fold
from agrimarket.models import MovementKind, Product, Role, StockLevel, StockMovement, Variant

T = TypeVar("T")

# What a person may record by hand; sales, reservations and imports come from their own pipelines.
MANUAL_KINDS = frozenset({MovementKind.receive, MovementKind.adjust, MovementKind.return_})
INCREASING_KINDS = frozenset({MovementKind.receive, MovementKind.return_})


@dataclass(frozen=True)
class StockChange:
    """The level after a change, and what was written (``movement`` is None when nothing changed)."""

    level: StockLevel
    movement: StockMovement | None
    replayed: bool = False  # this reference had been applied before: nothing was applied again
    applied: int = 0  # for reserve / release / sale: how much of the asked quantity took effect
    short: int = 0  # for reserve / sale: how much could not be covered by stock (the order is oversold)


@dataclass(frozen=True)
class StockRow:
    level: StockLevel
    variant: Variant
    product: Product


class InventoryService:
    def __init__(self, repository: InventoryRepository) -> None:
        self.repo = repository

    # -- reading ----------------------------------------------------------------------------------------------

    async def variant_in_reach(self, access: Access, variant_id: uuid.UUID, at_least: Role = Role.member) -> Variant:
        return access.reach(await self.repo.variant(variant_id), "Variant", at_least)

    async def stock(self, access: Access, variant_id: uuid.UUID) -> StockRow:
        variant = await self.variant_in_reach(access, variant_id)
        return await self._row(variant, await self._level(variant))

    async def movements(
        self, access: Access, variant_id: uuid.UUID, cursor: Cursor | None, limit: int
    ) -> tuple[list[StockMovement], Cursor | None]:
        await self.variant_in_reach(access, variant_id)
        rows = await self.repo.movements(variant_id, cursor, limit + 1)
        return _page(rows, limit, lambda m: Cursor(m.created_at, m.id))

    async def levels(
        self,
        access: Access,
        organization_id: uuid.UUID,
        *,
        available_lte: int | None,
        q: str | None,
        include_archived: bool,
        cursor: Cursor | None,
        limit: int,
    ) -> tuple[list[StockRow], Cursor | None]:
        access.require(organization_id)
        rows = await self.repo.stock_rows(
            organization_id,
            available_lte=available_lte,
            folded_q=fold(q) if q else None,
            include_archived=include_archived,
            cursor=cursor,
            limit=limit + 1,
        )
        items = [StockRow(level, variant, product) for level, variant, product in rows]
        return _page(items, limit, lambda r: Cursor(r.variant.created_at, r.variant.id))

    async def ledger_on_hand(self, variant_id: uuid.UUID) -> int:
        return await self.repo.ledger_on_hand(variant_id)

    async def levels_of(self, variant_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StockLevel]:
        return await self.repo.levels(variant_ids)

    async def begin_batch(
        self, variant_ids: Sequence[uuid.UUID], references: Sequence[str], *, unapplied: Sequence[str] = ()
    ) -> None:
        """Many pipeline changes in the caller's transaction (an ingest of many orders): the variants, their levels
        (locked) and the ``references`` already applied are read once now; the movements, levels and dirty
        listings are written once by :meth:`end_batch`, which must follow (before anything reads them back)."""
        await self.repo.begin_batch(variant_ids, references, unapplied=unapplied)

    async def end_batch(self) -> None:
        await self.repo.end_batch()

    async def mark_listings_dirty(self, variant_ids: Sequence[uuid.UUID]) -> int:
        """For changes made elsewhere (catalog, orders) that the channels must be told about."""
        return await self.repo.mark_listings_dirty(variant_ids)

    # -- a new variant's level --------------------------------------------------------------------------------

    async def open_level(
        self, variant: Variant, on_hand: int, *, actor_user_id: uuid.UUID | None, field: str = "initial_stock"
    ) -> StockLevel:
        """The level of a variant just created, with its opening stock received as the first movement."""
        if not 0 <= on_hand <= MAX_ON_HAND:
            raise Invalid(f"Stock must be between 0 and {MAX_ON_HAND:,}.", field=field)
        level = StockLevel(variant_id=variant.id, organization_id=variant.organization_id, on_hand=0, reserved=0)
        self.repo.add(level)
        await self.repo.flush()
        if on_hand:
            await self._apply(
                level,
                MovementKind.receive,
                on_hand_delta=on_hand,
                reason="Opening stock",
                actor_user_id=actor_user_id,
            )
        return level

    # -- changes by hand --------------------------------------------------------------------------------------

    async def set_on_hand(
        self,
        access: Access,
        variant_id: uuid.UUID,
        *,
        on_hand: int,
        kind: MovementKind,
        reason: str,
        actor_user_id: uuid.UUID | None,
    ) -> StockChange:
        """Set the counted quantity. Idempotent by nature: setting the same number again writes nothing."""
        variant = await self.variant_in_reach(access, variant_id)
        if kind not in (MovementKind.adjust, MovementKind.receive):
            raise Invalid("Setting stock is recorded as an `adjust` or a `receive`.", field="kind")
        if not 0 <= on_hand <= MAX_ON_HAND:
            raise Invalid(f"Stock must be between 0 and {MAX_ON_HAND:,}.", field="on_hand")
        level = await self._locked_level(variant)
        delta = on_hand - level.on_hand
        if delta == 0:
            return StockChange(level, None)
        if kind is MovementKind.receive and delta < 0:
            raise Invalid(
                f"A receive can only add stock; {on_hand} is less than the {level.on_hand} on hand. "
                "Record it as an `adjust` with the reason.",
                field="kind",
            )
        if on_hand < level.reserved:
            raise Conflict(
                f"{level.reserved} of {variant.sku} are held for orders not yet shipped, "
                f"so stock on hand cannot be set below {level.reserved}.",
                field="on_hand",
            )
        movement = await self._apply(level, kind, on_hand_delta=delta, reason=reason, actor_user_id=actor_user_id)
        return StockChange(level, movement)

    async def adjust(
        self,
        access: Access,
        variant_id: uuid.UUID,
        *,
        delta: int,
        kind: MovementKind,
        reason: str,
        actor_user_id: uuid.UUID | None,
        idempotency_key: str | None = None,
    ) -> StockChange:
        """Add or remove stock. With an ``idempotency_key``, a retried request is applied once."""
        variant = await self.variant_in_reach(access, variant_id)
        if kind not in MANUAL_KINDS:
            raise Invalid("An adjustment is a `receive`, an `adjust` or a `return`.", field="kind")
        if delta == 0:
            raise Invalid("The change cannot be 0.", field="delta")
        if kind in INCREASING_KINDS and delta < 0:
            raise Invalid(f"A {kind.value} adds stock: send a positive number.", field="delta")
        level = await self._locked_level(variant)
        reference = f"manual:{variant.id}:{idempotency_key}" if idempotency_key else None
        if reference is not None and (done := await self.repo.movement_by_reference(reference)) is not None:
            if done.on_hand_delta != delta or done.kind is not kind:
                raise Conflict("This idempotency key was already used for a different change.", field="idempotency_key")
            return StockChange(level, done, replayed=True)
        if level.available + delta < 0:
            raise Conflict(_only_left(variant, level, -delta), field="delta")
        if level.on_hand + delta > MAX_ON_HAND:
            raise Invalid(f"Stock cannot go above {MAX_ON_HAND:,}.", field="delta")
        movement = await self._apply(
            level, kind, on_hand_delta=delta, reason=reason, actor_user_id=actor_user_id, reference=reference
        )
        return StockChange(level, movement)

    # -- the order pipeline: trusted callers, idempotent by ``reference`` --------------------------------------

    async def reserve(self, variant_id: uuid.UUID, quantity: int, *, reference: str, reason: str = "") -> StockChange:
        """Hold stock for an order not yet shipped; what cannot be held is reported as ``short``, never dropped."""
        _positive(quantity)
        level, done = await self._begin_pipeline(variant_id, reference)
        if done is not None:
            return StockChange(
                level, done, replayed=True, applied=done.reserved_delta, short=quantity - done.reserved_delta
            )
        held = min(quantity, max(level.available, 0))
        movement = await self._apply(
            level, MovementKind.reserve, reserved_delta=held, reason=reason, reference=reference
        )
        return StockChange(level, movement, applied=held, short=quantity - held)

    async def release(self, variant_id: uuid.UUID, quantity: int, *, reference: str, reason: str = "") -> StockChange:
        """Give back a hold (an order cancelled before it shipped)."""
        _positive(quantity)
        level, done = await self._begin_pipeline(variant_id, reference)
        if done is not None:
            return StockChange(level, done, replayed=True, applied=-done.reserved_delta)
        freed = min(quantity, level.reserved)
        movement = await self._apply(
            level, MovementKind.release, reserved_delta=-freed, reason=reason, reference=reference
        )
        return StockChange(level, movement, applied=freed)

    async def commit_sale(
        self, variant_id: uuid.UUID, quantity: int, *, reference: str, from_reserved: int = 0, reason: str = ""
    ) -> StockChange:
        """Stock leaves with a sale: ``from_reserved`` of it was held for this order, the rest comes from available.

        What neither covers is reported as ``short`` (oversold): ``on_hand`` never goes below zero.
        """
        _positive(quantity)
        if not 0 <= from_reserved <= quantity:
            raise ValueError("from_reserved must be between 0 and the quantity sold")
        level, done = await self._begin_pipeline(variant_id, reference)
        if done is not None:
            sold = -done.on_hand_delta
            return StockChange(level, done, replayed=True, applied=sold, short=quantity - sold)
        held = min(from_reserved, level.reserved)
        sold = held + min(quantity - held, max(level.available, 0))
        movement = await self._apply(
            level,
            MovementKind.sale,
            on_hand_delta=-sold,
            reserved_delta=-held,
            reason=reason,
            reference=reference,
        )
        return StockChange(level, movement, applied=sold, short=quantity - sold)

    async def restock(self, variant_id: uuid.UUID, quantity: int, *, reference: str, reason: str = "") -> StockChange:
        """Goods a buyer sent back are on hand again (a ``return`` movement)."""
        _positive(quantity)
        level, done = await self._begin_pipeline(variant_id, reference)
        if done is not None:
            return StockChange(level, done, replayed=True, applied=done.on_hand_delta)
        movement = await self._apply(
            level, MovementKind.return_, on_hand_delta=quantity, reason=reason, reference=reference
        )
        return StockChange(level, movement, applied=quantity)

    # -- the one way stock changes ----------------------------------------------------------------------------

    async def _apply(
        self,
        level: StockLevel,
        kind: MovementKind,
        *,
        on_hand_delta: int = 0,
        reserved_delta: int = 0,
        reason: str = "",
        actor_user_id: uuid.UUID | None = None,
        reference: str | None = None,
    ) -> StockMovement:
        """Write the new level and its movement; the level must be locked by the caller."""
        on_hand = level.on_hand + on_hand_delta
        reserved = level.reserved + reserved_delta
        # The callers check with messages a person can act on; this is the last line before the database's own.
        if on_hand < 0 or reserved < 0 or reserved > on_hand:
            raise Conflict("Stock cannot go below zero.")
        available_changed = (on_hand - reserved) != level.available
        level.on_hand = on_hand
        level.reserved = reserved
        movement = StockMovement(
            variant_id=level.variant_id,
            organization_id=level.organization_id,
            kind=kind,
            on_hand_delta=on_hand_delta,
            reserved_delta=reserved_delta,
            on_hand_after=on_hand,
            reserved_after=reserved,
            reason=reason[:300],
            reference=reference,
            actor_user_id=actor_user_id,
        )
        self.repo.add(movement)
        await self.repo.flush()
        if available_changed:
            await self.repo.mark_listings_dirty([level.variant_id])
        return movement

    async def _level(self, variant: Variant) -> StockLevel:
        level = await self.repo.level(variant.id)
        if level is None:
            return StockLevel(variant_id=variant.id, organization_id=variant.organization_id, on_hand=0, reserved=0)
        return level

    async def _locked_level(self, variant: Variant) -> StockLevel:
        level = await self.repo.level_for_update(variant.id)
        if level is None:
            # A variant made without a level (by code other than the catalog service): open one at zero.
            await self.repo.insert_level(
                StockLevel(variant_id=variant.id, organization_id=variant.organization_id, on_hand=0, reserved=0)
            )
            level = await self.repo.level_for_update(variant.id)
            assert level is not None
        return level

    async def _begin_pipeline(self, variant_id: uuid.UUID, reference: str) -> tuple[StockLevel, StockMovement | None]:
        """Lock the level, then look the reference up: a repeat of a reference waits for, then sees, the first."""
        if not reference:
            raise ValueError("a reference is required")
        variant = await self.repo.variant(variant_id)
        if variant is None:
            raise NotFound("Variant not found.")
        level = await self._locked_level(variant)
        done = await self.repo.movement_by_reference(reference)
        if done is not None and done.variant_id != variant_id:
            raise Conflict(f"Reference {reference} was already applied to another variant.")
        return level, done

    async def _row(self, variant: Variant, level: StockLevel) -> StockRow:
        product = await self.repo.product(variant.product_id)
        assert product is not None
        return StockRow(level, variant, product)


def _only_left(variant: Variant, level: StockLevel, wanted: int) -> str:
    available = max(level.available, 0)
    held = f" ({level.reserved} more are held for orders not yet shipped)" if level.reserved else ""
    return (
        f"Only {available} left in stock for {variant.sku}{held}; you tried to remove {wanted}. "
        "Reload to see the current stock."
    )


def _positive(quantity: int) -> None:
    if quantity <= 0:
        raise ValueError("quantity must be positive")


def _page(rows: list[T], limit: int, cursor_of: Callable[[T], Cursor]) -> tuple[list[T], Cursor | None]:
    """``rows`` holds up to ``limit + 1``: one more than the page says whether another page follows."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, cursor_of(rows[-1])
