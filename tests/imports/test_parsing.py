"""Reading files as offices make them: every encoding, delimiter and format gives the same rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from agrimarket.imports.columns import field_for
from agrimarket.imports.parsing import FileProblem, RowSource
from agrimarket.imports.validation import RowError, ValidRow, check_row, parse_number
from agrimarket.models import Category, Unit
from tests.imports.support import HEADER, csv_text, encode, to_cp1258, xlsx_bytes

# Tones that Windows-1258 spells with combining marks (ầ ố ự ễ ỳ ẹ …) and the letters it has whole (đ ơ ư ă).
ROWS: list[list[Any]] = [
    ["0912345678", "SR-RI6-1KG", "Sầu riêng Ri6 Bình Phước", "Hộp 1 kg", "Trái cây", "hộp", "120.000", "25", "1.200",
     "15/06/2026", "10", "Cơm vàng, hạt lép; vỏ mỏng"],
    ["HTX-012", "dieu-rang-500g", "Hạt điều rang muối ớt", "Túi 500 g", "Hạt", "túi", "185000", "1.250", "550", "",
     "180", "Điều loại A\nrang củi"],
    ["", "TIEU-DEN-1KG", "Tiêu đen Lộc Ninh", "", "Gia vị", "kg", "1.250.000 ₫", "0", "1000", "01/12/2026", "", ""],
    ["", "MAT-ONG-500ML", "Mật ong hoa cà phê", "Chai 500 ml", "Mật ong", "chai", "150000", "12", "700", "", "365",
     "Ưu đãi: mua 2 tặng 1"],
]  # fmt: skip

ENCODINGS = ["utf-8", "utf-8-bom", "utf-16", "utf-16-le-nobom", "cp1258"]
DELIMITERS = [",", ";", "\t"]


def _read(path: Path) -> tuple[list[ValidRow | list[RowError]], dict[str, Any]]:
    with RowSource(path) as source:
        results = [check_row(row.line, row.cells, source.layout.headers) for row in source.rows()]
        return results, source.layout.describe()


def _csv(tmp_path: Path, rows: list[list[Any]], encoding: str, delimiter: str, header: list[str] = HEADER) -> Path:
    path = tmp_path / f"f-{encoding}-{ord(delimiter)}.csv"
    path.write_bytes(encode(csv_text(rows, delimiter=delimiter, header=header), encoding))
    return path


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> list[ValidRow | list[RowError]]:
    results, _ = _read(_csv(tmp_path_factory.mktemp("ref"), ROWS, "utf-8", ","))
    assert all(isinstance(r, ValidRow) for r in results), results
    return results


@pytest.mark.parametrize("delimiter", DELIMITERS, ids=["comma", "semicolon", "tab"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_and_delimiter_reads_the_same_rows(
    tmp_path: Path, encoding: str, delimiter: str, expected: list[ValidRow | list[RowError]]
) -> None:
    results, layout = _read(_csv(tmp_path, ROWS, encoding, delimiter))
    assert results == expected
    assert layout["delimiter"] == {",": "comma", ";": "semicolon", "\t": "tab"}[delimiter]
    assert (
        layout["encoding"]
        == {
            "utf-8": "utf-8",
            "utf-8-bom": "utf-8-sig",
            "utf-16": "utf-16",
            "utf-16-le-nobom": "utf-16-le",
            "cp1258": "cp1258",
        }[encoding]
    )


def test_an_xlsx_file_reads_the_same_rows(tmp_path: Path, expected: list[ValidRow | list[RowError]]) -> None:
    path = tmp_path / "f.xlsx"
    # As Excel keeps them: numbers as numbers, the phone number as text (a number would lose its leading 0).
    typed = [
        [*row[:6], parse_number(row[6]), parse_number(row[7]), parse_number(row[8]), row[9], row[10], row[11]]
        for row in ROWS
    ]
    path.write_bytes(xlsx_bytes(typed))
    results, layout = _read(path)
    assert results == expected
    assert layout["format"] == "xlsx"


def test_windows_1258_combining_tones_become_nfc(tmp_path: Path) -> None:
    raw = to_cp1258("Sầu riêng")
    assert "Sầu riêng".encode() not in raw
    assert b"\xcc" in raw  # U+0300, the combining grave, after the base letter
    path = tmp_path / "vn.csv"
    path.write_bytes(to_cp1258(csv_text([["", "SR-1", "Sầu riêng", "", "", "kg", "1", "1", "1", "", "", ""]])))
    (row,), _ = _read(path)
    assert isinstance(row, ValidRow)
    assert row.name == "Sầu riêng"  # NFC: equal to the string typed in this file


def test_headers_in_english_upper_case_or_without_accents_are_recognised() -> None:
    for header, field in {
        "Mã SKU": "sku",
        "MA SKU": "sku",
        "sku": "sku",
        "Tên sản phẩm": "name",
        "TEN SAN PHAM": "name",
        "Product name": "name",
        "Giá bán (VNĐ)": "price_vnd",
        "gia ban": "price_vnd",
        "Price": "price_vnd",
        "Tồn kho": "on_hand",
        "Số lượng": "on_hand",
        "Stock": "on_hand",
        "Đơn vị tính": "unit",
        "ĐVT": "unit",
        "Hộ sản xuất": "household",
        "Mã thành viên": "household",
        "Số điện thoại": "household",
        "Khối lượng (gram)": "weight_grams",
        "Ghi chú nội bộ": None,
        "Giá nhập": None,  # a purchase price is not the selling price
    }.items():
        assert field_for(header) == field, header


def test_vietnamese_and_english_numbers() -> None:
    assert parse_number("1.250.000") == 1_250_000
    assert parse_number("1,250,000") == 1_250_000
    assert parse_number("1.250") == 1250
    assert parse_number("120.000 ₫") == 120_000
    assert parse_number("120000đ") == 120_000
    assert parse_number("120 000") == 120_000
    assert parse_number("1,5") == 1.5
    assert parse_number("1.5") == 1.5
    assert parse_number("1.234,5") == 1234.5
    assert parse_number("2,0") == 2
    assert parse_number(1200.0) == 1200
    assert parse_number("-5") == -5
    assert parse_number("mười") == "mười"


def test_cells_read_as_vietnamese_offices_write_them(tmp_path: Path) -> None:
    path = _csv(tmp_path, ROWS, "utf-8", ";")
    results, _ = _read(path)
    first, second, third, _ = results
    assert isinstance(first, ValidRow)
    assert isinstance(second, ValidRow)
    assert isinstance(third, ValidRow)
    assert (first.price_vnd, first.on_hand, first.weight_grams) == (120_000, 25, 1200)
    assert first.category is Category.fruit
    assert first.unit is Unit.hop
    assert first.harvest_date == date(2026, 6, 15)
    assert second.sku == "DIEU-RANG-500G"  # stored upper case, like the catalog
    assert second.on_hand == 1250
    assert second.description == "Điều loại A\nrang củi"
    assert third.price_vnd == 1_250_000
    assert third.household is None
    assert third.variant_name is None


def test_a_quoted_cell_with_line_breaks_stays_one_row(tmp_path: Path) -> None:
    rows = [ROWS[1], ["", "X-1", "Bad", "", "", "kg", "abc", "1", "1", "", "", ""]]
    results, _ = _read(_csv(tmp_path, rows, "utf-8", ","))
    assert isinstance(results[0], ValidRow)
    assert results[0].line == 2
    errors = results[1]
    assert isinstance(errors, list)
    assert errors[0].line == 3  # the spreadsheet's row, not the text line (the cell above spans two)


def test_a_file_without_a_required_column_is_refused_as_a_whole(tmp_path: Path) -> None:
    header = [h for h in HEADER if h != "Giá bán"]
    path = _csv(tmp_path, [[c for i, c in enumerate(ROWS[0]) if HEADER[i] != "Giá bán"]], "utf-8", ",", header)
    with pytest.raises(FileProblem, match="Giá bán"):
        _read(path)


def test_two_columns_for_one_field_are_refused(tmp_path: Path) -> None:
    path = _csv(tmp_path, [[*ROWS[0], "1"]], "utf-8", ",", [*HEADER, "Stock"])
    with pytest.raises(FileProblem, match="both mean"):
        _read(path)


def test_an_old_xls_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "old.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512)
    with pytest.raises(FileProblem, match="xlsx"):
        RowSource(path)


def _cells(**given: Any) -> dict[str, Any]:
    cells: dict[str, Any] = {"sku": "SR-1", "name": "Sầu riêng", "price_vnd": "120.000", "on_hand": "5"}
    return cells | given


def test_a_cell_met_again_has_the_same_outcome_as_the_first_time() -> None:
    headers = {"price_vnd": "Giá bán"}
    first = check_row(2, _cells(price_vnd="mười nghìn"), headers)
    again = check_row(3, _cells(price_vnd="mười nghìn"), headers)

    assert isinstance(first, list)
    assert isinstance(again, list)
    assert [(e.column, e.value, e.message, e.code) for e in first] == [
        (e.column, e.value, e.message, e.code) for e in again
    ]
    assert {e.line for e in again} == {3}


def test_equal_cells_of_other_types_are_checked_each_on_its_own() -> None:
    """1, 1.0 and True are equal in Python; in a workbook's number column only the first two are a price."""
    for cell in (1, 1.0, True, 1, True):
        result = check_row(2, _cells(price_vnd=cell), {})
        if cell is True:
            assert isinstance(result, list), cell
        else:
            assert isinstance(result, ValidRow), result
            assert result.price_vnd == 1
