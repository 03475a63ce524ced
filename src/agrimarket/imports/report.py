"""The error report a clerk downloads: one CSV line per error, safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be run as a formula by Excel,
LibreOffice or Google Sheets (CSV injection), so it gets a leading apostrophe, which spreadsheets show as text:
the clerk sees what was in the file, and nothing runs. Written with a UTF-8 BOM, so Excel reads the Vietnamese right.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from agrimarket.models import ImportRowError

DANGEROUS_STARTS = ("=", "+", "-", "@", "\t", "\r")
HEADER = ("Dòng / Line", "Cột / Column", "Giá trị / Value", "Lỗi / Error", "Mã lỗi / Code")
DELIMITERS = {"comma": ",", "semicolon": ";", "tab": "\t"}


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(DANGEROUS_STARTS) else cell


class ReportWriter:
    def __init__(self, delimiter: str = ",") -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, delimiter=delimiter, lineterminator="\r\n")

    def header(self) -> bytes:
        self._writer.writerow(HEADER)
        return b"\xef\xbb\xbf" + self._take()

    def rows(self, errors: Iterable[ImportRowError]) -> bytes:
        for error in errors:
            self._writer.writerow(
                [
                    str(error.line),
                    neutralise(error.column),
                    neutralise(error.value),
                    neutralise(error.message),
                    error.code,
                ]
            )
        return self._take()

    def _take(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode("utf-8")
