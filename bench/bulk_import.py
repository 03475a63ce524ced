"""Bulk import benchmark: a cooperative's 100,000-row CSV, validated and applied through the worker's code path.

Run: ``python -m bench.bulk_import [--rows 100000] [--database-url postgresql+psycopg://…]``. Compares, in the same
run, on the same freshly migrated database (emptied between the two):

- **import**: the two worker jobs as they run in production: ``imports.preview`` (read the stored file, detect
  encoding and delimiter, check every row, look every SKU up, count, write the errors, keep the checked rows beside
  the upload) then ``imports.apply`` (read the kept rows back, or the file again without them, check them again
  against the catalogue under lock, write products, variants, stock levels and ``import`` movements in bulk, mark
  listings dirty, commit);
- **floor**: the same rows written into the same four tables by the raw driver's ``executemany`` (``sqlite3`` on
  SQLite, psycopg on PostgreSQL) in one transaction, every value prepared before the clock starts: no parsing, no
  validation, no lookups.

The file: a cooperative of 40 member households named by member code or owner's phone number, products of one to
four sizes with Vietnamese names, vi-VN numbers (``1.250.000``), ``dd/mm/yyyy`` dates, semicolons and a BOM (Excel
under vi-VN). Each method runs in a fresh process; its time is wall-clock for the work alone, and its peak memory is
the process's resident peak (``VmHWM``) during the work. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import make_url, text

from agrimarket import migrate
from agrimarket.config import Settings, new_fernet_key
from agrimarket.db import create_engine, make_sessionmaker, transaction
from agrimarket.kit.text import fold
from agrimarket.observability import configure_logging
from bench._common import bench_settings, reset_peak, status_kib, throwaway_database

HOUSEHOLDS = 40
SEED = 20261204
HEADER = (
    "Hộ sản xuất;Mã SKU;Tên sản phẩm;Quy cách;Danh mục;Đơn vị;Giá bán;Tồn kho;Khối lượng (g);Ngày thu hoạch;"
    "Hạn sử dụng (ngày);Mô tả"
)
PRODUCTS = [
    ("Sầu riêng Ri6", "Trái cây", 85_000),
    ("Sầu riêng Monthong", "Trái cây", 95_000),
    ("Chôm chôm nhãn", "Trái cây", 35_000),
    ("Măng cụt Lái Thiêu", "Trái cây", 60_000),
    ("Bơ sáp Đắk Lắk", "Trái cây", 45_000),
    ("Hạt điều rang muối", "Hạt", 220_000),
    ("Hạt điều vỏ lụa", "Hạt", 240_000),
    ("Tiêu đen Lộc Ninh", "Gia vị", 160_000),
    ("Tiêu sọ trắng", "Gia vị", 280_000),
    ("Mật ong hoa cà phê", "Mật ong", 180_000),
    ("Cà phê Robusta rang mộc", "Cà phê", 210_000),
    ("Gạo ST25", "Gạo", 38_000),
    ("Chuối sấy giòn", "Đồ khô", 90_000),
]
SIZES = [
    ("Hộp 1 kg", "hộp", 1, 1200),
    ("Thùng 5 kg", "thùng", 5, 5600),
    ("Túi 500 g", "túi", 0.5, 550),
    ("Kg", "kg", 1, 1000),
]
CATEGORY = {"Trái cây": "fruit", "Hạt": "nuts", "Gia vị": "spices", "Mật ong": "honey", "Cà phê": "coffee"}
CATEGORY |= {"Gạo": "rice", "Đồ khô": "dried"}
UNIT = {"hộp": "hop", "thùng": "thung", "túi": "tui", "kg": "kg"}


def vn(number: int) -> str:
    return f"{number:,}".replace(",", ".")


def make_file(path: Path, rows: int, households: list[tuple[str, str]]) -> None:
    """``households``: (member code, owner's phone) of each member household."""
    rng = random.Random(SEED)
    written = 0
    lot = 0
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        handle.write(HEADER + "\r\n")
        while written < rows:
            lot += 1
            code, phone = households[lot % len(households)]
            who = code if lot % 3 else phone
            name, category, price_per_kg = PRODUCTS[lot % len(PRODUCTS)]
            sizes = SIZES[: 1 + lot % 4]
            harvest = f"{1 + lot % 28:02d}/{1 + lot % 12:02d}/2026"
            for label, unit, kilos, grams in sizes:
                if written >= rows:
                    break
                price = round(price_per_kg * kilos * rng.uniform(0.9, 1.2) / 1000) * 1000
                stock = rng.choice([0, rng.randrange(1, 40), rng.randrange(40, 1500)])
                sku = f"{code}-{lot:05d}-{fold(label).replace(' ', '').upper()}"
                handle.write(
                    f"{who};{sku};{name} lô {lot};{label};{category};{unit};{vn(price)};{vn(stock)};{grams};"
                    f"{harvest};{30 + lot % 90};Nông sản Bình Phước, hàng tuyển chọn, đóng gói tại hợp tác xã\r\n"
                )
                written += 1


# -- the world: a cooperative with member households --------------------------------------------------------------


async def make_world(settings: Settings) -> dict[str, Any]:
    from agrimarket.accounts.repository import AccountRepository
    from agrimarket.accounts.service import AccountService
    from agrimarket.models import Membership, Organization, OrganizationKind, Role, User

    engine = create_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            accounts = AccountService(AccountRepository(session))
            user, coop = await accounts.register(
                phone="0911000001",
                password=secrets.token_urlsafe(12),
                full_name="Chủ nhiệm HTX",
                organization_name="HTX Nông sản Bình Phước",
                kind=OrganizationKind.cooperative,
            )
            households: list[tuple[str, str, str]] = []
            for i in range(HOUSEHOLDS):
                phone = f"+8491200{i:04d}"
                owner = User(phone=phone, full_name=f"Chủ hộ {i}", password_hash=user.password_hash)
                household = Organization(
                    id=uuid.uuid4(),
                    name=f"Hộ {i}",
                    kind=OrganizationKind.household,
                    cooperative_id=coop.id,
                    member_code=f"HTX-{i:03d}",
                )
                session.add_all([owner, household])
                await session.flush()
                session.add(Membership(user_id=owner.id, organization_id=household.id, role=Role.owner))
                households.append((f"HTX-{i:03d}", "0" + phone[3:], str(household.id)))
        return {"cooperative_id": str(coop.id), "user_id": str(user.id), "households": households}
    finally:
        await engine.dispose()


async def wipe_catalogue(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            for table in ("listings", "stock_movements", "stock_levels", "variants", "products", "import_row_errors"):
                await connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - our own table names
    finally:
        await engine.dispose()


# -- the two methods, each in a fresh process -------------------------------------------------------------------


def _peak_mb() -> float:
    kib = status_kib("VmHWM")
    if kib is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kib / 1024


async def run_import(settings: Settings, world: dict[str, Any], path: Path) -> dict[str, Any]:
    from agrimarket.imports import tasks
    from agrimarket.imports.files import store
    from agrimarket.models import ImportJob, ImportStatus
    from agrimarket.worker import JobContext

    engine = create_engine(settings)
    maker = make_sessionmaker(engine)
    try:
        job_id = uuid.uuid4()
        key = f"imports/bench/{job_id.hex}.csv"
        size = await asyncio.to_thread(lambda: path.stat().st_size)
        await store(tasks.import_storage(settings), key, path)
        async with transaction(maker) as session:
            session.add(
                ImportJob(
                    id=job_id,
                    organization_id=uuid.UUID(world["cooperative_id"]),
                    user_id=uuid.UUID(world["user_id"]),
                    filename=path.name,
                    file_format="csv",
                    storage_key=key,
                    content_hash="0" * 64,
                    status=ImportStatus.validating,
                    options={},
                    detected={"bytes": size},
                )
            )

        def context(kind: str) -> JobContext:
            return JobContext(
                job_id=uuid.uuid4(),
                kind=kind,
                attempt=1,
                max_attempts=3,
                organization_id=uuid.UUID(world["cooperative_id"]),
                worker_id="bench",
                settings=settings,
                sessionmaker=maker,
            )

        payload = {"import_id": str(job_id)}
        reset_peak()
        started = time.perf_counter()
        await tasks.preview_import(context(tasks.PREVIEW_KIND), payload)
        previewed = time.perf_counter()
        async with transaction(maker) as session:
            job = await session.get(ImportJob, job_id)
            assert job is not None
            assert job.status is ImportStatus.previewed, job.message
            preview = {"rows": job.total_rows, "created": job.created_count, "errors": job.error_count}
            # What the apply will read: the rows the preview kept, or (without them) the file again.
            kept = await tasks.import_storage(settings).exists(tasks.checked_key(job))
            assert job.error_count == 0, f"the generated file has {job.error_count} errors"
            job.status = ImportStatus.applying
            job.options = {"mode": "all_or_nothing", "zero_missing": False}
        applying = time.perf_counter()
        await tasks.apply_import(context(tasks.APPLY_KIND), payload)
        finished = time.perf_counter()
        peak = _peak_mb()
        async with transaction(maker) as session:
            job = await session.get(ImportJob, job_id)
            assert job is not None
            assert job.status is ImportStatus.applied, job.message
        return {
            "preview": preview,
            "validate_seconds": previewed - started,
            "apply_seconds": finished - applying,
            "seconds": (previewed - started) + (finished - applying),
            "peak_rss_mb": peak,
            "apply_read_kept_rows": kept,
            "rows_written": await _counts(maker),
        }
    finally:
        await engine.dispose()


async def _counts(maker: Any) -> dict[str, int]:
    async with transaction(maker) as session:
        counts = {}
        for table in ("products", "variants", "stock_levels", "stock_movements"):
            counts[table] = int((await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())  # noqa: S608
        return counts


def floor_rows(world: dict[str, Any], path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The import's rows as the four tables hold them, prepared in full before the clock starts."""
    by_key = {code: org for code, _, org in world["households"]} | {p: org for _, p, org in world["households"]}
    now = datetime.now(UTC)
    products: dict[tuple[str, str], tuple[Any, ...]] = {}
    positions: dict[tuple[str, str], int] = {}
    variants, levels, movements = [], [], []
    with path.open(encoding="utf-8-sig") as handle:
        next(handle)
        for line, record in enumerate(handle, start=2):
            who, sku, name, label, category, unit, price, stock, grams, harvest, shelf, description = record.rstrip(
                "\r\n"
            ).split(";")
            org = uuid.UUID(by_key[who])
            key = (str(org), fold(name))
            day, month, year = (int(p) for p in harvest.split("/"))
            if key not in products:
                products[key] = (
                    uuid.uuid4(), org, name, description, CATEGORY[category], "active",
                    date(year, month, day), int(shelf), 1, fold(name), now, now,
                )  # fmt: skip
            product_id = products[key][0]
            position = positions.get(key, 0)
            positions[key] = position + 1
            variant_id = uuid.uuid4()
            on_hand = int(stock.replace(".", ""))
            variants.append(
                (variant_id, product_id, org, sku, label, UNIT[unit], int(price.replace(".", "")), int(grams),
                 position, 1, None, now, now)
            )  # fmt: skip
            levels.append((variant_id, org, on_hand, 0, now))
            if on_hand:
                movements.append(
                    (uuid.uuid4(), variant_id, org, "import", on_hand, 0, on_hand, 0,
                     f"Import {path.name}, line {line}", f"import:{uuid.uuid4()}:{variant_id}", None, now)
                )  # fmt: skip
    return {
        "products": list(products.values()),
        "variants": variants,
        "stock_levels": levels,
        "stock_movements": movements,
    }


COLUMNS = {
    "products": "id, organization_id, name, description, category, status, harvest_date, shelf_life_days, version, "
    "search_key, created_at, updated_at",
    "variants": "id, product_id, organization_id, sku, name, unit, price_vnd, weight_grams, position, version, "
    "archived_at, created_at, updated_at",
    "stock_levels": "variant_id, organization_id, on_hand, reserved, updated_at",
    "stock_movements": "id, variant_id, organization_id, kind, on_hand_delta, reserved_delta, on_hand_after, "
    "reserved_after, reason, reference, actor_user_id, created_at",
}


def run_floor(settings: Settings, world: dict[str, Any], path: Path) -> dict[str, Any]:
    rows = floor_rows(world, path)
    url = make_url(settings.database_url)
    reset_peak()
    if url.get_backend_name() == "sqlite":
        import sqlite3

        def sqlite_value(value: Any) -> Any:
            if isinstance(value, uuid.UUID):
                return value.hex  # what SQLAlchemy's Uuid stores on SQLite
            if isinstance(value, datetime):
                return value.replace(tzinfo=None).isoformat(sep=" ")
            return value.isoformat() if hasattr(value, "isoformat") else value

        prepared = {table: [tuple(sqlite_value(v) for v in row) for row in values] for table, values in rows.items()}
        lite = sqlite3.connect(url.database or "", isolation_level=None)
        lite.execute("PRAGMA journal_mode=WAL")
        lite.execute("PRAGMA synchronous=NORMAL")
        lite.execute("PRAGMA foreign_keys=ON")
        started = time.perf_counter()
        lite.execute("BEGIN IMMEDIATE")
        for table, values in prepared.items():
            marks = ", ".join("?" for _ in COLUMNS[table].split(","))
            lite.executemany(f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})", values)  # noqa: S608
        lite.execute("COMMIT")
        seconds = time.perf_counter() - started
        lite.close()
    else:
        import psycopg

        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
            started = time.perf_counter()
            for table, values in rows.items():
                marks = ", ".join("%s" for _ in COLUMNS[table].split(","))
                cursor.executemany(f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})", values)  # noqa: S608
            connection.commit()
            seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_rss_mb": _peak_mb(), "rows_written": {t: len(v) for t, v in rows.items()}}


def child(method: str, settings_json: str, world_json: str, path: str) -> None:
    configure_logging(json_logs=False, level="WARNING")
    settings = Settings.model_validate_json(settings_json)
    world = json.loads(world_json)
    if method == "import":
        result = asyncio.run(run_import(settings, world, Path(path)))
    else:
        result = run_floor(settings, world, Path(path))
    print(json.dumps(result))


def _in_fresh_process(method: str, settings: Settings, world: dict[str, Any], path: Path) -> dict[str, Any]:
    settings_json = settings.model_dump_json(exclude={"secret_key", "encryption_keys"})
    env = {**os.environ, "AGRIMARKET_SECRET_KEY": "bench", "AGRIMARKET_ENCRYPTION_KEYS": new_fernet_key()}
    code = "import sys; from bench.bulk_import import child; child(*sys.argv[1:])"
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-c", code, method, settings_json, json.dumps(world), str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", help="PostgreSQL to make a throwaway database beside (default: SQLite)")
    args = parser.parse_args(argv)
    configure_logging(json_logs=False, level="WARNING")
    directory = Path(tempfile.mkdtemp(prefix="agrimarket-bench-import-"))
    try:
        with throwaway_database(directory, args.database_url) as url:
            settings = bench_settings(directory, url)
            migrate.upgrade(settings)
            world = asyncio.run(make_world(settings))
            path = directory / "hop-tac-xa-san-pham.csv"
            make_file(path, args.rows, [(code, phone) for code, phone, _ in world["households"]])
            size_mb = path.stat().st_size / (1024 * 1024)
            ours = _in_fresh_process("import", settings, world, path)
            asyncio.run(wipe_catalogue(settings))
            floor = _in_fresh_process("floor", settings, world, path)
            database = "sqlite" if url.startswith("sqlite") else "postgresql"
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if ours["rows_written"] != floor["rows_written"]:
        raise SystemExit(f"the two methods wrote different rows: {ours['rows_written']} vs {floor['rows_written']}")
    ratio = ours["seconds"] / floor["seconds"]
    result = {
        "database": database,
        "rows": args.rows,
        "file_mb": round(size_mb, 1),
        "import_seconds": round(ours["seconds"], 2),
        "validate_seconds": round(ours["validate_seconds"], 2),
        "apply_seconds": round(ours["apply_seconds"], 2),
        "import_rows_per_second": round(args.rows / ours["seconds"]),
        "import_peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "floor_seconds": round(floor["seconds"], 2),
        "floor_rows_per_second": round(args.rows / floor["seconds"]),
        "floor_peak_rss_mb": round(floor["peak_rss_mb"], 1),
        "time_ratio": round(ratio, 2),
        "apply_read_kept_rows": ours["apply_read_kept_rows"],
        "rows_written": ours["rows_written"],
    }
    print(f"{args.rows:,} rows ({size_mb:.1f} MB CSV, {HOUSEHOLDS} households), {database}")
    print(f"{'method':<8} {'seconds':>8} {'rows/s':>8} {'peak RSS':>9}")
    print(
        f"{'import':<8} {ours['seconds']:>8.2f} {result['import_rows_per_second']:>8,} {ours['peak_rss_mb']:>7.0f} MB"
        f"   (validate {ours['validate_seconds']:.2f} s + apply {ours['apply_seconds']:.2f} s, from the "
        f"{'rows the preview kept' if ours['apply_read_kept_rows'] else 'file again'})"
    )
    print(
        f"{'floor':<8} {floor['seconds']:>8.2f} {result['floor_rows_per_second']:>8,} {floor['peak_rss_mb']:>7.0f} MB"
    )
    print(f"rows written: {ours['rows_written']}")
    time_verdict = "met" if ratio <= 3 else "NOT met"
    memory_verdict = "met" if ours["peak_rss_mb"] < 250 else "NOT met"
    print(f"target: ≤ 3 × the floor's time {time_verdict} ({ratio:.2f}×); peak RSS < 250 MB {memory_verdict}")
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
