"""Reading an uploaded file as rows, one at a time, whatever office made it.

- **Format** from the bytes, not the name: a ZIP (``PK``) is a workbook (XLSX, and what calamine also reads), the
  rest is CSV.
- **CSV encoding**: a BOM decides (UTF-8, UTF-16 LE/BE); else NUL bytes in every other position mean BOM-less
  UTF-16; else the whole file is checked as UTF-8 (an incremental decoder, in chunks); a file that is not UTF-8
  is Windows-1258, what Excel writes for "CSV" on a Vietnamese Windows. Windows-1258 spells most tones as
  combining marks, so every cell is NFC-normalised: the same word compares equal whichever encoding it came in.
- **Delimiter** from the header line: the most frequent of ``,`` ``;`` (Excel under vi-VN regional settings)
  and tab, outside quotes.
- **Rows** stream: CSV through the ``csv`` module over the file on disk; workbooks through python-calamine
  (fast, but it holds the sheet in memory) when the sheet is small, and openpyxl's read-only mode (streams the
  sheet XML, bounded memory) when it is large.
- **Lines** are the row numbers a spreadsheet shows: the header is line 1, and a quoted cell with line breaks
  stays one row.
"""

from __future__ import annotations

import codecs
import csv
import io
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

from agrimarket.imports.columns import BY_FIELD, COLUMNS, field_for

CSV = "csv"
XLSX = "xlsx"
# A sheet whose XML unpacks to more than this is streamed with openpyxl instead of loaded whole by calamine
# (calamine holds about 1.6 bytes of memory per byte of sheet XML).
CALAMINE_MAX_SHEET_XML = 24 * 1024 * 1024
MAX_COLUMNS = 100
MAX_CELL_CHARS = 10_000
_DELIMITERS = (",", ";", "\t")
_CHUNK = 1024 * 1024

Cell = str | int | float | bool | date | datetime | time | timedelta | None


