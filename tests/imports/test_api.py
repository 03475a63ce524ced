"""Bulk import through the API: preview, apply, errors, tenancy, idempotency, the error report, the templates."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.models import Job, Listing, StockMovement
from tests.catalog.helpers import add_listing, desired_version
from tests.factories import Account, new_phone, register
from tests.imports.support import apply, csv_text, encode, upload, xlsx_bytes
from tests.imports.test_parsing import ROWS

pytestmark = pytest.mark.usefixtures("app")


def _row(
    sku: str, name: str = "Sầu riêng Ri6", *, price: Any = "120.000", stock: Any = "10", **cells: Any
) -> list[Any]:
    row = ["", sku, name, "Hộp 1 kg", "Trái cây", "hộp", price, stock, "1200", "15/06/2026", "10", "Cơm vàng"]
    for index, key in enumerate(
        [
            "household",
            "sku",
            "name",
            "variant",
            "category",
            "unit",
            "price",
            "stock",
            "weight",
            "harvest",
            "shelf",
            "desc",
        ]
    ):
        if key in cells:
            row[index] = cells[key]
    return row


def _own(rows: list[list[Any]]) -> list[list[Any]]:
    """The rows for the uploading household itself (household cell empty)."""
    return [["", *row[1:]] for row in rows]


async def _catalogue(client: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    response = await client.get(
        f"/api/v1/organizations/{account.organization_id}/products?limit=100", headers=account.headers
    )
    assert response.status_code == 200, response.text
    products = response.json()["items"]
    return sorted(
        (
            {
                "name": p["name"],
                "category": p["category"],
                "harvest_date": p["harvest_date"],
                "shelf_life_days": p["shelf_life_days"],
                "description": p["description"],
                "variants": sorted(
                    (v["sku"], v["name"], v["unit"], v["price_vnd"], v["weight_grams"], v["stock"]["on_hand"])
                    for v in p["variants"]
                ),
            }
            for p in products
        ),
        key=lambda p: str(p["name"]),
    )


async def _movements(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(StockMovement)) or 0)


async def _previewed(client: httpx.AsyncClient, account: Account, data: bytes, name: str = "f.csv") -> dict[str, Any]:
    response = await upload(client, account.headers, account.organization_id, data, name)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "previewed", body
    return body


# -- same content, every format -----------------------------------------------------------------------------


FORMATS = [
    ("utf-8", ","),
    ("utf-8-bom", ";"),
    ("utf-16", "\t"),
    ("utf-16-le-nobom", ","),
    ("cp1258", ";"),
    ("cp1258", "\t"),
    ("xlsx", ""),
]


async def test_the_same_content_in_every_encoding_delimiter_and_format_gives_the_same_result(
    client: httpx.AsyncClient,
) -> None:
    rows = _own(ROWS)
    outcomes = []
    for encoding, delimiter in FORMATS:
        account = await register(client)
        if encoding == "xlsx":
            data, name = xlsx_bytes(rows), "f.xlsx"
        else:
            data, name = encode(csv_text(rows, delimiter=delimiter), encoding), "f.csv"
        preview = await _previewed(client, account, data, name)
        figures = {k: preview[k] for k in ("total_rows", "created_count", "updated_count", "error_rows")}
        applied = await apply(client, account.headers, preview["id"])
        assert applied.status_code == 200, applied.text
        assert applied.json()["status"] == "applied"
        outcomes.append((encoding, delimiter, figures, await _catalogue(client, account)))
    first = outcomes[0]
    assert first[2] == {"total_rows": 4, "created_count": 4, "updated_count": 0, "error_rows": 0}
    assert len(first[3]) == 4
    for outcome in outcomes[1:]:
        assert outcome[2:] == first[2:], f"{outcome[0]} {outcome[1]!r} differs"


# -- broken rows ----------------------------------------------------------------------------------------------


BROKEN = [
    _row("OK-1", "Sầu riêng Ri6"),
    _row("EMPTY-NAME", ""),
    _row("NEG-PRICE", "Mít Thái", price="-5000"),
    _row("TEXT-STOCK", "Mít Thái", stock="mười"),
    _row("OK-1", "Sầu riêng Ri6", price="130.000"),
    _row("FORMULA", '=HYPERLINK("http://x","click")'),
    _row("OK-2", "Bơ 034", household="0999999999"),
]


async def test_broken_rows_are_reported_with_line_column_value_and_message(client: httpx.AsyncClient) -> None:
    cooperative = await register(client, kind="cooperative", name="HTX Bình Phước")
    preview = await _previewed(client, cooperative, csv_text(BROKEN).encode())
    assert preview["error_rows"] == 6
    assert preview["created_count"] == 1
    response = await client.get(f"/api/v1/imports/{preview['id']}/errors", headers=cooperative.headers)
    errors = {(e["line"], e["column"], e["code"]): e for e in response.json()["items"]}
    assert set(errors) == {
        (3, "Tên sản phẩm", "empty"),
        (4, "Giá bán", "invalid"),
        (5, "Tồn kho", "invalid"),
        (6, "Mã SKU", "duplicate_sku"),
        (7, "Tên sản phẩm", "formula"),
        (8, "Hộ sản xuất", "unknown_household"),
    }
    assert errors[(4, "Giá bán", "invalid")]["value"] == "-5000"
    assert "whole đồng" in errors[(4, "Giá bán", "invalid")]["message"]
    assert errors[(5, "Tồn kho", "invalid")]["value"] == "mười"
    assert "line 2" in errors[(6, "Mã SKU", "duplicate_sku")]["message"]
    assert "0999999999" in errors[(8, "Hộ sản xuất", "unknown_household")]["message"]
    assert "formula" in errors[(7, "Tên sản phẩm", "formula")]["message"]


async def test_all_or_nothing_with_errors_is_refused_and_valid_rows_applies_only_those(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await register(client)
    preview = await _previewed(client, account, csv_text(_own(BROKEN)).encode())
    before = await _movements(sessionmaker)

    refused = await apply(client, account.headers, preview["id"])
    assert refused.status_code == 409
    assert "valid rows" in refused.json()["message"]
    assert await _catalogue(client, account) == []
    assert await _movements(sessionmaker) == before

    applied = await apply(client, account.headers, preview["id"], mode="valid_rows")
    assert applied.status_code == 200, applied.text
    assert applied.json()["status"] == "applied"
    catalogue = await _catalogue(client, account)
    assert sorted(v[0] for p in catalogue for v in p["variants"]) == ["OK-1", "OK-2"]  # the second OK-1: refused
    assert catalogue[1]["variants"][0][3] == 120_000
    assert await _movements(sessionmaker) == before + 2


async def test_all_or_nothing_leaves_the_database_untouched_when_a_row_fails_at_apply_time(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The catalogue changed after the preview (stock held for an order): the apply finds the error, writes
    nothing, and the import is back to `previewed` with the reason."""
    account = await register(client)
    first = await _previewed(client, account, csv_text([_row("SR-1", stock="10"), _row("SR-2")]).encode())
    assert (await apply(client, account.headers, first["id"])).status_code == 200
    products = await _catalogue(client, account)

    preview = await _previewed(
        client,
        account,
        csv_text([_row("SR-1", stock="2", price="99.000"), _row("SR-2", price="88.000"), _row("SR-3")]).encode(),
    )
    assert (preview["created_count"], preview["updated_count"], preview["error_rows"]) == (1, 2, 0)
    variant_id = await _variant_id(client, account, "SR-1")
    from agrimarket.inventory.repository import InventoryRepository
    from agrimarket.inventory.service import InventoryService

    async with sessionmaker() as session:
        await InventoryService(InventoryRepository(session)).reserve(variant_id, 5, reference="order:test:1")
        await session.commit()
    movements = await _movements(sessionmaker)

    response = await apply(client, account.headers, preview["id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "previewed"
    assert "Nothing was applied" in body["message"]
    assert body["errors"][0]["code"] == "below_reserved"
    assert await _catalogue(client, account) == products
    assert await _movements(sessionmaker) == movements


async def _variant_id(client: httpx.AsyncClient, account: Account, sku: str) -> uuid.UUID:
    response = await client.get(
        f"/api/v1/organizations/{account.organization_id}/stock?q={sku}", headers=account.headers
    )
    (row,) = [r for r in response.json()["items"] if r["sku"] == sku]
    return uuid.UUID(row["variant_id"])


# -- idempotency and the marketplaces -------------------------------------------------------------------------


async def test_uploading_the_same_file_twice_changes_nothing_the_second_time(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await register(client)
    data = encode(csv_text(_own(ROWS), delimiter=";"), "utf-8-bom")
    first = await _previewed(client, account, data)
    assert (await apply(client, account.headers, first["id"])).json()["created_count"] == 4
    catalogue = await _catalogue(client, account)
    movements = await _movements(sessionmaker)

    second = await _previewed(client, account, data)
    assert (second["created_count"], second["updated_count"], second["unchanged_count"]) == (0, 0, 4)
    assert second["earlier_upload"]["id"] == first["id"]
    again = await apply(client, account.headers, second["id"])
    assert again.json()["status"] == "applied"
    assert await _catalogue(client, account) == catalogue
    assert await _movements(sessionmaker) == movements
    # An import is applied once: the same import cannot be applied again.
    assert (await apply(client, account.headers, second["id"])).status_code == 409


async def test_each_changed_variant_listing_is_marked_dirty_once(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    account = await register(client)
    rows = [_row("SR-1"), _row("SR-2"), _row("SR-3")]
    first = await _previewed(client, account, csv_text(rows).encode())
    await apply(client, account.headers, first["id"])
    product_id = await _product_id(client, account)
    listings = {
        sku: await add_listing(
            sessionmaker,
            organization_id=account.organization_id,
            product_id=str(product_id),
            variant_id=str(await _variant_id(client, account, sku)),
        )
        for sku in ("SR-1", "SR-2", "SR-3")
    }
    # SR-1: price, stock and the product's description all change; SR-2: its stock; SR-3: nothing.
    changed = [
        _row("SR-1", price="125.000", stock="7", desc="Mới"),
        _row("SR-2", stock="3", desc="Mới"),
        _row("SR-3", desc="Mới"),
    ]
    preview = await _previewed(client, account, csv_text(changed).encode())
    async with sessionmaker() as session:
        jobs_before = int(await session.scalar(select(func.count()).select_from(Job)) or 0)
    assert (await apply(client, account.headers, preview["id"])).json()["status"] == "applied"
    # The product's description changed: every variant's listing once, however many of its fields changed.
    assert {sku: await desired_version(sessionmaker, lid) for sku, lid in listings.items()} == {
        "SR-1": 2,
        "SR-2": 2,
        "SR-3": 2,
    }
    async with sessionmaker() as session:
        jobs = int(await session.scalar(select(func.count()).select_from(Job)) or 0)
        connections = await session.scalar(select(func.count(func.distinct(Listing.connection_id))))
    assert jobs - jobs_before == connections  # one sync job per shop, not one per row

    only_stock = await _previewed(client, account, csv_text([_row("SR-2", stock="4", desc="Mới")]).encode())
    await apply(client, account.headers, only_stock["id"])
    assert {sku: await desired_version(sessionmaker, lid) for sku, lid in listings.items()} == {
        "SR-1": 2,
        "SR-2": 3,
        "SR-3": 2,
    }


async def _product_id(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.get(f"/api/v1/organizations/{account.organization_id}/products", headers=account.headers)
    (product,) = response.json()["items"]
    return str(product["id"])


# -- products missing from the file -----------------------------------------------------------------------------


async def test_missing_products_are_counted_and_zeroed_only_when_asked(client: httpx.AsyncClient) -> None:
    account = await register(client)
    first = await _previewed(
        client, account, csv_text([_row("A-1", stock="5"), _row("B-1", "Mít", stock="8")]).encode()
    )
    await apply(client, account.headers, first["id"])

    only_a = csv_text([_row("A-1", stock="6")]).encode()
    preview = await _previewed(client, account, only_a)
    assert preview["missing_count"] == 1
    assert "not in the file" in preview["message"]
    await apply(client, account.headers, preview["id"])
    assert {v[0]: v[5] for p in await _catalogue(client, account) for v in p["variants"]} == {"A-1": 6, "B-1": 8}

    preview = await _previewed(client, account, only_a)
    applied = await apply(client, account.headers, preview["id"], zero=True)
    assert applied.json()["zeroed_count"] == 1
    assert {v[0]: v[5] for p in await _catalogue(client, account) for v in p["variants"]} == {"A-1": 6, "B-1": 0}


# -- who may import for whom ------------------------------------------------------------------------------------


async def _cooperative_with_members(client: httpx.AsyncClient) -> tuple[Account, Account, Account]:
    cooperative = await register(client, kind="cooperative", name="HTX Điều Bình Phước")
    one = await register(client, name="Hộ Một")
    two = await register(client, name="Hộ Hai")
    for member, code in ((one, "HTX-001"), (two, "HTX-002")):
        response = await client.post(
            f"/api/v1/organizations/{cooperative.organization_id}/members",
            json={"name": f"Hộ {code}", "member_code": code, "owner_phone": member.phone},
            headers=cooperative.headers,
        )
        assert response.status_code == 201, response.text
        member.organization_id = response.json()["id"]  # the member household the cooperative manages
    return cooperative, one, two


async def test_a_cooperative_imports_for_its_members_by_phone_or_member_code(client: httpx.AsyncClient) -> None:
    cooperative, one, two = await _cooperative_with_members(client)
    phone = one.phone.replace("091", "+84 91 ", 1)
    rows = [_row("D-1", "Hạt điều", household=phone), _row("D-1", "Hạt điều", household="htx-002")]
    preview = await _previewed(client, cooperative, csv_text(rows).encode())
    assert preview["error_rows"] == 0  # the same SKU for two households is two products
    assert sorted(h["rows"] for h in preview["detected"]["households"]) == [1, 1]
    assert (await apply(client, cooperative.headers, preview["id"])).json()["status"] == "applied"
    for member in (one, two):
        response = await client.get(
            f"/api/v1/organizations/{member.organization_id}/products", headers=cooperative.headers
        )
        assert [p["name"] for p in response.json()["items"]] == ["Hạt điều"]


async def test_a_household_imports_only_for_itself(client: httpx.AsyncClient) -> None:
    cooperative, one, _two = await _cooperative_with_members(client)
    # The member household's owner reaches it through the membership the cooperative made for them.
    rows = [_row("E-1"), _row("E-2", household="HTX-001"), _row("E-3", household="HTX-002")]
    response = await upload(client, one.headers, one.organization_id, csv_text(rows).encode())
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["error_rows"] == 1
    assert body["errors"][0]["line"] == 4
    assert "only its own" in body["errors"][0]["message"]
    # A cooperative's file is the cooperative admins' to upload; a household cannot see it.
    forbidden = await upload(client, one.headers, cooperative.organization_id, csv_text(rows).encode())
    assert forbidden.status_code == 404


# -- the error report, the templates ----------------------------------------------------------------------------


async def test_the_error_report_is_csv_that_no_spreadsheet_runs(client: httpx.AsyncClient) -> None:
    account = await register(client)
    rows = [
        _row("F-1", "=cmd|' /C calc'!A0"),
        _row("F-2", "@SUM(1+1)"),
        _row("F-3", "Bình thường", price="+1"),
        _row("F-4", "Tab", desc="\tx"),
        _row("", "Không mã"),
    ]
    preview = await _previewed(client, account, csv_text(rows).encode())
    response = await client.get(
        f"/api/v1/imports/{preview['id']}/errors.csv?delimiter=semicolon", headers=account.headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig")), delimiter=";"))
    assert table[0][0].startswith("Dòng")
    cells = [cell for row in table[1:] for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "'=cmd|' /C calc'!A0" in cells
    assert "'@SUM(1+1)" in cells
    assert len(table) - 1 == preview["error_count"]


async def test_the_templates_import_as_they_are(client: httpx.AsyncClient) -> None:
    account = await register(client)
    columns = await client.get("/api/v1/imports/columns", headers=account.headers)
    assert {c["field"] for c in columns.json() if c["required"]} == {"sku", "name", "price_vnd", "on_hand"}
    for suffix in ("csv", "xlsx"):
        response = await client.get(f"/api/v1/imports/template.{suffix}", headers=account.headers)
        assert response.status_code == 200
        assert "attachment" in response.headers["content-disposition"]
        preview = await _previewed(client, account, response.content, f"template.{suffix}")
        # Every column is read; the examples name other households, which is this household's only error.
        assert preview["detected"]["ignored_columns"] == []
        assert len(preview["detected"]["columns"]) == 12
        assert {e["code"] for e in preview["errors"]} == {"unknown_household"}


async def test_a_file_that_cannot_be_read_fails_with_the_reason(client: httpx.AsyncClient) -> None:
    account = await register(client)
    response = await upload(client, account.headers, account.organization_id, b"Ten;Gia\nA;1\n")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "failed"
    assert "Mã SKU" in body["message"]
    assert (await apply(client, account.headers, body["id"])).status_code == 409
    empty = await upload(client, account.headers, account.organization_id, b"")
    assert empty.status_code == 422


async def test_imports_are_listed_newest_first(client: httpx.AsyncClient) -> None:
    account = await register(client)
    ids = [(await _previewed(client, account, csv_text([_row(f"L-{i}")]).encode()))["id"] for i in range(3)]
    response = await client.get(
        f"/api/v1/organizations/{account.organization_id}/imports?limit=2", headers=account.headers
    )
    page = response.json()
    assert [i["id"] for i in page["items"]] == ids[::-1][:2]
    rest = await client.get(
        f"/api/v1/organizations/{account.organization_id}/imports?limit=2&cursor={page['next_cursor']}",
        headers=account.headers,
    )
    assert [i["id"] for i in rest.json()["items"]] == ids[:1]
    assert new_phone()  # keeps the factories' numbering moving for the other tests


async def test_the_rows_of_one_product_must_agree_on_its_fields(client: httpx.AsyncClient) -> None:
    account = await register(client)
    rows = [
        _row("P-1", "Bưởi da xanh", category="Trái cây"),
        _row("P-2", "Bưởi da xanh", category="Rau củ"),
        _row("P-3", "BƯỞI DA XANH", category="Trái cây"),
    ]
    preview = await _previewed(client, account, csv_text(rows).encode())
    assert (preview["created_count"], preview["error_rows"]) == (2, 1)
    (error,) = preview["errors"]
    assert (error["line"], error["column"], error["code"]) == (3, "Danh mục", "product_conflict")
    assert "Line 2" in error["message"]
    await apply(client, account.headers, preview["id"], mode="valid_rows")
    (product,) = await _catalogue(client, account)
    assert [v[0] for v in product["variants"]] == ["P-1", "P-3"]  # one product, whatever the capitals
