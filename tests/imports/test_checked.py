"""What a preview keeps for its apply: the apply reads the rows the preview checked instead of the file, and reads
the file again when they are missing, cut short, altered, or another file's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from agrimarket.config import Settings
from agrimarket.db import make_sessionmaker
from agrimarket.imports import checked, tasks, validation
from agrimarket.imports.checked import Checked, CheckedWriter, open_checked
from agrimarket.imports.validation import RowError, ValidRow
from agrimarket.media.storage import LocalStorage
from agrimarket.models import Category, ImportJob, StockLevel, Unit, Variant
from agrimarket.worker import JobContext
from tests.factories import Account, register
from tests.imports.support import apply, csv_text, encode, upload

KEY = checked.signing_key("test")
ROWS = 12


def _rows(count: int = ROWS, *, price: str = "120.000") -> list[list[Any]]:
    return [
        ["", f"SR-{i:03d}", f"Sầu riêng lô {i // 2}", f"Hộp {i % 2 + 1} kg", "Trái cây", "hộp", price, str(i),
         "1200", "15/06/2026", "10", "Cơm vàng"]
        for i in range(count)
    ]  # fmt: skip


@pytest.fixture
async def client(worker_app: tuple[FastAPI, Settings]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=worker_app[0])
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows were checked on their own (read from a file) since the test began."""
    counted = [0]
    check_row = validation.check_row

    def counting(*args: Any) -> Any:
        counted[0] += 1
        return check_row(*args)

    monkeypatch.setattr(checked, "check_row", counting)
    return counted


class Worker:
    """The import jobs run as the worker runs them, one at a time, when the test says."""

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.sessionmaker = make_sessionmaker(engine)

    async def run(self, kind: str, import_id: str) -> None:
        handler = tasks.preview_import if kind == tasks.PREVIEW_KIND else tasks.apply_import
        context = JobContext(
            job_id=uuid.uuid4(),
            kind=kind,
            attempt=1,
            max_attempts=1,
            organization_id=None,
            worker_id="test",
            settings=self.settings,
            sessionmaker=self.sessionmaker,
        )
        await handler(context, {"import_id": import_id})

    async def job(self, import_id: str) -> ImportJob:
        async with self.sessionmaker() as session:
            job = await session.get(ImportJob, uuid.UUID(import_id))
            assert job is not None
            return job

    async def kept_path(self, import_id: str) -> Path:
        job = await self.job(import_id)
        storage = tasks.import_storage(self.settings)
        path: Path = storage.path_for(tasks.checked_key(job))  # type: ignore[attr-defined]  # local storage
        return path

    async def stock(self, organization_id: str) -> dict[str, tuple[int, int]]:
        async with self.sessionmaker() as session:
            result = await session.execute(
                select(Variant.sku, Variant.price_vnd, StockLevel.on_hand)
                .join(StockLevel, StockLevel.variant_id == Variant.id)
                .where(Variant.organization_id == uuid.UUID(organization_id))
            )
            return {sku: (price, on_hand) for sku, price, on_hand in result.all()}


@pytest.fixture
def worker(worker_app: tuple[FastAPI, Settings], engine: AsyncEngine) -> Worker:
    return Worker(worker_app[1], engine)


async def _previewed(client: httpx.AsyncClient, worker: Worker, account: Account, data: bytes) -> str:
    response = await upload(client, account.headers, account.organization_id, data)
    assert response.status_code == 202, response.text
    import_id: str = response.json()["id"]
    await worker.run(tasks.PREVIEW_KIND, import_id)
    assert (await worker.job(import_id)).status.value == "previewed"
    return import_id


async def _applied(
    client: httpx.AsyncClient, worker: Worker, account: Account, import_id: str, mode: str = "all_or_nothing"
) -> ImportJob:
    response = await apply(client, account.headers, import_id, mode=mode)
    assert response.status_code == 202, response.text
    await worker.run(tasks.APPLY_KIND, import_id)
    return await worker.job(import_id)


def _expected(rows: list[list[Any]]) -> dict[str, tuple[int, int]]:
    return {row[1]: (int(row[6].replace(".", "")), int(row[7])) for row in rows}


async def test_apply_after_preview_reads_the_kept_rows_not_the_file(
    client: httpx.AsyncClient, worker: Worker, checks: list[int]
) -> None:
    account = await register(client)
    rows = _rows()
    import_id = await _previewed(client, worker, account, encode(csv_text(rows, delimiter=";"), "utf-8-bom"))
    assert checks[0] == ROWS
    assert (await worker.kept_path(import_id)).is_file()

    job = await _applied(client, worker, account, import_id)

    assert job.status.value == "applied", job.message
    assert checks[0] == ROWS  # not one row read and checked again
    assert await worker.stock(account.organization_id) == _expected(rows)
    assert not (await worker.kept_path(import_id)).exists()  # an applied import is not applied again


