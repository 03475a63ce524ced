"""The downloadable templates: the columns in the order the import reads best, two example rows, and (in the
workbook) a second sheet that explains each column, with the same words as a note on each header."""

from __future__ import annotations

import csv
import io
from functools import lru_cache

from agrimarket.imports.columns import COLUMNS

EXAMPLES: tuple[dict[str, str], ...] = (
    {
        "household": "0912345678",
        "sku": "SR-RI6-1KG",
        "name": "Sầu riêng Ri6 Bình Phước",
        "variant_name": "Hộp 1 kg",
        "category": "Trái cây",
        "unit": "hộp",
        "price_vnd": "120000",
        "on_hand": "25",
        "weight_grams": "1200",
        "harvest_date": "15/06/2026",
        "shelf_life_days": "10",
        "description": "Cơm vàng, hạt lép, vỏ mỏng.",
    },
    {
        "household": "HTX-012",
        "sku": "DIEU-RANG-500G",
        "name": "Hạt điều rang muối",
        "variant_name": "Túi 500 g",
        "category": "Hạt",
        "unit": "túi",
        "price_vnd": "185000",
        "on_hand": "140",
        "weight_grams": "550",
        "harvest_date": "",
        "shelf_life_days": "180",
        "description": "Điều Bình Phước loại A, rang củi.",
    },
)
_NUMBERS = {"price_vnd", "on_hand", "weight_grams", "shelf_life_days"}


@lru_cache(maxsize=1)
def template_csv() -> bytes:
    """UTF-8 with a BOM and commas: what Excel opens correctly whatever the computer's regional settings."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([c.header for c in COLUMNS])
    for example in EXAMPLES:
        writer.writerow([example[c.field] for c in COLUMNS])
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")


@lru_cache(maxsize=1)
def template_xlsx() -> bytes:
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Sản phẩm"
    bold = Font(bold=True)
    required_fill = PatternFill("solid", fgColor="FFF2CC")
    sheet.append([c.header for c in COLUMNS])
    for example in EXAMPLES:
        sheet.append(
            [int(example[c.field]) if c.field in _NUMBERS and example[c.field] else example[c.field] for c in COLUMNS]
        )
    for index, column in enumerate(COLUMNS, start=1):
        cell = sheet.cell(row=1, column=index)
        cell.font = bold
        if column.required:
            cell.fill = required_fill
        cell.comment = Comment(f"{column.help_vi}\n\n{column.help_en}", "AgriMarket", width=320, height=160)
        letter = get_column_letter(index)
        sheet.column_dimensions[letter].width = max(14, len(column.header) + 4)
        if column.field == "price_vnd":
            for row in range(2, 2 + len(EXAMPLES)):
                sheet.cell(row=row, column=index).number_format = "#,##0"
        if column.field in ("household", "sku"):
            # Keep the leading 0 of a phone number and digits-only SKUs as typed.
            for row in range(2, 1000):
                sheet.cell(row=row, column=index).number_format = "@"
    sheet.freeze_panes = "A2"

    guide = workbook.create_sheet("Hướng dẫn")
    guide.append(["Cột", "Column", "Bắt buộc / Required", "Cách nhập", "How to fill it in", "Ví dụ / Example"])
    for cell in guide[1]:
        cell.font = bold
    for column in COLUMNS:
        guide.append(
            [
                column.header,
                column.english,
                "Có / Yes" if column.required else "",
                column.help_vi,
                column.help_en,
                column.example,
            ]
        )
    guide.append([])
    guide.append(
        [
            "Lưu ý",
            "Notes",
            "",
            "Mỗi dòng là một mã SKU. Giá và tồn kho ghi đè số hiện có. Tải lại cùng một tệp không thay đổi gì.",
            "One row per SKU. Price and stock replace the current figures. Uploading the same file again changes "
            "nothing.",
            "",
        ]
    )
    for letter, width in zip("ABCDEF", (20, 18, 16, 60, 60, 24), strict=True):
        guide.column_dimensions[letter].width = width
        for cell in guide[letter]:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
