"""The rows a preview checked, kept beside the upload so the apply does not read and check the file again.

Whether a row is well-formed depends on its cells alone, so the preview's verdict on each row holds for as long as
the file's bytes are the same. The preview writes each chunk of verdicts (a checked row, or the row's errors with
the household and SKU cells the apply still needs) as one line of JSON; the apply reads them back a chunk at a time
and does what depends on the database again: whose household a row names, a SKU given twice for one household,
and the catalogue under lock.

The first line names the import and the file's SHA-256, the last holds the row count and an HMAC of everything
before it under a key derived from the deployment's secret. The apply uses the rows only when all of these match;
anything else (missing, from another file or format version, cut short, altered) and it reads the file itself.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import IO, Any, NamedTuple

from agrimarket.catalog.fields import clean_sku
from agrimarket.imports.parsing import Cell, RawRow, RowSource
from agrimarket.imports.validation import RowError, ValidRow, as_text, check_row
from agrimarket.models import Category, Unit

# Bump when what a row's check gives changes (a rule, a field, the encoding below): older files are then ignored.
FORMAT = 1
_VALID_FIELDS = 13  # a checked row's record; a refused row's has 4


class Checked(NamedTuple):
    """One data row after its own check: ``row`` when every cell is well-formed, else ``errors``.

    ``household`` and ``sku`` are the cells as the rest of the import reads them (for a refused row too: its SKU
    still counts when another row repeats it)."""

    line: int
    household: str | None
    sku: str | None
    row: ValidRow | None
    errors: Sequence[RowError] = ()


def check(raw: RawRow, headers: dict[str, str]) -> Checked:
    result = check_row(raw.line, raw.cells, headers)
    if isinstance(result, ValidRow):
        return Checked(raw.line, result.household, result.sku, result)
    household = as_text(raw.cells.get("household")).strip() or None
    return Checked(raw.line, household, _sku_or_none(raw.cells.get("sku")), None, result)


def _sku_or_none(cell: Cell) -> str | None:
    try:
        return clean_sku(as_text(cell))
    except Exception:
        return None


def signing_key(secret: str) -> bytes:
    return hashlib.sha256(b"agrimarket.imports.checked\0" + secret.encode()).digest()


def _stamp(import_id: uuid.UUID, content_hash: str) -> dict[str, Any]:
    return {"format": FORMAT, "import": str(import_id), "sha256": content_hash}


def _encode(item: Checked) -> list[Any]:
    row = item.row
    if row is None:
        return [item.line, item.household, item.sku, [[e.column, e.value, e.message, e.code] for e in item.errors]]
    return [
        row.line,
        row.household,
        row.sku,
        row.name,
        row.variant_name,
        row.category,
        row.unit,
        row.price_vnd,
        row.on_hand,
        row.weight_grams,
        row.harvest_date.toordinal() if row.harvest_date else None,
        row.shelf_life_days,
        row.description,
    ]


_CATEGORIES = {c.value: c for c in Category}
_UNITS = {u.value: u for u in Unit}


def _decode(record: list[Any]) -> Checked:
    if len(record) != _VALID_FIELDS:
        line, household, sku, errors = record
        return Checked(line, household, sku, None, [RowError(line, *error) for error in errors])
    line, household, sku, name, variant, category, unit, price, on_hand, weight, harvest, shelf, description = record
    row = ValidRow(
        line,
        household,
        sku,
        name,
        variant,
        _CATEGORIES[category] if category is not None else None,
        _UNITS[unit] if unit is not None else None,
        price,
        on_hand,
        weight,
        date.fromordinal(harvest) if harvest is not None else None,
        shelf,
        description,
    )
    return Checked(line, household, sku, row)


def _line(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class CheckedWriter:
    """``writer.add(chunk)`` for each chunk in file order, then ``writer.finish()``: the file is complete only then."""

    def __init__(self, path: Path, import_id: uuid.UUID, content_hash: str, key: bytes) -> None:
        self.path = path
        self.rows = 0
        self.complete = False
        self._stamp = _stamp(import_id, content_hash)
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._handle: IO[bytes] | None = None

    def add(self, chunk: Sequence[Checked], headers: dict[str, str]) -> None:
        self._open(headers)
        self._write(_line([_encode(item) for item in chunk]))
        self.rows += len(chunk)

    def finish(self, headers: dict[str, str]) -> None:
        self._open(headers)
        assert self._handle is not None
        self._handle.write(_line({"rows": self.rows, "hmac": self._mac.hexdigest()}))
        self._handle.close()
        self._handle = None
        self.complete = True

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _open(self, headers: dict[str, str]) -> None:
        if self._handle is None:
            self._handle = self.path.open("wb")
            self._write(_line(self._stamp | {"headers": headers}))

    def _write(self, data: bytes) -> None:
        assert self._handle is not None
        self._mac.update(data)
        self._handle.write(data)


class FileRows:
    """The rows of an uploaded file, each checked on its own, a chunk at a time (and kept, given a writer)."""

    def __init__(self, source: RowSource, size: int, keep: CheckedWriter | None = None) -> None:
        self.source = source
        self.size = size
        self.keep = keep

    @property
    def headers(self) -> dict[str, str]:
        return self.source.layout.headers

    @property
    def fraction_read(self) -> float:
        return self.source.fraction_read

    def chunks(self) -> Iterator[list[Checked]]:
        rows = self.source.rows()
        while chunk := list(itertools.islice(rows, self.size)):
            headers = self.source.layout.headers
            checked = [check(raw, headers) for raw in chunk]
            if self.keep is not None:
                self.keep.add(checked, headers)
            yield checked

    def finish(self) -> None:
        if self.keep is not None:
            self.keep.finish(self.source.layout.headers)


class CheckedRows:
    """A kept file found complete and genuine for this import: ``chunks()`` gives its rows again, as checked."""

    def __init__(self, path: Path, headers: dict[str, str], rows: int) -> None:
        self.path = path
        self.headers = headers
        self.rows = rows
        self._read = 0

    @property
    def fraction_read(self) -> float:
        return min(self._read / self.rows, 1.0) if self.rows else 1.0

    def chunks(self) -> Iterator[list[Checked]]:
        with self.path.open("rb") as handle:
            next(handle)  # the stamp
            for data in handle:
                records = json.loads(data)
                if isinstance(records, dict):  # the trailer
                    return
                self._read += len(records)
                yield [_decode(record) for record in records]

    def finish(self) -> None:
        return None


def open_checked(path: Path, import_id: uuid.UUID, content_hash: str, key: bytes) -> CheckedRows | None:
    """The kept rows, or None when the file is not this import's complete, untouched preview of these bytes."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    try:
        with path.open("rb") as handle:
            first = handle.readline()
            stamp = json.loads(first)
            if not isinstance(stamp, dict) or {k: stamp.get(k) for k in ("format", "import", "sha256")} != _stamp(
                import_id, content_hash
            ):
                return None
            mac.update(first)
            last = b""
            for data in handle:
                if last:
                    mac.update(last)
                last = data
            trailer = json.loads(last) if last else None
    except (OSError, ValueError):
        return None
    if not isinstance(trailer, dict) or not hmac.compare_digest(str(trailer.get("hmac", "")), mac.hexdigest()):
        return None
    return CheckedRows(path, dict(stamp.get("headers") or {}), int(trailer.get("rows", 0)))