async def test_apply_reads_the_file_again_when_the_kept_rows_are_missing(
    client: httpx.AsyncClient, worker: Worker, checks: list[int]
) -> None:
    account = await register(client)
    rows = _rows()
    import_id = await _previewed(client, worker, account, csv_text(rows).encode())
    (await worker.kept_path(import_id)).unlink()

    job = await _applied(client, worker, account, import_id)

    assert job.status.value == "applied", job.message
    assert checks[0] == 2 * ROWS
    assert await worker.stock(account.organization_id) == _expected(rows)


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda data: data.replace(b"120000", b"1"), id="altered"),
        pytest.param(lambda data: data[: data.rindex(b"\n", 0, -1) + 1], id="cut-short"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
async def test_kept_rows_spoiled_after_the_preview_are_not_trusted(
    client: httpx.AsyncClient, worker: Worker, checks: list[int], spoil: Callable[[bytes], bytes]
) -> None:
    account = await register(client)
    rows = _rows()
    import_id = await _previewed(client, worker, account, csv_text(rows).encode())
    kept = await worker.kept_path(import_id)
    kept.write_bytes(spoil(kept.read_bytes()))

    job = await _applied(client, worker, account, import_id)

    assert job.status.value == "applied", job.message
    assert checks[0] == 2 * ROWS
    assert await worker.stock(account.organization_id) == _expected(rows)  # the file's prices, not the altered


async def test_kept_rows_of_another_file_are_not_used(
    client: httpx.AsyncClient, worker: Worker, checks: list[int]
) -> None:
    account = await register(client)
    cheap, dear = _rows(price="100.000"), _rows(price="150.000")
    first = await _previewed(client, worker, account, csv_text(cheap).encode())
    second = await _previewed(client, worker, account, csv_text(dear).encode())
    (await worker.kept_path(second)).write_bytes((await worker.kept_path(first)).read_bytes())

    job = await _applied(client, worker, account, second)

    assert job.status.value == "applied", job.message
    assert checks[0] == 3 * ROWS
    assert await worker.stock(account.organization_id) == _expected(dear)


async def test_valid_rows_applied_from_the_kept_rows_leave_out_and_report_the_same_errors(
    client: httpx.AsyncClient, worker: Worker, checks: list[int]
) -> None:
    account = await register(client)
    rows = _rows()
    rows[3][6] = "-5"  # negative price
    rows[5][1] = rows[4][1]  # a SKU twice
    rows[7][7] = "mười"  # text for stock
    import_id = await _previewed(client, worker, account, csv_text(rows).encode())
    url = f"/api/v1/imports/{import_id}/errors"
    previewed = (await client.get(url, headers=account.headers)).json()["items"]
    assert [e["line"] for e in previewed] == [5, 7, 9]

    job = await _applied(client, worker, account, import_id, mode="valid_rows")

    assert job.status.value == "applied", job.message
    assert checks[0] == ROWS
    assert (job.created_count, job.error_rows) == (ROWS - 3, 3)
    applied = (await client.get(url, headers=account.headers)).json()["items"]
    assert [(e["line"], e["column"], e["value"], e["message"]) for e in applied] == [
        (e["line"], e["column"], e["value"], e["message"]) for e in previewed
    ]
    expected = _expected([row for i, row in enumerate(rows) if i not in (3, 5, 7)])
    assert await worker.stock(account.organization_id) == expected


# -- the kept file itself ---------------------------------------------------------------------------------------


def _written(path: Path, chunks: list[list[Checked]], import_id: uuid.UUID, content_hash: str = "ab" * 32) -> None:
    writer = CheckedWriter(path, import_id, content_hash, KEY)
    for chunk in chunks:
        writer.add(chunk, {"sku": "Mã SKU"})
    writer.finish({"sku": "Mã SKU"})


def test_checked_rows_read_back_as_they_were_written(tmp_path: Path) -> None:
    full = ValidRow(
        line=2,
        household="HTX-001",
        sku="SR-1KG",
        name="Sầu riêng Ri6",
        variant_name="Hộp 1 kg",
        category=Category.fruit,
        unit=Unit.hop,
        price_vnd=120_000,
        on_hand=7,
        weight_grams=1200,
        harvest_date=date(2026, 6, 15),
        shelf_life_days=10,
        description="Cơm vàng, hạt lép\nđóng hộp",
    )
    bare = ValidRow(3, None, "SR-2", "Sầu riêng", None, None, None, 1, 0, None, None, None, None)
    refused = Checked(
        4, "0912 345 678", None, None, [RowError(4, "Giá bán", "-5", "Enter a price of 0 or more.", "too_small")]
    )
    chunks = [[Checked(2, "HTX-001", "SR-1KG", full), Checked(3, None, "SR-2", bare)], [refused]]
    import_id = uuid.uuid4()
    _written(tmp_path / "kept", chunks, import_id)

    kept = open_checked(tmp_path / "kept", import_id, "ab" * 32, KEY)

    assert kept is not None
    assert (kept.headers, kept.rows) == ({"sku": "Mã SKU"}, 3)
    assert list(kept.chunks()) == chunks
    assert kept.fraction_read == 1.0


def test_kept_rows_are_not_used_for_another_import_file_or_key(tmp_path: Path) -> None:
    import_id = uuid.uuid4()
    _written(tmp_path / "kept", [[Checked(2, None, "SR-2", None, [])]], import_id)

    assert open_checked(tmp_path / "kept", import_id, "ab" * 32, KEY) is not None
    assert open_checked(tmp_path / "kept", uuid.uuid4(), "ab" * 32, KEY) is None
    assert open_checked(tmp_path / "kept", import_id, "cd" * 32, KEY) is None
    assert open_checked(tmp_path / "kept", import_id, "ab" * 32, checked.signing_key("other")) is None
    assert open_checked(tmp_path / "missing", import_id, "ab" * 32, KEY) is None


async def test_an_apply_whose_kept_rows_cannot_be_deleted_is_still_applied(
    client: httpx.AsyncClient, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await register(client)
    rows = _rows()
    import_id = await _previewed(client, worker, account, csv_text(rows).encode())

    async def failing(self: LocalStorage, key: str) -> None:
        raise OSError("disk went away")

    monkeypatch.setattr(LocalStorage, "delete", failing)
    job = await _applied(client, worker, account, import_id)

    assert job.status.value == "applied", job.message
    assert await worker.stock(account.organization_id) == _expected(rows)
