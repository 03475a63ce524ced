"""All import queries. Rows are read and written in bulk (one statement per chunk of a file), as plain tuples and
dictionaries: an import touches tens of thousands of rows, and the ORM's identity map would hold every one."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Executable, Table, and_, bindparam, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.inventory.repository import InventoryRepository, keyset
from agrimarket.kit.pagination import Cursor
from agrimarket.models import (
    Category,
    ImportJob,
    ImportRowError,
    ImportStatus,
    Membership,
    Organization,
    Product,
    ProductStatus,
    Role,
    StockLevel,
    StockMovement,
    Unit,
    User,
    Variant,
)

PRODUCTS = cast(Table, Product.__table__)
VARIANTS = cast(Table, Variant.__table__)
LEVELS = cast(Table, StockLevel.__table__)
MOVEMENTS = cast(Table, StockMovement.__table__)
PRODUCT_COLUMNS = (
    "id",
    "organization_id",
    "name",
    "description",
    "category",
    "status",
    "harvest_date",
    "shelf_life_days",
    "version",
    "search_key",
    "created_at",
    "updated_at",
)
VARIANT_COLUMNS = (
    "id",
    "product_id",
    "organization_id",
    "sku",
    "name",
    "unit",
    "price_vnd",
    "weight_grams",
    "position",
    "version",
    "archived_at",
    "created_at",
    "updated_at",
)
LEVEL_COLUMNS = ("variant_id", "organization_id", "on_hand", "reserved", "updated_at")
MOVEMENT_COLUMNS = (
    "id",
    "variant_id",
    "organization_id",
    "kind",
    "on_hand_delta",
    "reserved_delta",
    "on_hand_after",
    "reserved_after",
    "reason",
    "reference",
    "actor_user_id",
    "created_at",
)
IN_LIMIT = 500  # ids per IN (...) list: well inside SQLite's and PostgreSQL's parameter limits
# SKUs per catalogue lookup: a whole chunk of a file in one query (each query is a round trip to the database's
# thread; ~1,040 parameters, within SQLite's 32,766 and PostgreSQL's 65,535).
LOOKUP_LIMIT = 1000
LOOKUP_ORGANIZATIONS = 100  # OR-ed terms per lookup: SQLite parses an OR chain as a tree at most 1,000 deep


@dataclass(slots=True)
class Existing:
    """A SKU already in the catalogue, with its product and stock, as an import compares it."""

    variant_id: uuid.UUID
    organization_id: uuid.UUID
    sku: str
    variant_name: str
    unit: Unit
    price_vnd: int
    weight_grams: int
    archived: bool
    product_id: uuid.UUID
    product_name: str
    category: Category
    product_status: ProductStatus
    harvest_date: date | None
    shelf_life_days: int | None
    description: str
    on_hand: int
    reserved: int


@dataclass(frozen=True)
class Household:
    id: uuid.UUID
    name: str
    member_code: str | None
    phones: tuple[str, ...]


def chunks(items: Sequence[Any], size: int = IN_LIMIT) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


_UNSET = object()


def _converted(values: Sequence[Any], process: Callable[[Any], Any]) -> list[Any]:
    """A column's values through its bind processor, a column at a time; a value that is the same object as the
    one before (the import's timestamp, its user, a household's id) is converted once."""
    out: list[Any] = []
    last: Any = _UNSET
    converted: Any = None
    for value in values:
        if value is not last:
            last = value
            converted = None if value is None else process(value)
        out.append(converted)
    return out


def _by_organization(keys: Sequence[tuple[uuid.UUID, str]]) -> Iterator[list[tuple[uuid.UUID, list[str]]]]:
    """The keys as (organization, its SKUs), at most ``LOOKUP_LIMIT`` SKUs and ``LOOKUP_ORGANIZATIONS``
    organizations at a time."""
    skus: dict[uuid.UUID, list[str]] = {}
    for organization_id, sku in dict.fromkeys(keys):
        skus.setdefault(organization_id, []).append(sku)
    batch: list[tuple[uuid.UUID, list[str]]] = []
    room = LOOKUP_LIMIT
    for organization_id, given in skus.items():
        while given:
            if not room or len(batch) == LOOKUP_ORGANIZATIONS:
                yield batch
                batch, room = [], LOOKUP_LIMIT
            part, given = given[:room], given[room:]
            batch.append((organization_id, part))
            room -= len(part)
    if batch:
        yield batch


@functools.lru_cache(maxsize=128)
def _existing_statement(organizations: int) -> Executable:
    """The lookup of ``existing`` for SKUs of this many organizations, built once: ``o0``, ``s0`` (a list), ``o1``…"""
    return (
        select(
            Variant.id,
            Variant.organization_id,
            Variant.sku,
            Variant.name,
            Variant.unit,
            Variant.price_vnd,
            Variant.weight_grams,
            Variant.archived_at,
            Product.id,
            Product.name,
            Product.category,
            Product.status,
            Product.harvest_date,
            Product.shelf_life_days,
            Product.description,
            func.coalesce(StockLevel.on_hand, 0),
            func.coalesce(StockLevel.reserved, 0),
        )
        .join(Product, Product.id == Variant.product_id)
        .outerjoin(StockLevel, StockLevel.variant_id == Variant.id)
        .where(
            or_(
                *(
                    and_(
                        Variant.organization_id == bindparam(f"o{i}"),
                        Variant.sku.in_(bindparam(f"s{i}", expanding=True)),
                    )
                    for i in range(organizations)
                )
            )
        )
    )


class ImportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- jobs -------------------------------------------------------------------------------------------------

    async def job(self, import_id: uuid.UUID, *, lock: bool = False) -> ImportJob | None:
        return await self.session.get(ImportJob, import_id, with_for_update=lock or None, populate_existing=True)

    async def jobs(self, organization_id: uuid.UUID, cursor: Cursor | None, limit: int) -> list[ImportJob]:
        stmt = keyset(
            select(ImportJob).where(ImportJob.organization_id == organization_id),
            ImportJob.created_at,
            ImportJob.id,
            cursor,
            newest_first=True,
        )
        return list((await self.session.execute(stmt.limit(limit))).scalars())

    async def earlier_upload(
        self, organization_id: uuid.UUID, content_hash: str, before: uuid.UUID
    ) -> ImportJob | None:
        """The last applied import of the same bytes into the same organization."""
        result = await self.session.execute(
            select(ImportJob)
            .where(
                ImportJob.organization_id == organization_id,
                ImportJob.content_hash == content_hash,
                ImportJob.status == ImportStatus.applied,
                ImportJob.id != before,
            )
            .order_by(ImportJob.applied_at.desc())
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def move_status(self, import_id: uuid.UUID, from_: ImportStatus, to: ImportStatus, **values: Any) -> bool:
        """Compare-and-set on the status: False when another request moved it first."""
        result = await self.session.execute(
            update(ImportJob)
            .where(ImportJob.id == import_id, ImportJob.status == from_)
            .values(status=to, **values)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    async def set_progress(self, import_id: uuid.UUID, processed: int, total: int) -> None:
        await self.session.execute(
            update(ImportJob)
            .where(ImportJob.id == import_id)
            .values(processed_rows=processed, total_rows=total)
            .execution_options(synchronize_session=False)
        )

    # -- row errors -------------------------------------------------------------------------------------------

    async def delete_errors(self, import_id: uuid.UUID) -> None:
        await self.session.execute(delete(ImportRowError).where(ImportRowError.import_job_id == import_id))

    async def insert_errors(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(insert(ImportRowError), rows)

    async def errors(
        self, import_id: uuid.UUID, after: tuple[int, uuid.UUID] | None, limit: int
    ) -> list[ImportRowError]:
        stmt = select(ImportRowError).where(ImportRowError.import_job_id == import_id)
        if after is not None:
            stmt = stmt.where(tuple_(ImportRowError.line, ImportRowError.id) > tuple_(*after))
        stmt = stmt.order_by(ImportRowError.line, ImportRowError.id).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    # -- who the rows are for ---------------------------------------------------------------------------------

    async def organization(self, organization_id: uuid.UUID) -> Organization | None:
        return await self.session.get(Organization, organization_id)

    async def households(
        self, organization_ids: Sequence[uuid.UUID] | None, cooperative_id: uuid.UUID | None
    ) -> list[Household]:
        """Households by id, or a cooperative's member households, each with its owners' phone numbers."""
        stmt = select(Organization.id, Organization.name, Organization.member_code)
        if cooperative_id is not None:
            stmt = stmt.where(Organization.cooperative_id == cooperative_id)
        else:
            stmt = stmt.where(Organization.id.in_(list(organization_ids or [])))
        orgs = (await self.session.execute(stmt)).all()
        phones: dict[uuid.UUID, list[str]] = {org_id: [] for org_id, _, _ in orgs}
        for part in chunks(list(phones)):
            result = await self.session.execute(
                select(Membership.organization_id, User.phone)
                .join(User, User.id == Membership.user_id)
                .where(Membership.organization_id.in_(list(part)), Membership.role == Role.owner)
            )
            for org_id, phone in result.all():
                phones[org_id].append(phone)
        return [Household(org_id, name, code, tuple(phones[org_id])) for org_id, name, code in orgs]

    # -- the catalogue as the file's rows meet it -------------------------------------------------------------

    async def existing(self, keys: Sequence[tuple[uuid.UUID, str]]) -> dict[tuple[uuid.UUID, str], Existing]:
        """The variants with these (organization, SKU) keys, with product and stock. One query per thousand keys,
        grouped by organization: ``(organization = … AND sku IN (…)) OR …`` walks the (organization, SKU)
        index once per key asked for (a row-value IN is not planned that way on SQLite, and one ``organization IN``
        list beside one ``sku IN`` list walks it for every organization and SKU of the chunk together)."""
        found: dict[tuple[uuid.UUID, str], Existing] = {}
        for by_organization in _by_organization(keys):
            params: dict[str, Any] = {}
            for i, (organization_id, skus) in enumerate(by_organization):
                params[f"o{i}"], params[f"s{i}"] = organization_id, skus
            result = await self.session.execute(_existing_statement(len(by_organization)), params)
            for row in result.all():
                found[(row[1], row[2])] = Existing(
                    variant_id=row[0],
                    organization_id=row[1],
                    sku=row[2],
                    variant_name=row[3],
                    unit=row[4],
                    price_vnd=row[5],
                    weight_grams=row[6],
                    archived=row[7] is not None,
                    product_id=row[8],
                    product_name=row[9],
                    category=row[10],
                    product_status=row[11],
                    harvest_date=row[12],
                    shelf_life_days=row[13],
                    description=row[14],
                    on_hand=int(row[15]),
                    reserved=int(row[16]),
                )
        return found

    async def products_of(
        self, organization_id: uuid.UUID
    ) -> list[tuple[uuid.UUID, str, Category, date | None, int | None, str]]:
        """The organization's products on sale (``id, name, category, harvest date, shelf life, description``):
        a new SKU joins the one whose name it repeats."""
        result = await self.session.execute(
            select(
                Product.id,
                Product.name,
                Product.category,
                Product.harvest_date,
                Product.shelf_life_days,
                Product.description,
            )
            .where(Product.organization_id == organization_id, Product.status == ProductStatus.active)
            .order_by(Product.created_at, Product.id)
        )
        return [tuple(row) for row in result.all()]  # type: ignore[misc]

    async def last_positions(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        found: dict[uuid.UUID, int] = {}
        for part in chunks(list(product_ids)):
            result = await self.session.execute(
                select(Variant.product_id, func.max(Variant.position))
                .where(Variant.product_id.in_(list(part)))
                .group_by(Variant.product_id)
            )
            found.update({product_id: int(position) for product_id, position in result.all()})
        return found

    async def lock_levels(self, variant_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
        """``on_hand, reserved`` under a row lock until the transaction ends (PostgreSQL; SQLite's writer holds
        the whole database already)."""
        found: dict[uuid.UUID, tuple[int, int]] = {}
        for part in chunks(list(variant_ids)):
            result = await self.session.execute(
                select(StockLevel.variant_id, StockLevel.on_hand, StockLevel.reserved)
                .where(StockLevel.variant_id.in_(list(part)))
                .with_for_update()
            )
            found.update({variant_id: (on_hand, reserved) for variant_id, on_hand, reserved in result.all()})
        return found

    async def skus_on_sale(self, organization_id: uuid.UUID) -> list[str]:
        """The SKU of every variant on sale in the organization with stock not held for orders (only SKUs: this
        runs over a whole catalogue, and a SKU is what a file is compared by)."""
        result = await self.session.execute(
            select(Variant.sku)
            .join(StockLevel, StockLevel.variant_id == Variant.id)
            .join(Product, Product.id == Variant.product_id)
            .where(
                StockLevel.organization_id == organization_id,
                StockLevel.on_hand > StockLevel.reserved,
                Variant.archived_at.is_(None),
                Product.status == ProductStatus.active,
            )
        )
        return list(result.scalars())

    async def variant_ids(self, organization_id: uuid.UUID, skus: Sequence[str]) -> list[uuid.UUID]:
        found: list[uuid.UUID] = []
        for part in chunks(list(skus)):
            result = await self.session.execute(
                select(Variant.id).where(Variant.organization_id == organization_id, Variant.sku.in_(list(part)))
            )
            found.extend(result.scalars())
        return found

    async def refresh_statistics(self) -> None:
        """PostgreSQL plans from table statistics, which a bulk insert leaves stale (the planner would take
        100,000 fresh rows for an empty table): ``ANALYZE`` the catalogue tables, as after any bulk load."""
        connection = await self.session.connection()
        if connection.dialect.name == "postgresql":
            for table in (PRODUCTS, VARIANTS, LEVELS):
                await connection.exec_driver_sql(f"ANALYZE {connection.dialect.identifier_preparer.quote(table.name)}")

    async def variants_of(self, product_ids: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, uuid.UUID, str, str]]:
        """``product, variant, name, SKU`` of every variant of these products."""
        rows: list[tuple[uuid.UUID, uuid.UUID, str, str]] = []
        for part in chunks(list(product_ids)):
            result = await self.session.execute(
                select(Variant.product_id, Variant.id, Variant.name, Variant.sku)
                .where(Variant.product_id.in_(list(part)))
                .order_by(Variant.product_id, Variant.position, Variant.created_at, Variant.id)
            )
            rows.extend((p, v, n, s) for p, v, n, s in result.all())
        return rows

    async def product_names_by_id(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        found: dict[uuid.UUID, str] = {}
        for part in chunks(list(product_ids)):
            result = await self.session.execute(select(Product.id, Product.name).where(Product.id.in_(list(part))))
            found.update({product_id: name for product_id, name in result.all()})
        return found

    # -- writing, one statement per chunk -----------------------------------------------------------------------

    async def insert_products(self, rows: list[tuple[Any, ...]]) -> None:
        """Each row: the values of ``PRODUCT_COLUMNS``, in that order."""
        await self._bulk_insert(PRODUCTS, PRODUCT_COLUMNS, rows)

    async def insert_variants(self, rows: list[tuple[Any, ...]]) -> None:
        """Each row: the values of ``VARIANT_COLUMNS``."""
        await self._bulk_insert(VARIANTS, VARIANT_COLUMNS, rows)

    async def insert_levels(self, rows: list[tuple[Any, ...]]) -> None:
        """Each row: the values of ``LEVEL_COLUMNS``."""
        await self._bulk_insert(LEVELS, LEVEL_COLUMNS, rows)

    async def insert_movements(self, rows: list[tuple[Any, ...]]) -> None:
        """Each row: the values of ``MOVEMENT_COLUMNS``."""
        await self._bulk_insert(MOVEMENTS, MOVEMENT_COLUMNS, rows)

    async def _bulk_insert(self, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """One ``executemany`` straight to the driver, each value converted by its column type's own bind
        processor (the very conversion SQLAlchemy applies): the same rows as ``insert(table)``, without the
        per-row bookkeeping that costs more than the database's own work at tens of thousands of rows. Rows are
        tuples (a tenth of the memory of dictionaries at a few thousand rows a batch) and every column is given a
        value, so no default is skipped."""
        if not rows:
            return
        connection = await self.session.connection()
        dialect = connection.dialect
        quote = dialect.identifier_preparer.quote
        marker = "?" if dialect.paramstyle == "qmark" else "%s"
        # Names from the table itself (``table.c[name]`` below refuses any other), quoted by the dialect.
        sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608
            f"VALUES ({', '.join(marker for _ in columns)})"
        )
        values: list[Sequence[Any]] = []
        for name, column in zip(columns, zip(*rows, strict=True), strict=True):
            # The dialect's own form of the type (SQLite's DATETIME, not the generic one), as SQLAlchemy's insert.
            process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            values.append(column if process is None else _converted(column, process))
        await connection.exec_driver_sql(sql, list(zip(*values, strict=True)))

    async def update_products(self, rows: list[dict[str, Any]], now: datetime) -> None:
        """Each row: ``b_id`` and every product field an import sets."""
        if not rows:
            return
        table = PRODUCTS
        await self.session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(
                name=bindparam("name"),
                category=bindparam("category"),
                harvest_date=bindparam("harvest_date"),
                shelf_life_days=bindparam("shelf_life_days"),
                description=bindparam("description"),
                updated_at=now,
            ),
            rows,
        )

    async def update_variants(self, rows: list[dict[str, Any]], now: datetime) -> None:
        if not rows:
            return
        table = VARIANTS
        await self.session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(
                name=bindparam("name"),
                unit=bindparam("unit"),
                price_vnd=bindparam("price_vnd"),
                weight_grams=bindparam("weight_grams"),
                version=table.c.version + 1,
                updated_at=now,
            ),
            rows,
        )

    async def update_levels(self, rows: list[dict[str, Any]], now: datetime) -> None:
        if not rows:
            return
        table = LEVELS
        await self.session.execute(
            update(table)
            .where(table.c.variant_id == bindparam("b_id"))
            .values(on_hand=bindparam("on_hand"), updated_at=now),
            rows,
        )

    async def bump_products(self, product_ids: Sequence[uuid.UUID], now: datetime) -> None:
        for part in chunks(list(product_ids)):
            await self.session.execute(
                update(Product)
                .where(Product.id.in_(list(part)))
                .values(version=Product.version + 1, updated_at=now)
                .execution_options(synchronize_session=False)
            )

    async def set_search_keys(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        table = PRODUCTS
        await self.session.execute(
            update(table).where(table.c.id == bindparam("b_id")).values(search_key=bindparam("search_key")), rows
        )

    async def mark_listings_dirty(self, variant_ids: Sequence[uuid.UUID]) -> int:
        marked = 0
        inventory = InventoryRepository(self.session)
        for part in chunks(list(variant_ids)):
            marked += await inventory.mark_listings_dirty(list(part))
        return marked

    @asynccontextmanager
    async def large_cache(self) -> AsyncIterator[None]:
        """SQLite: a 16 MiB page cache on this connection while an import writes (the default 2 MiB makes every
        index insert of a large file a trip to the disk), given back afterwards."""
        connection = await self.session.connection()
        if connection.dialect.name != "sqlite":
            yield
            return
        previous = (await connection.exec_driver_sql("PRAGMA cache_size")).scalar_one()
        await connection.exec_driver_sql("PRAGMA cache_size=-16384")
        try:
            yield
        finally:
            await connection.exec_driver_sql(f"PRAGMA cache_size={int(previous)}")

    async def flush(self) -> None:
        await self.session.flush()

    def add(self, *objects: object) -> None:
        self.session.add_all(objects)
