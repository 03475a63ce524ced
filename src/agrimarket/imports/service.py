"""Bulk import rules: who may import for whom, the preview, and the apply. Never commits.

One pass over the file does both jobs. It reads rows in chunks of ``CHUNK_ROWS``; checks each row on its own
(``validation``; an apply after a worker's preview reads the preview's verdicts instead, see ``checked``), then the
chunk against the database in one query (is the SKU new, archived, below what orders hold?), and sorts every row
into create, update, unchanged or error. A preview stops there. An apply writes the changes of every ``FLUSH_ROWS``
rows in a few bulk statements, in the caller's transaction, inside a savepoint: in ``all_or_nothing`` mode the first
error stops the writing and the savepoint is rolled back at the end (so the database is as it was, and every error
is still reported); in ``valid_rows`` mode the rows with errors are left out.

Values in a file are absolute (price is N, stock is N), and a row whose values are already there is unchanged, so
applying the same file again changes nothing. Stock changes are ``import`` movements whose reference names the
import and the variant, unique in the database, so no import moves the same variant's stock twice. Listings are
marked dirty once at the end, for every variant that changed (or whose product did): the marketplaces receive one
coalesced update per shop.

Memory is bounded by the chunk, the changes not yet written, and what must be remembered across chunks: each
(household, SKU) seen (to find a SKU given twice and the products the file leaves out), the SKUs on sale in the
file's households, and each product the file names.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import re
import secrets
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from agrimarket.accounts.permissions import Access
from agrimarket.errors import Conflict, NotFound
from agrimarket.imports.checked import Checked, CheckedRows, CheckedWriter, FileRows
from agrimarket.imports.parsing import FileProblem, RowSource
from agrimarket.imports.progress import NoProgress, Progress
from agrimarket.imports.repository import Existing, Household, ImportRepository
from agrimarket.imports.validation import DEFAULT_VARIANT_NAME, RowError, ValidRow, as_text, column_name
from agrimarket.kit.pagination import Cursor
from agrimarket.kit.phone import normalize_vn_mobile
from agrimarket.kit.text import fold as fold_text
from agrimarket.models import (
    Category,
    ImportJob,
    ImportStatus,
    MovementKind,
    Organization,
    OrganizationKind,
    ProductStatus,
    Role,
    Unit,
    utcnow,
)

CHUNK_ROWS = 1000
# Rows whose changes are written together. SQLite keeps fewer index pages in play (its cache holds them, not the
# disk) when each table gets a few thousand rows at a time than when four tables take turns every 1,000.
FLUSH_ROWS = 5000
STATISTICS_AFTER = 20_000  # new SKUs after which PostgreSQL's planner statistics are refreshed


def fold(value: str) -> str:
    """The catalog's comparison key; a file repeats its product and size names, so each is folded once. ASCII (every
    SKU) has no accent to remove: lower case and folded white space is the whole of it."""
    if value.isascii():
        return _SPACES.sub(" ", value.lower()).strip()
    return _fold_once(value)


_fold_once = functools.lru_cache(maxsize=65536)(fold_text)
_SPACES = re.compile(r"\s+")


ERROR_BATCH = 1000
MAX_ROWS = 200_000


_GEN0_THRESHOLD = 10_000
_pacing: list[int] = []  # the youngest generation's threshold before the running imports set theirs, once each


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """The cyclic garbage collector's youngest generation collected every 10,000 allocations rather than 700 while
    an import runs, then as it was. A chunk's rows live a few milliseconds and reference counting frees them; at
    700 the collector runs in the middle of nearly every chunk, finds its rows alive and moves them to the older
    generations, whose growth then sets off full collections over the whole process: about 20 of them, 2 s, in a
    100,000-row import, against one. The setting is the process's: the first import to start sets it, the last to
    end gives it back."""
    first, *older = gc.get_threshold()
    if not _pacing:
        gc.set_threshold(max(first, _GEN0_THRESHOLD), *older)
    _pacing.append(first)
    try:
        yield
    finally:
        restored = _pacing.pop()
        if not _pacing:
            gc.set_threshold(restored, *gc.get_threshold()[1:])


class Mode(StrEnum):
    all_or_nothing = "all_or_nothing"
    valid_rows = "valid_rows"


@dataclass
class Tally:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    error_rows: int = 0
    errors: int = 0
    missing: int = 0
    zeroed: int = 0
    households: dict[uuid.UUID, int] = field(default_factory=dict)


class AllOrNothingFailed(Exception):
    def __init__(self, tally: Tally) -> None:
        super().__init__(f"{tally.error_rows} rows have errors")
        self.tally = tally


class RowFeed(Protocol):
    """Where a pass gets its rows, checked on their own: the file itself, or what its preview kept."""

    @property
    def headers(self) -> dict[str, str]:
        """Field → the file's header, once the first chunk is read."""

    @property
    def fraction_read(self) -> float: ...

    def chunks(self) -> Iterator[list[Checked]]: ...