class FileProblem(Exception):
    """The file as a whole cannot be read: what is wrong, said so a clerk can fix it."""

    def __init__(self, message: str, *, column: str = "", line: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.line = line


@dataclass(frozen=True)
class RawRow:
    line: int
    cells: dict[str, Cell]  # field → the cell as read (text from CSV; typed from a workbook)


@dataclass
class Layout:
    """What was found in the file: format, encoding, delimiter, and which header feeds which field."""

    file_format: str
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # field → the header as written in the file
    ignored: list[str] = field(default_factory=list)  # headers the import does not read

    def describe(self) -> dict[str, Any]:
        return {
            "format": self.file_format,
            "encoding": self.encoding,
            "delimiter": {",": "comma", ";": "semicolon", "\t": "tab"}.get(self.delimiter or ""),
            "sheet": self.sheet,
            "columns": self.headers,
            "ignored_columns": self.ignored,
        }


def sniff_format(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return XLSX
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise FileProblem("This is an old Excel 97-2003 file (.xls). Save it as .xlsx or CSV UTF-8 and upload again.")
    return CSV


def detect_encoding(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(4096)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        sample = head[:1024]
        if len(sample) >= 4:
            # ASCII text in UTF-16 without a BOM: every other byte is NUL.
            if sample[1::2].count(0) > len(sample) // 4 and sample[0::2].count(0) == 0:
                return "utf-16-le"
            if sample[0::2].count(0) > len(sample) // 4 and sample[1::2].count(0) == 0:
                return "utf-16-be"
        decoder = codecs.getincrementaldecoder("utf-8")()
        handle.seek(0)
        try:
            while chunk := handle.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1258"
    return "utf-8"


def _delimiter(header_line: str) -> str:
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for ch in header_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


class _Counting(io.RawIOBase):
    """A binary file that counts the bytes read through it: the progress of a CSV in bytes."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        self.consumed += len(data)
        return len(data)


class RowSource:
    """``with RowSource(path) as source: for row in source.rows(): ...``; ``source.layout`` says what was found.

    ``fraction_read`` (0 to 1) is how far through the file the rows are, for a progress bar before the total is
    known.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = max(path.stat().st_size, 1)
        with path.open("rb") as handle:
            self.layout = Layout(file_format=sniff_format(handle.read(8)))
        self._handle: IO[bytes] | None = None
        self._counter: _Counting | None = None
        self._rows_read = 0
        self._rows_total: int | None = None

    def __enter__(self) -> RowSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    @property
    def fraction_read(self) -> float:
        if self._counter is not None:
            return min(self._counter.consumed / self.size, 1.0)
        if self._rows_total:
            return min(self._rows_read / self._rows_total, 1.0)
        return 0.0

    def rows(self) -> Iterator[RawRow]:
        """Every data row that has anything in it; raises :class:`FileProblem` for a file that cannot be read."""
        records = self._csv_records() if self.layout.file_format == CSV else self._workbook_records()
        try:
            header = next(records, None)
        except UnicodeDecodeError:
            raise FileProblem(_ENCODING_PROBLEM) from None
        except csv.Error as exc:
            raise FileProblem(f"The header line cannot be read as CSV: {exc}.", line=1) from None
        if header is None or not any(_text(c) for c in header):
            raise FileProblem("The file is empty: the first line must hold the column names.", line=1)
        positions = self._map_header(header)
        line = 1
        try:
            for record in records:
                line += 1
                self._rows_read = line
                cells: dict[str, Cell] = {}
                anything = False
                for name, index in positions:
                    value = record[index] if index < len(record) else None
                    if isinstance(value, str):
                        if len(value) > MAX_CELL_CHARS:
                            value = value[:MAX_CELL_CHARS]
                        if not value.isascii():
                            value = unicodedata.normalize("NFC", value)
                        if value.strip():
                            anything = True
                    elif value is not None:
                        anything = True
                    cells[name] = value
                if anything:
                    yield RawRow(line, cells)
        except UnicodeDecodeError:
            raise FileProblem(_ENCODING_PROBLEM, line=line + 1) from None
        except csv.Error as exc:
            raise FileProblem(f"Line {line + 1} cannot be read as CSV: {exc}.", line=line + 1) from None

    def _map_header(self, header: list[Cell]) -> list[tuple[str, int]]:
        positions: list[tuple[str, int]] = []
        seen: dict[str, str] = {}
        for index, cell in enumerate(header[:MAX_COLUMNS]):
            text = " ".join(unicodedata.normalize("NFC", _text(cell)).split()).lstrip("\ufeff")
            if not text:
                continue
            name = field_for(text)
            if name is None:
                self.layout.ignored.append(text)
                continue
            if name in seen:
                raise FileProblem(
                    f"Columns “{seen[name]}” and “{text}” both mean {BY_FIELD[name].english.lower()}; "
                    "keep only one of them.",
                    column=text,
                    line=1,
                )
            seen[name] = text
            positions.append((name, index))
        missing = [c for c in COLUMNS if c.required and c.field not in seen]
        if missing:
            names = ", ".join(f"“{c.header}” ({c.english})" for c in missing)
            raise FileProblem(
                f"The file has no column for {names}. Name the columns as in the template; the first line must "
                "hold the column names.",
                column=missing[0].header,
                line=1,
            )
        self.layout.headers = seen
        return positions

    def _csv_records(self) -> Iterator[list[Cell]]:  # csv gives list[str]: a list of Cell
        encoding = detect_encoding(self.path)
        self.layout.encoding = encoding
        raw = self.path.open("rb")
        self._handle = raw
        self._counter = _Counting(raw)
        text = io.TextIOWrapper(io.BufferedReader(self._counter, _CHUNK), encoding=encoding, newline="")
        first = text.readline()
        delimiter = _delimiter(first)
        self.layout.delimiter = delimiter
        lines = _prepend(first, text)
        yield from csv.reader(lines, delimiter=delimiter)

    def _workbook_records(self) -> Iterator[list[Cell]]:
        try:
            with zipfile.ZipFile(self.path) as archive:
                sheets = [i for i in archive.infolist() if i.filename.startswith("xl/worksheets/sheet")]
                largest = max((i.file_size for i in sheets), default=0)
        except zipfile.BadZipFile:
            raise FileProblem("This file is neither CSV nor a readable Excel workbook (.xlsx).") from None
        if largest > CALAMINE_MAX_SHEET_XML:
            yield from self._openpyxl_records()
        else:
            yield from self._calamine_records()

    def _calamine_records(self) -> Iterator[list[Cell]]:
        from python_calamine import CalamineError, CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

        try:
            workbook = CalamineWorkbook.from_path(str(self.path))
            index = next(
                (
                    i
                    for i, sheet in enumerate(workbook.sheets_metadata)
                    if sheet.typ == SheetTypeEnum.WorkSheet and sheet.visible == SheetVisibleEnum.Visible
                ),
                0,
            )
            sheet = workbook.get_sheet_by_index(index)
        except (CalamineError, ValueError, OSError) as exc:
            raise FileProblem(f"This Excel file cannot be read ({exc}). Save it again as .xlsx.") from None
        self.layout.file_format = XLSX
        self.layout.sheet = sheet.name
        self._rows_total = sheet.height
        # calamine starts at the first non-empty row: the spreadsheet's line numbers start where the data does.
        start = sheet.start
        offset = start[0] if start else 0
        for _ in range(offset):
            yield []
        for row in sheet.iter_rows():
            yield list(row)

    def _openpyxl_records(self) -> Iterator[list[Cell]]:
        import openpyxl

        try:
            workbook = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds for a damaged file
            raise FileProblem(f"This Excel file cannot be read ({exc}). Save it again as .xlsx.") from None
        try:
            sheet = next((ws for ws in workbook.worksheets if ws.sheet_state == "visible"), workbook.worksheets[0])
            self.layout.sheet = sheet.title
            self._rows_total = sheet.max_row or None
            for row in sheet.iter_rows(values_only=True):
                yield [value if isinstance(value, _PLAIN) else str(value) for value in row]
        finally:
            workbook.close()


_PLAIN = (str, int, float, date, time, timedelta, type(None))
_ENCODING_PROBLEM = (
    "The file's text encoding could not be read. In Excel choose Save As → “CSV UTF-8 (Comma delimited)”, "
    "or upload the .xlsx file."
)


def _prepend(first: str, rest: IO[str]) -> Iterator[str]:
    yield first
    yield from rest


def _text(cell: Cell) -> str:
    if cell is None:
        return ""
    return cell if isinstance(cell, str) else str(cell)
