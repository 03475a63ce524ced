"""Import files as offices make them: the same rows in every encoding, delimiter and format."""

from __future__ import annotations

import codecs
import csv
import io
import unicodedata
from collections.abc import Sequence
from typing import Any

import httpx

HEADER = [
    "Hộ sản xuất",
    "Mã SKU",
    "Tên sản phẩm",
    "Quy cách",
    "Danh mục",
    "Đơn vị",
    "Giá bán",
    "Tồn kho",
    "Khối lượng (g)",
    "Ngày thu hoạch",
    "Hạn sử dụng (ngày)",
    "Mô tả",
]

# cp1258 spells these five tones as combining marks after a base letter it has (â, ê, ô, ơ, ư, ă…).
_CP1258_TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def to_cp1258(text: str) -> bytes:
    """Vietnamese as Windows-1258 writes it: precomposed where the code page has the letter, else a base letter
    followed by a combining tone mark (what Excel's "CSV" gives on a Vietnamese Windows)."""
    out = bytearray()
    for ch in unicodedata.normalize("NFC", text):
        try:
            out += ch.encode("cp1258")
            continue
        except UnicodeEncodeError:
            pass
        decomposed = unicodedata.normalize("NFD", ch)
        base = "".join(c for c in decomposed if c not in _CP1258_TONES)
        tones = "".join(c for c in decomposed if c in _CP1258_TONES)
        out += unicodedata.normalize("NFC", base).encode("cp1258") + tones.encode("cp1258")
    return bytes(out)


def csv_text(rows: Sequence[Sequence[Any]], *, delimiter: str = ",", header: Sequence[str] = HEADER) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue()


def encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-8-bom":
        return codecs.BOM_UTF8 + text.encode("utf-8")
    if encoding == "utf-16":
        return text.encode("utf-16")  # with its BOM, as Excel's "Unicode Text" writes it
    if encoding == "utf-16-le-nobom":
        return text.encode("utf-16-le")
    if encoding == "cp1258":
        return to_cp1258(text)
    return text.encode(encoding)


def xlsx_bytes(rows: Sequence[Sequence[Any]], *, header: Sequence[str] = HEADER) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


async def upload(
    client: httpx.AsyncClient, headers: dict[str, str], organization_id: str, data: bytes, name: str = "san-pham.csv"
) -> httpx.Response:
    return await client.post(
        f"/api/v1/organizations/{organization_id}/imports", files={"file": (name, data)}, headers=headers
    )


async def apply(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    import_id: str,
    *,
    mode: str = "all_or_nothing",
    zero: bool = False,
) -> httpx.Response:
    return await client.post(
        f"/api/v1/imports/{import_id}/apply", json={"mode": mode, "zero_missing": zero}, headers=headers
    )