class ErrorSink(Protocol):
    async def add(self, errors: Sequence[RowError]) -> None: ...

    async def close(self) -> None: ...

    async def reset(self) -> None:
        """Forget every error of the import written so far."""


class SessionSink:
    """Errors written in the caller's transaction, a batch at a time."""

    def __init__(self, repo: ImportRepository, import_id: uuid.UUID) -> None:
        self.repo = repo
        self.import_id = import_id
        self.pending: list[dict[str, Any]] = []

    async def add(self, errors: Sequence[RowError]) -> None:
        self.pending.extend(error_row(self.import_id, e) for e in errors)
        if len(self.pending) >= ERROR_BATCH:
            await self.close()

    async def close(self) -> None:
        pending, self.pending = self.pending, []
        await self.repo.insert_errors(pending)

    async def reset(self) -> None:
        self.pending.clear()
        await self.repo.delete_errors(self.import_id)


_error_numbers = itertools.count()


def _ordered_id() -> uuid.UUID:
    """Time, then a counter, then randomness: a line's errors are listed in the order they were found."""
    return uuid.UUID(int=(time.time_ns() // 1000 << 64) | (next(_error_numbers) & 0xFFFF) << 48 | secrets.randbits(48))


def error_row(import_id: uuid.UUID, error: RowError) -> dict[str, Any]:
    return {
        "id": _ordered_id(),
        "import_job_id": import_id,
        "line": error.line,
        "column": error.column[:100],
        "value": error.value[:1000],
        "message": error.message,
        "code": error.code[:40],
    }


# -- who the rows are for -----------------------------------------------------------------------------------------


def importer_role(organization: Organization) -> Role:
    """A cooperative's file names its member households: its admins import it. A household imports its own."""
    return Role.admin if organization.kind is OrganizationKind.cooperative else Role.member


class Households:
    """Resolves a row's household cell (an owner's phone number or a member code) to an organization.

    An empty cell means the organization the file was uploaded to. A cooperative's file may name any of its member
    households; a household's file only itself.
    """

    def __init__(self, organization: Organization, households: list[Household]) -> None:
        self.organization = organization
        self.names = {h.id: h.name for h in households}
        self.names[organization.id] = organization.name
        self.by_code = {fold(h.member_code): h.id for h in households if h.member_code}
        self.by_phone = {phone: h.id for h in households for phone in h.phones}
        self._seen: dict[str, uuid.UUID | str] = {}

    def resolve(self, line: int, text: str | None, column: str) -> uuid.UUID | RowError:
        if not text:
            return self.organization.id
        found = self._seen.get(text)
        if found is None:
            found = self._lookup(text)
            self._seen[text] = found
        if isinstance(found, uuid.UUID):
            return found
        return RowError(line, column, text, found, "unknown_household")

    def _lookup(self, text: str) -> uuid.UUID | str:
        org_id = self.by_code.get(fold(text))
        if org_id is None:
            try:
                org_id = self.by_phone.get(normalize_vn_mobile(text))
            except Exception:
                org_id = None
        if org_id is not None:
            return org_id
        if self.organization.kind is OrganizationKind.household:
            return (
                f"A household imports only its own products; “{text}” is not this household's member code or "
                "owner's phone number. Leave the cell empty, or ask the cooperative to import rows for others."
            )
        return (
            f"No member household of this cooperative has the phone number or member code “{text}”. "
            "Check it, or add the household under Members first."
        )


# -- one pass over a file -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class ProductState:
    """A product as the file will leave it: what it has in the database (or nothing, for a new one)."""

    id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    category: Category
    harvest_date: date | None
    shelf_life_days: int | None
    description: str
    is_new: bool
    next_position: int | None = None  # known once a new variant joins it
    inserted: bool = False  # a new product: written (or, in a preview, counted) with its first valid SKU
    claimed_by: int | None = None  # the first line that set the product's fields
    claimed: int = 0  # which fields that line gave (bits in _PRODUCT_FIELDS order); their values are the product's


_PRODUCT_FIELDS = ("name", "category", "harvest_date", "shelf_life_days", "description")


class ImportPass:
    def __init__(
        self,
        repo: ImportRepository,
        job: ImportJob,
        organization: Organization,
        households: Households,
        *,
        write: bool,
        mode: Mode = Mode.all_or_nothing,
        zero_missing: bool = False,
        sink: ErrorSink,
        progress: Progress | None = None,
        expected_rows: int | None = None,
    ) -> None:
        self.repo = repo
        self.job = job
        self.organization = organization
        self.households = households
        self.write = write
        self.mode = mode
        self.zero_missing = zero_missing
        self.sink = sink
        self.progress = progress or NoProgress()
        self.expected_rows = expected_rows
        self.tally = Tally()
        self.headers: dict[str, str] = {}
        self.failed = False  # all_or_nothing: an error was found, nothing more is written
        self.seen: dict[tuple[uuid.UUID, str], int] = {}
        self.products: dict[uuid.UUID, ProductState] = {}
        self.by_name: dict[uuid.UUID, dict[str, ProductState]] = {}
        self.dirty_variants: set[uuid.UUID] = set()
        self.changed_products: set[uuid.UUID] = set()  # existing products whose fields or variants changed
        self.search_refresh: set[uuid.UUID] = set()
        self.now = utcnow()
        self.reference = f"import:{job.id}"
        self._analysed_at = 0
        self.pending = _Writes()  # what the rows checked since the last write will write
        # Each household's SKUs on sale (with stock not held for orders), read when the file first names it:
        # what the file leaves out of them is missing.
        self.on_sale: dict[uuid.UUID, list[str]] = {}
        self.pending_rows = 0

    # -- the loop -------------------------------------------------------------------------------------------------

    async def run(self, feed: RowFeed) -> Tally:
        with fewer_collections():
            return await self._run(feed)

    async def _run(self, feed: RowFeed) -> Tally:
        chunks = feed.chunks()

        def read() -> tuple[list[Checked] | None, float]:
            return next(chunks, None), feed.fraction_read

        # The next chunk is read (in a thread) while this one is checked against the database and written.
        reading = asyncio.ensure_future(asyncio.to_thread(read))
        try:
            while True:
                chunk, fraction = await asyncio.shield(reading)  # cancelled, the read still ends before the file
                if chunk is None:
                    break
                reading = asyncio.ensure_future(asyncio.to_thread(read))
                self.headers = feed.headers
                if self.tally.rows + len(chunk) > MAX_ROWS:
                    raise FileProblem(
                        f"This file has more than {MAX_ROWS:,} rows. Split it into smaller files.",
                        line=chunk[-1].line,
                    )
                await self._chunk(chunk)
                total = self.expected_rows or _estimate(self.tally.rows, fraction)
                await self.progress.report(self.tally.rows, total)
        finally:
            # Never leave the file to a thread still reading it: the caller closes it next.
            await asyncio.wait([reading])
            if not reading.cancelled():
                reading.exception()  # retrieved, so a failure behind ours is not logged as never retrieved
        self.headers = feed.headers
        await self._write_pending()
        await self._finish()
        await self.sink.close()
        await self.progress.report(self.tally.rows, self.tally.rows, force=True)
        if self.write and self.failed:
            raise AllOrNothingFailed(self.tally)
        return self.tally

    async def _chunk(self, chunk: list[Checked]) -> None:
        checked: list[tuple[ValidRow, uuid.UUID]] = []
        new_households: list[uuid.UUID] = []
        household_column = column_name("household", self.headers)
        sku_column = column_name("sku", self.headers)
        for item in chunk:
            self.tally.rows += 1
            errors = list(item.errors)
            owner = self.households.resolve(item.line, item.household, household_column)
            if isinstance(owner, RowError):
                errors.append(owner)
                org_id = None
            else:
                org_id = owner
                rows = self.tally.households.get(org_id, 0)
                self.tally.households[org_id] = rows + 1
                if not rows:
                    new_households.append(org_id)
            sku = item.sku
            if org_id is not None and sku is not None:
                first = self.seen.setdefault((org_id, sku), item.line)
                if first != item.line:
                    errors.append(
                        RowError(
                            item.line,
                            sku_column,
                            sku,
                            f"SKU {sku} is already on line {first} of this file. Give each SKU one row.",
                            "duplicate_sku",
                        )
                    )
            if errors:
                await self._refuse(errors)
            else:
                assert item.row is not None
                assert org_id is not None
                checked.append((item.row, org_id))
        for org_id in new_households:
            # Before any of the household's rows is written: the SKUs it sells are the catalogue's, not the file's.
            self.on_sale[org_id] = await self.repo.skus_on_sale(org_id)
        if not checked:
            return
        existing = await self.repo.existing([(org_id, row.sku) for row, org_id in checked])
        if self.write and existing:
            # Stock is compared with what the row lock protects, not with what was read before taking it.
            locked = await self.repo.lock_levels([e.variant_id for e in existing.values()])
            for found in existing.values():
                found.on_hand, found.reserved = locked.get(found.variant_id, (0, 0))
        writes = self.pending
        for row, org_id in checked:
            known = existing.get((org_id, row.sku))
            if known is not None:
                errors = self._update(row, known, writes)
            else:
                errors = await self._create(row, org_id, writes)
            if errors:
                await self._refuse(errors)
        self.pending_rows += len(checked)
        if self.pending_rows >= FLUSH_ROWS:
            await self._write_pending()

    async def _write_pending(self) -> None:
        if self.write and not self.failed:
            await self._flush(self.pending)
        self.pending = _Writes()
        self.pending_rows = 0

    async def _refuse(self, errors: Sequence[RowError]) -> None:
        order = {header: i for i, header in enumerate(self.headers.values())}
        errors = sorted(errors, key=lambda e: order.get(e.column, len(order)))
        self.tally.error_rows += 1
        self.tally.errors += len(errors)
        if self.mode is Mode.all_or_nothing:
            self.failed = True
        await self.sink.add(errors)

    # -- an existing SKU --------------------------------------------------------------------------------------

    def _update(self, row: ValidRow, found: Existing, writes: _Writes) -> list[RowError]:
        sku_column = column_name("sku", self.headers)
        if found.archived:
            return [
                RowError(
                    row.line,
                    sku_column,
                    row.sku,
                    f"SKU {row.sku} belongs to an archived variant of “{found.product_name}”. Use another SKU.",
                    "archived",
                )
            ]
        if found.product_status is ProductStatus.archived:
            return [
                RowError(
                    row.line,
                    sku_column,
                    row.sku,
                    f"SKU {row.sku} belongs to the archived product “{found.product_name}”. Restore the product "
                    "first, or use another SKU.",
                    "archived",
                )
            ]
        errors: list[RowError] = []
        if row.on_hand < found.reserved:
            errors.append(
                RowError(
                    row.line,
                    column_name("on_hand", self.headers),
                    str(row.on_hand),
                    f"{found.reserved} of {row.sku} are held for orders not yet shipped, so the stock cannot be "
                    f"below {found.reserved}.",
                    "below_reserved",
                )
            )
        product = self.products.get(found.product_id)
        if product is None:
            product = ProductState(
                id=found.product_id,
                organization_id=found.organization_id,
                name=found.product_name,
                category=found.category,
                harvest_date=found.harvest_date,
                shelf_life_days=found.shelf_life_days,
                description=found.description,
                is_new=False,
            )
            self.products[product.id] = product
        conflict = self._claim(product, row)
        if conflict is not None:
            errors.append(conflict)
        if errors:
            return errors
        changed = False
        if product.claimed_by == row.line and self._product_differs(product, row):
            changed = True
            self._set_product(product, row)
            writes.product_updates.append(_product_values(product))
            self.changed_products.add(product.id)
            if row.name != found.product_name:
                self.search_refresh.add(product.id)
        variant = {
            "b_id": found.variant_id,
            "name": row.variant_name or found.variant_name,
            "unit": row.unit or found.unit,
            "price_vnd": row.price_vnd,
            "weight_grams": row.weight_grams or found.weight_grams,
        }
        if (variant["name"], variant["unit"], variant["price_vnd"], variant["weight_grams"]) != (
            found.variant_name,
            found.unit,
            found.price_vnd,
            found.weight_grams,
        ):
            changed = True
            writes.variant_updates.append(variant)
            self.dirty_variants.add(found.variant_id)
            if variant["name"] != found.variant_name:
                self.search_refresh.add(product.id)
        if row.on_hand != found.on_hand:
            changed = True
            writes.level_updates.append({"b_id": found.variant_id, "on_hand": row.on_hand})
            if self.write:
                writes.movements.append(
                    self._movement(
                        found.variant_id,
                        found.organization_id,
                        row.on_hand - found.on_hand,
                        row.on_hand,
                        found.reserved,
                        row,
                    )
                )
            self.dirty_variants.add(found.variant_id)
        if changed:
            self.tally.updated += 1
        else:
            self.tally.unchanged += 1
        return []

    # -- a new SKU ----------------------------------------------------------------------------------------------

    async def _create(self, row: ValidRow, org_id: uuid.UUID, writes: _Writes) -> list[RowError]:
        errors: list[RowError] = []
        if row.unit is None:
            errors.append(
                RowError(
                    row.line,
                    column_name("unit", self.headers),
                    "",
                    f"SKU {row.sku} is new: enter its unit ({', '.join(u.value for u in Unit)}).",
                    "empty",
                )
            )
        if row.weight_grams is None:
            errors.append(
                RowError(
                    row.line,
                    column_name("weight_grams", self.headers),
                    "",
                    f"SKU {row.sku} is new: enter its shipping weight in grams, e.g. 1200.",
                    "empty",
                )
            )
        products = await self._products_named(org_id)
        key = fold(row.name)
        product = products.get(key)
        if product is None:
            product = ProductState(
                id=uuid.uuid4(),
                organization_id=org_id,
                name=row.name,
                category=row.category or Category.other,
                harvest_date=row.harvest_date,
                shelf_life_days=row.shelf_life_days,
                description=row.description or "",
                is_new=True,
                next_position=0,
            )
            products[key] = product
            self.products[product.id] = product
            product.claimed_by = row.line
            product.claimed = _given_bits(row)
        else:
            conflict = self._claim(product, row)
            if conflict is not None:
                errors.append(conflict)
        if errors:
            return errors
        assert row.unit is not None
        assert row.weight_grams is not None
        if not product.is_new and product.claimed_by == row.line and self._product_differs(product, row):
            self._set_product(product, row)
            writes.product_updates.append(_product_values(product))
            self.search_refresh.add(product.id)
        if not self.write:
            self.tally.created += 1  # a preview counts; what would be written is built only by an apply
            return []
        if product.next_position is None:
            product.next_position = await self._next_position(product.id)
        variant_id = uuid.uuid4()
        now = self.now
        writes.variants.append(  # VARIANT_COLUMNS
            (
                variant_id,
                product.id,
                org_id,
                row.sku,
                row.variant_name or DEFAULT_VARIANT_NAME,
                row.unit,
                row.price_vnd,
                row.weight_grams,
                product.next_position,
                1,
                None,
                now,
                now,
            )
        )
        if product.is_new and (not product.inserted or product.id in writes.new_ids):  # its row is in this batch
            writes.search_parts.setdefault(product.id, []).append(
                f"{fold(row.variant_name or DEFAULT_VARIANT_NAME)} {fold(row.sku)}"
            )
        product.next_position += 1
        writes.levels.append((variant_id, org_id, row.on_hand, 0, now))  # LEVEL_COLUMNS
        if row.on_hand:
            writes.movements.append(self._movement(variant_id, org_id, row.on_hand, row.on_hand, 0, row))
        if product.is_new:
            if not product.inserted:
                product.inserted = True
                writes.new_products.append(product)
                writes.new_ids.add(product.id)
            elif product.id not in writes.new_ids:
                self.search_refresh.add(product.id)  # made in an earlier chunk: its search key misses this SKU
        else:
            self.changed_products.add(product.id)
            self.search_refresh.add(product.id)
        self.tally.created += 1
        return []

    async def _products_named(self, org_id: uuid.UUID) -> dict[str, ProductState]:
        products = self.by_name.get(org_id)
        if products is None:
            products = {}
            for product_id, name, category, harvest_date, shelf_life_days, description in await self.repo.products_of(
                org_id
            ):
                state = self.products.setdefault(
                    product_id,
                    ProductState(
                        id=product_id,
                        organization_id=org_id,
                        name=name,
                        category=category,
                        harvest_date=harvest_date,
                        shelf_life_days=shelf_life_days,
                        description=description,
                        is_new=False,
                    ),
                )
                products.setdefault(fold(name), state)
            self.by_name[org_id] = products
        return products

    async def _next_position(self, product_id: uuid.UUID) -> int:
        positions = await self.repo.last_positions([product_id])
        return positions.get(product_id, -1) + 1

    # -- product fields: the first row that names a product sets them; the others must agree --------------------

    def _claim(self, product: ProductState, row: ValidRow) -> RowError | None:
        if product.claimed_by is None:
            product.claimed_by = row.line
            product.claimed = _given_bits(row)
            return None
        for bit, name in enumerate(_PRODUCT_FIELDS):
            if not product.claimed & (1 << bit):
                continue
            value = getattr(row, name)
            if value is None:  # not given: the product keeps what it has
                continue
            first = getattr(product, name)
            if first != value and not (name == "name" and fold(value) == fold(first)):
                return RowError(
                    row.line,
                    column_name(name, self.headers),
                    as_text(value),
                    f"Line {product.claimed_by} gives this product “{as_text(first)}”. "
                    "The rows of one product must agree on its name, category, harvest date, shelf life and "
                    "description.",
                    "product_conflict",
                )
        return None

    def _product_differs(self, product: ProductState, row: ValidRow) -> bool:
        return any(getattr(product, name) != value for name, value in _given(row).items())

    def _set_product(self, product: ProductState, row: ValidRow) -> None:
        for name, value in _given(row).items():
            setattr(product, name, value)

    def _movement(
        self, variant_id: uuid.UUID, org_id: uuid.UUID, delta: int, on_hand: int, reserved: int, row: ValidRow | None
    ) -> tuple[Any, ...]:
        """A movement's row (``MOVEMENT_COLUMNS``)."""
        reason = (
            f"Import {self.job.filename}, line {row.line}" if row else f"Import {self.job.filename}: not in the file"
        )
        return (
            uuid.uuid4(),
            variant_id,
            org_id,
            MovementKind.import_,
            delta,
            0,
            on_hand,
            reserved,
            reason[:300],
            f"{self.reference}:{variant_id}",
            self.job.user_id,
            self.now,
        )

    # -- writing a chunk ------------------------------------------------------------------------------------------

    async def _flush(self, writes: _Writes) -> None:
        await self.repo.insert_products(
            [  # PRODUCT_COLUMNS
                (
                    p.id,
                    p.organization_id,
                    p.name,
                    p.description,
                    p.category,
                    ProductStatus.active,
                    p.harvest_date,
                    p.shelf_life_days,
                    1,
                    " ".join([fold(p.name), *writes.search_parts.get(p.id, [])]),
                    self.now,
                    self.now,
                )
                for p in writes.new_products
            ]
        )
        await self.repo.update_products(writes.product_updates, self.now)
        await self.repo.insert_variants(writes.variants)
        await self.repo.insert_levels(writes.levels)
        await self.repo.update_variants(writes.variant_updates, self.now)
        await self.repo.update_levels(writes.level_updates, self.now)
        await self.repo.insert_movements(writes.movements)
        if self.tally.created - self._analysed_at >= STATISTICS_AFTER:
            # The catalogue grew by this much within this transaction: the next chunks' lookups need a plan
            # that knows it (PostgreSQL; a no-op elsewhere).
            await self.repo.refresh_statistics()
            self._analysed_at = self.tally.created

    # -- after the last row -----------------------------------------------------------------------------------

    async def _finish(self) -> None:
        await self._missing()
        if not self.write or self.failed:
            return
        if self.changed_products:
            await self.repo.bump_products(sorted(self.changed_products), self.now)
        dirty = set(self.dirty_variants)
        if self.changed_products:
            dirty.update(v for _, v, _, _ in await self.repo.variants_of(sorted(self.changed_products)))
        await self.repo.mark_listings_dirty(sorted(dirty))
        if self.search_refresh:
            variants = await self.repo.variants_of(sorted(self.search_refresh))
            names = await self.repo.product_names_by_id(sorted(self.search_refresh))
            parts: dict[uuid.UUID, list[tuple[str, str]]] = {}
            for product_id, _, name, sku in variants:
                parts.setdefault(product_id, []).append((name, sku))
            await self.repo.set_search_keys(
                [{"b_id": pid, "search_key": search_key(names[pid], parts.get(pid, []))} for pid in names]
            )

    async def _missing(self) -> None:
        """Products on sale in the file's households (when the file first named each) that the file does not
        name: counted, and set to 0 (all of what is not held for orders) when the clerk asked for it."""
        scope = sorted(org for org in self.tally.households)
        if not scope:
            return
        missing: dict[uuid.UUID, list[str]] = {}
        for org_id in scope:
            skus = [sku for sku in self.on_sale.pop(org_id, []) if (org_id, sku) not in self.seen]
            self.tally.missing += len(skus)
            missing[org_id] = skus
        if not (self.write and self.zero_missing and not self.failed and self.tally.missing):
            return
        if self.tally.created > self._analysed_at:
            await self.repo.refresh_statistics()
        to_zero: list[tuple[uuid.UUID, uuid.UUID]] = []
        for org_id, skus in missing.items():
            to_zero.extend((variant_id, org_id) for variant_id in await self.repo.variant_ids(org_id, skus))
        to_zero.sort()  # rows locked in id order, as every writer of several does
        for start in range(0, len(to_zero), CHUNK_ROWS):
            part = to_zero[start : start + CHUNK_ROWS]
            locked = await self.repo.lock_levels([v for v, _ in part])
            levels: list[dict[str, Any]] = []
            movements: list[tuple[Any, ...]] = []
            for variant_id, org_id in part:
                on_hand, reserved = locked.get(variant_id, (0, 0))
                if on_hand <= reserved:
                    continue
                levels.append({"b_id": variant_id, "on_hand": reserved})
                movements.append(self._movement(variant_id, org_id, reserved - on_hand, reserved, reserved, None))
                self.dirty_variants.add(variant_id)
            await self.repo.update_levels(levels, self.now)
            await self.repo.insert_movements(movements)
            self.tally.zeroed += len(levels)


@dataclass
class _Writes:
    new_products: list[ProductState] = field(default_factory=list)
    product_updates: list[dict[str, Any]] = field(default_factory=list)
    variants: list[tuple[Any, ...]] = field(default_factory=list)  # rows as the repository's *_COLUMNS
    levels: list[tuple[Any, ...]] = field(default_factory=list)
    variant_updates: list[dict[str, Any]] = field(default_factory=list)
    level_updates: list[dict[str, Any]] = field(default_factory=list)
    movements: list[tuple[Any, ...]] = field(default_factory=list)
    search_parts: dict[uuid.UUID, list[str]] = field(default_factory=dict)  # a new product's, folded
    new_ids: set[uuid.UUID] = field(default_factory=set)


def _given(row: ValidRow) -> dict[str, Any]:
    """The product fields a row sets: its name, and whichever other product cells are filled in."""
    given: dict[str, Any] = {"name": row.name}
    for name in _PRODUCT_FIELDS[1:]:
        value = getattr(row, name)
        if value is not None:
            given[name] = value
    return given


def _given_bits(row: ValidRow) -> int:
    bits = 1  # the name, always given
    for bit, name in _OPTIONAL_BITS:
        if getattr(row, name) is not None:
            bits |= bit
    return bits


_OPTIONAL_BITS = [(1 << bit, name) for bit, name in enumerate(_PRODUCT_FIELDS) if name != "name"]


def _product_values(product: ProductState) -> dict[str, Any]:
    return {
        "b_id": product.id,
        "name": product.name,
        "category": product.category,
        "harvest_date": product.harvest_date,
        "shelf_life_days": product.shelf_life_days,
        "description": product.description,
    }


def search_key(name: str, variants: Sequence[tuple[str, str]]) -> str:
    """The catalog's search key: folded product name, variant names and SKUs."""
    parts = [name]
    for variant_name, sku in variants:
        parts += [variant_name, sku]
    return " ".join(fold(part) for part in parts)


def _estimate(done: int, fraction: float) -> int:
    return max(done, round(done / fraction)) if fraction > 0 else done


# -- the import's life: create, preview, apply --------------------------------------------------------------------


class ImportService:
    def __init__(self, repository: ImportRepository) -> None:
        self.repo = repository

    async def organization_for_import(self, access: Access, organization_id: uuid.UUID) -> Organization:
        access.require(organization_id)
        organization = await self.repo.organization(organization_id)
        if organization is None:
            raise NotFound("Organization not found.")
        access.require(organization_id, importer_role(organization))
        return organization

    async def get(self, access: Access, import_id: uuid.UUID, *, lock: bool = False) -> ImportJob:
        job = access.reach(await self.repo.job(import_id, lock=lock), "Import")
        organization = await self.repo.organization(job.organization_id)
        assert organization is not None
        access.require(job.organization_id, importer_role(organization))
        return job

    async def page(
        self, access: Access, organization_id: uuid.UUID, cursor: Cursor | None, limit: int
    ) -> tuple[list[ImportJob], Cursor | None]:
        await self.organization_for_import(access, organization_id)
        jobs = await self.repo.jobs(organization_id, cursor, limit + 1)
        if len(jobs) <= limit:
            return jobs, None
        jobs = jobs[:limit]
        return jobs, Cursor(jobs[-1].created_at, jobs[-1].id)

    async def earlier_upload(self, job: ImportJob) -> ImportJob | None:
        return await self.repo.earlier_upload(job.organization_id, job.content_hash, job.id)

    async def households_for(self, organization: Organization) -> Households:
        if organization.kind is OrganizationKind.cooperative:
            members = await self.repo.households(None, organization.id)
        else:
            members = await self.repo.households([organization.id], None)
        return Households(organization, members)

    async def preview(
        self,
        job: ImportJob,
        path: Path,
        *,
        sink: ErrorSink,
        progress: Progress | None = None,
        read_repo: ImportRepository | None = None,
        keep: CheckedWriter | None = None,
    ) -> None:
        """Check every row and count what an apply would do; the job gets the figures (the caller saves it).

        ``read_repo``: where the catalogue is read (the worker reads on a transaction of its own). ``keep``: where
        the checked rows are written for the apply (complete once the preview is)."""
        repo = read_repo or self.repo
        organization = await repo.organization(job.organization_id)
        assert organization is not None
        households = await ImportService(repo).households_for(organization)
        try:
            with RowSource(path) as source:
                feed = FileRows(source, CHUNK_ROWS, keep)
                run = ImportPass(repo, job, organization, households, write=False, sink=sink, progress=progress)
                tally = await run.run(feed)
                await asyncio.to_thread(feed.finish)
                job.detected = self._detected(job, source, tally, households)
        except FileProblem as problem:
            await sink.reset()
            self.file_failed(job, problem)
            await sink.add([RowError(problem.line or 1, problem.column, "", problem.message, "file")])
            await sink.close()
            return
        _record(job, tally)
        job.status = ImportStatus.previewed
        job.message = _preview_message(tally)

    async def apply(
        self,
        job: ImportJob,
        path: Path,
        *,
        mode: Mode,
        zero_missing: bool,
        progress: Progress | None = None,
        kept: CheckedRows | None = None,
    ) -> None:
        """Write what the file says, in a savepoint of the caller's transaction; the job gets the outcome.

        ``kept``: the rows as the preview checked them (see ``checked``), read instead of the file."""
        organization = await self.repo.organization(job.organization_id)
        assert organization is not None
        households = await self.households_for(organization)
        session = self.repo.session
        try:
            async with self.repo.large_cache(), session.begin_nested():
                await self.repo.delete_errors(job.id)
                sink = SessionSink(self.repo, job.id)
                with contextlib.ExitStack() as stack:
                    feed: RowFeed = kept or FileRows(stack.enter_context(RowSource(path)), CHUNK_ROWS)
                    run = ImportPass(
                        self.repo,
                        job,
                        organization,
                        households,
                        write=True,
                        mode=mode,
                        zero_missing=zero_missing,
                        sink=sink,
                        progress=progress,
                        expected_rows=job.total_rows or None,
                    )
                    tally = await run.run(feed)
        except AllOrNothingFailed as failure:
            # The savepoint is gone, and everything written in it: record why, from a fresh look at the file.
            await self.repo.delete_errors(job.id)
            await self.preview(job, path, sink=SessionSink(self.repo, job.id))
            job.message = (
                f"Nothing was applied: {_rows(failure.tally.error_rows)} with errors now (the catalogue may have "
                "changed since the preview). Fix them, or apply only the valid rows."
            )
            return
        except FileProblem as problem:
            self.file_failed(job, problem)
            return
        _record(job, tally)
        job.status = ImportStatus.applied
        job.applied_at = job.finished_at = utcnow()
        job.processed_rows = tally.rows
        job.message = _applied_message(tally, mode)

    def file_failed(self, job: ImportJob, problem: FileProblem) -> None:
        job.status = ImportStatus.failed
        job.message = problem.message
        job.error_count = 1
        job.error_rows = 0
        job.finished_at = utcnow()

    def _detected(self, job: ImportJob, source: RowSource, tally: Tally, households: Households) -> dict[str, Any]:
        detected = {**job.detected, **source.layout.describe()}
        detected["households"] = [
            {"organization_id": str(org_id), "name": households.names.get(org_id, ""), "rows": rows}
            for org_id, rows in sorted(tally.households.items(), key=lambda item: -item[1])
        ][:1000]
        return detected


def check_can_apply(job: ImportJob, mode: Mode) -> None:
    if job.status is ImportStatus.applied:
        raise Conflict("This import was applied already. Upload the file again to apply it once more.")
    if job.status is not ImportStatus.previewed:
        raise Conflict(f"This import is {job.status.value}; it can be applied once its preview is ready.")
    if mode is Mode.all_or_nothing and job.error_rows:
        raise Conflict(
            f"{job.error_rows:,} rows have errors, so nothing can be applied all together. Fix them and upload the "
            "file again, or apply only the valid rows.",
            field="mode",
        )


def _record(job: ImportJob, tally: Tally) -> None:
    job.total_rows = tally.rows
    job.processed_rows = tally.rows
    job.created_count = tally.created
    job.updated_count = tally.updated
    job.unchanged_count = tally.unchanged
    job.error_rows = tally.error_rows
    job.error_count = tally.errors
    job.missing_count = tally.missing
    job.zeroed_count = tally.zeroed


def _preview_message(tally: Tally) -> str:
    parts = [f"{_rows(tally.rows)}: {tally.created:,} new, {tally.updated:,} to update, {tally.unchanged:,} unchanged"]
    if tally.error_rows:
        parts.append(f"{tally.error_rows:,} with errors")
    message = ", ".join(parts) + "."
    if tally.missing:
        message += (
            f" {tally.missing:,} products on sale are not in the file; with “set missing products to 0” their "
            "stock becomes 0 on every marketplace."
        )
    return message


def _applied_message(tally: Tally, mode: Mode) -> str:
    message = f"Applied: {tally.created:,} new, {tally.updated:,} updated, {tally.unchanged:,} unchanged."
    if tally.error_rows and mode is Mode.valid_rows:
        message += f" {_rows(tally.error_rows)} with errors were left out."
    if tally.zeroed:
        message += f" Stock set to 0 for {tally.zeroed:,} products missing from the file."
    return message


def _rows(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"
