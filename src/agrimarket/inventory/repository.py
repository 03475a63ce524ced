"""All stock queries, and the one place that marks listings dirty."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVarTuple

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from agrimarket.db import insert_objects, table_of
from agrimarket.kit.pagination import Cursor
from agrimarket.models import (
    Listing,
    ListingStatus,
    Product,
    ProductStatus,
    StockLevel,
    StockMovement,
    Variant,
    utcnow,
)
from agrimarket.sync.queue import request_sync

Row = TypeVarTuple("Row")


def keyset(
    stmt: Select[*Row],
    created_at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[uuid.UUID],
    cursor: Cursor | None,
    *,
    newest_first: bool,
) -> Select[*Row]:
    """Order by (created_at, id) and start after the cursor: stable under inserts, no OFFSET."""
    if cursor is not None:
        after: ColumnElement[bool]
        if newest_first:
            after = or_(created_at < cursor.created_at, and_(created_at == cursor.created_at, id_ < cursor.id))
        else:
            after = or_(created_at > cursor.created_at, and_(created_at == cursor.created_at, id_ > cursor.id))
        stmt = stmt.where(after)
    if newest_first:
        return stmt.order_by(created_at.desc(), id_.desc())
    return stmt.order_by(created_at.asc(), id_.asc())


def like_pattern(folded: str) -> str:
    escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def lock_listings(session: AsyncSession, *where: ColumnElement[bool]) -> list[uuid.UUID]:
    """Row-lock the listings matching ``where`` in id order (PostgreSQL), before changing them: the one order every
    writer of several listings in a transaction keeps. Their ids."""
    result = await session.execute(select(Listing.id).where(*where).order_by(Listing.id).with_for_update())
    return list(result.scalars())


# A batch's reads (every chunk of every inbox drain), built once: building a statement cost about as much as
# running it.
_VARIANTS = select(Variant).where(Variant.id.in_(bindparam("ids", expanding=True)))
_LEVELS = (
    select(StockLevel)
    .where(StockLevel.variant_id.in_(bindparam("ids", expanding=True)))
    .order_by(StockLevel.variant_id)
    .execution_options(populate_existing=True)
)
_LEVELS_FOR_UPDATE = _LEVELS.with_for_update()
_LEVELS_OF = select(StockLevel).where(StockLevel.variant_id.in_(bindparam("ids", expanding=True)))
_MOVEMENTS_BY_REFERENCE = select(StockMovement).where(
    StockMovement.reference.in_(bindparam("references", expanding=True))
)

_LISTINGS = table_of(Listing).c
# On the table, not the entity: an ORM-enabled UPDATE goes through the ORM's bulk path first.
_DIRTY = (
    update(table_of(Listing))
    .values(desired_version=_LISTINGS.desired_version + 1)
    .returning(_LISTINGS.connection_id, _LISTINGS.organization_id)
)
_DIRTY_BY_VARIANT = _DIRTY.where(
    _LISTINGS.variant_id.in_(bindparam("variant_ids", expanding=True)), _LISTINGS.status != ListingStatus.delisted
)
_DIRTY_BY_ID = _DIRTY.where(_LISTINGS.id.in_(bindparam("ids", expanding=True)))


class InventoryRepository:
    """Plain queries, or, between :meth:`begin_batch` and :meth:`end_batch`, a batch's: its variants, locked levels
    and movement references read at once up front, and the writes (movements, levels, listings made dirty) made
    at once at the end."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._batch: _Batch | None = None

    # -- a batch of pipeline changes -------------------------------------------------------------------------

    async def begin_batch(
        self, variant_ids: Sequence[uuid.UUID], references: Sequence[str], *, unapplied: Sequence[str] = ()
    ) -> None:
        """Read once what a batch of changes to these variants needs: the variants, their levels (row-locked in
        variant order on PostgreSQL, so batches queue instead of deadlocking; refreshed from the database) and
        which of ``references`` were applied already (``unapplied``: references that cannot have been, such as
        those naming rows this transaction made, are not looked up). Until :meth:`end_batch`, the lookups answer
        from there, nothing is flushed by the stock rules, and marking listings dirty is gathered."""
        ids = sorted(set(variant_ids))
        batch = _Batch()
        if ids:
            variants = await self.session.execute(_VARIANTS, {"ids": ids})
            batch.variants = {variant.id: variant for variant in variants.scalars()}
            locking = self.session.get_bind().dialect.name == "postgresql"
            levels = await self.session.execute(_LEVELS_FOR_UPDATE if locking else _LEVELS, {"ids": ids})
            batch.levels = {level.variant_id: level for level in levels.scalars()}
        wanted = sorted(set(references) - set(unapplied))
        batch.movements = dict.fromkeys([*wanted, *unapplied])
        for start in range(0, len(wanted), 500):
            done = await self.session.execute(_MOVEMENTS_BY_REFERENCE, {"references": wanted[start : start + 500]})
            for movement in done.scalars():
                assert movement.reference is not None
                batch.movements[movement.reference] = movement
        self._batch = batch

    async def end_batch(self) -> int:
        """Write what the batch changed, and mark the listings of the variants whose availability changed dirty,
        once. Returns the number of listings marked."""
        batch, self._batch = self._batch, None
        if batch is not None and batch.new_movements:
            # Not through the unit of work: the movements are only ever added, so one executemany of rows.
            await insert_objects(self.session, StockMovement, batch.new_movements)
        await self.session.flush()
        if batch is None or not batch.dirty:
            return 0
        return await self.mark_listings_dirty(sorted(batch.dirty))

    # -- reading ---------------------------------------------------------------------------------------------

    async def variant(self, variant_id: uuid.UUID) -> Variant | None:
        if self._batch is not None and variant_id in self._batch.variants:
            return self._batch.variants[variant_id]
        return await self.session.get(Variant, variant_id)

    async def product(self, product_id: uuid.UUID) -> Product | None:
        return await self.session.get(Product, product_id)

    async def level(self, variant_id: uuid.UUID) -> StockLevel | None:
        return await self.session.get(StockLevel, variant_id)

    async def level_for_update(self, variant_id: uuid.UUID) -> StockLevel | None:
        """The level, row-locked until the transaction ends (PostgreSQL; SQLite writers are serialised anyway).

        ``populate_existing`` so a level already in the session is refreshed with what the lock protects. In a
        batch, the level read (and locked) when the batch began.
        """
        if self._batch is not None and variant_id in self._batch.levels:
            return self._batch.levels[variant_id]
        result = await self.session.execute(
            select(StockLevel)
            .where(StockLevel.variant_id == variant_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def insert_level(self, level: StockLevel) -> bool:
        """Insert a level unless another transaction just did; False when it exists already."""
        try:
            async with self.session.begin_nested():
                self.session.add(level)
                await self.session.flush()
        except IntegrityError:
            return False
        return True

    async def levels(self, variant_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StockLevel]:
        if not variant_ids:
            return {}
        if self._batch is not None and all(v in self._batch.levels for v in variant_ids):
            return {v: self._batch.levels[v] for v in variant_ids}
        result = await self.session.execute(_LEVELS_OF, {"ids": list(variant_ids)})
        return {level.variant_id: level for level in result.scalars()}

    async def movement_by_reference(self, reference: str) -> StockMovement | None:
        if self._batch is not None and reference in self._batch.movements:
            return self._batch.movements[reference]
        result = await self.session.execute(select(StockMovement).where(StockMovement.reference == reference))
        return result.scalar_one_or_none()

    async def movements(self, variant_id: uuid.UUID, cursor: Cursor | None, limit: int) -> list[StockMovement]:
        stmt = keyset(
            select(StockMovement).where(StockMovement.variant_id == variant_id),
            StockMovement.created_at,
            StockMovement.id,
            cursor,
            newest_first=True,
        )
        result = await self.session.execute(stmt.limit(limit))
        return list(result.scalars())

    async def ledger_on_hand(self, variant_id: uuid.UUID) -> int:
        """What the movements say ``on_hand`` is: the sum of their deltas."""
        result = await self.session.execute(
            select(func.coalesce(func.sum(StockMovement.on_hand_delta), 0)).where(
                StockMovement.variant_id == variant_id
            )
        )
        return int(result.scalar_one())

    async def stock_rows(
        self,
        organization_id: uuid.UUID,
        *,
        available_lte: int | None,
        folded_q: str | None,
        include_archived: bool,
        cursor: Cursor | None,
        limit: int,
    ) -> list[tuple[StockLevel, Variant, Product]]:
        stmt = (
            select(StockLevel, Variant, Product)
            .join(Variant, Variant.id == StockLevel.variant_id)
            .join(Product, Product.id == Variant.product_id)
            .where(StockLevel.organization_id == organization_id)
        )
        if available_lte is not None:
            stmt = stmt.where(StockLevel.on_hand - StockLevel.reserved <= available_lte)
        if folded_q:
            stmt = stmt.where(Product.search_key.like(like_pattern(folded_q), escape="\\"))
        if not include_archived:
            stmt = stmt.where(Variant.archived_at.is_(None), Product.status == ProductStatus.active)
        stmt = keyset(stmt, Variant.created_at, Variant.id, cursor, newest_first=False)
        result = await self.session.execute(stmt.limit(limit))
        return [(level, variant, product) for level, variant, product in result.all()]

    async def mark_listings_dirty(self, variant_ids: Sequence[uuid.UUID]) -> int:
        """Every listing of these variants needs pushing again: ``desired_version += 1``, in this transaction.

        The sync engine pushes a listing while ``desired_version > pushed_version`` and records what it pushed
        with a compare-and-set, so a bump made during a push is pushed once more afterwards.
        """
        if not variant_ids:
            return 0
        if self._batch is not None:
            self._batch.dirty.update(variant_ids)
            return 0
        if self.session.get_bind().dialect.name == "postgresql":
            # Row locks on listings are always taken in id order (the sync engine records in that order too): an
            # UPDATE alone locks in whatever order its scan finds the rows, and two writers doing that deadlock.
            which = [Listing.variant_id.in_(list(variant_ids)), Listing.status != ListingStatus.delisted]
            ids = await lock_listings(self.session, *which)
            if not ids:
                return 0
            result = await self.session.execute(_DIRTY_BY_ID, {"ids": ids})
        else:
            result = await self.session.execute(_DIRTY_BY_VARIANT, {"variant_ids": list(variant_ids)})
        rows = result.all()
        await request_sync(self.session, {connection_id: organization_id for connection_id, organization_id in rows})
        return len(rows)

    def add(self, *objects: object) -> None:
        """Into the session; in a batch, its movements are kept apart, to be inserted by :meth:`end_batch`."""
        if self._batch is None:
            self.session.add_all(objects)
            return
        for added in objects:
            if not isinstance(added, StockMovement):
                self.session.add(added)
                continue
            # What the column defaults would have filled in at a flush.
            added.id = added.id or uuid.uuid4()
            added.created_at = added.created_at or utcnow()
            self._batch.new_movements.append(added)
            if added.reference is not None:
                self._batch.movements[added.reference] = added

    async def flush(self) -> None:
        if self._batch is None:  # a batch is written once, at its end
            await self.session.flush()


@dataclass
class _Batch:
    variants: dict[uuid.UUID, Variant] = field(default_factory=dict)  # held here: the session's map is weak
    levels: dict[uuid.UUID, StockLevel] = field(default_factory=dict)
    movements: dict[str, StockMovement | None] = field(default_factory=dict)  # by reference; None: not applied
    dirty: set[uuid.UUID] = field(default_factory=set)
    new_movements: list[StockMovement] = field(default_factory=list)  # written at the end, in one statement
