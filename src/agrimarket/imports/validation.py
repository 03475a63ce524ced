"""One row of an import file, checked on its own: every problem as (line, column, value, message).

The field types are the catalog's (``catalog.fields``), so a clerk reads the same message as a farmer typing in the
form. Before them, cells are read the way Vietnamese offices write them: ``1.250.000`` and ``1,5`` (vi-VN), or
``1,250,000`` and ``1.5``; ``120.000 ₫``; ``15/06/2026``; "Trái cây" for fruit and "hộp" for a box.

A separator followed by exactly three digits groups thousands (``1.250`` is 1250, ``1,250`` is 1250); any other
separator is the decimal mark (``1,5`` and ``1.5`` are one and a half), which a whole-number column then refuses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, NamedTuple

from pydantic import BeforeValidator, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from agrimarket.catalog.fields import (
    CategoryField,
    Description,
    OnHand,
    Price,
    ProductName,
    ShelfLifeDays,
    Sku,
    UnitField,
    VariantName,
    WeightGrams,
)
from agrimarket.imports.columns import BY_FIELD, TEXT_FIELDS
from agrimarket.imports.parsing import Cell
from agrimarket.kit.text import Line, fold
from agrimarket.models import Category, Unit

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset("=+-@\t\r ")
DEFAULT_VARIANT_NAME = "Tiêu chuẩn"

_CURRENCY = re.compile(r"(?:₫|vnđ|vnd|đồng|dong|đ)$", re.IGNORECASE)
_INT = re.compile(r"[+-]?\d+")
_DOT_GROUPS = re.compile(r"[+-]?\d{1,3}(?:\.\d{3})+")
_COMMA_GROUPS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+")
_DOT_GROUPS_COMMA_DECIMAL = re.compile(r"[+-]?\d{1,3}(?:\.\d{3})+,\d+")
_COMMA_GROUPS_DOT_DECIMAL = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+\.\d+")
_COMMA_DECIMAL = re.compile(r"[+-]?\d+,\d+")
_DOT_DECIMAL = re.compile(r"[+-]?\d+\.\d+")
_DATE_DMY = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})")
_DATE_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")

CATEGORY_ALIASES: dict[str, Category] = {
    **{c.value: c for c in Category},
    "trai cay": Category.fruit,
    "hoa qua": Category.fruit,
    "qua": Category.fruit,
    "trai": Category.fruit,
    "hat": Category.nuts,
    "hat dieu": Category.nuts,
    "cac loai hat": Category.nuts,
    "gia vi": Category.spices,
    "tieu": Category.spices,
    "ho tieu": Category.spices,
    "ca phe": Category.coffee,
    "cafe": Category.coffee,
    "tra": Category.tea,
    "che": Category.tea,
    "mat ong": Category.honey,
    "rau": Category.vegetables,
    "rau cu": Category.vegetables,
    "rau qua": Category.vegetables,
    "gao": Category.rice,
    "lua gao": Category.rice,
    "do kho": Category.dried,
    "kho": Category.dried,
    "say kho": Category.dried,
    "nong san kho": Category.dried,
    "khac": Category.other,
}
UNIT_ALIASES: dict[str, Unit] = {
    **{u.value: u for u in Unit},
    "kilogram": Unit.kg,
    "kilo": Unit.kg,
    "ky": Unit.kg,
    "ki": Unit.kg,
    "can": Unit.kg,
    "gram": Unit.g,
    "gam": Unit.g,
    "gr": Unit.g,
    "box": Unit.hop,
    "carton": Unit.thung,
    "bich": Unit.tui,
    "goi": Unit.tui,
    "bag": Unit.tui,
    "bottle": Unit.chai,
    "lo": Unit.hu,
    "jar": Unit.hu,
    "trai": Unit.qua,
    "piece": Unit.qua,
    "bunch": Unit.bo,
    "l": Unit.lit,
    "litre": Unit.lit,
    "liter": Unit.lit,
    "chiec": Unit.cai,
    "item": Unit.cai,
}


@dataclass(frozen=True)
class RowError:
    line: int
    column: str  # the header as written in the file (or the template's, for a column the file lacks)
    value: str
    message: str
    code: str


class ValidRow(NamedTuple):
    """A row every cell of which is well-formed. ``None``: the cell was empty (keep what is there). A named tuple:
    a file makes a hundred thousand of them, twice, and a tuple is made in a quarter of a dataclass's time."""

    line: int
    household: str | None
    sku: str
    name: str
    variant_name: str | None
    category: Category | None
    unit: Unit | None
    price_vnd: int
    on_hand: int
    weight_grams: int | None
    harvest_date: date | None
    shelf_life_days: int | None
    description: str | None


# -- reading cells the way offices write them -------------------------------------------------------------------


def as_text(value: Cell) -> str:
    """A cell as text: Excel keeps ``0912345678`` as the number 912345678 and ``SR-1`` as text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.strftime("%d/%m/%Y") if value.time() == datetime.min.time() else value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    return str(value)


def parse_number(value: Any) -> Any:
    """``"1.250.000 ₫"`` → 1250000, ``"1,5"`` → 1.5, ``120000.0`` → 120000; anything else is returned as it
    came, for the field's own message to refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        return value
    if value.isdigit() and value.isascii():
        return int(value)
    text = value.replace("\u00a0", "").replace("\u202f", "").replace(" ", "").strip()
    text = _CURRENCY.sub("", text)
    if _INT.fullmatch(text):
        return int(text)
    if _DOT_GROUPS.fullmatch(text):
        return int(text.replace(".", ""))
    if _COMMA_GROUPS.fullmatch(text):
        return int(text.replace(",", ""))
    if _DOT_GROUPS_COMMA_DECIMAL.fullmatch(text):
        return _whole(float(text.replace(".", "").replace(",", ".")))
    if _COMMA_GROUPS_DOT_DECIMAL.fullmatch(text):
        return _whole(float(text.replace(",", "")))
    if _COMMA_DECIMAL.fullmatch(text):
        return _whole(float(text.replace(",", ".")))
    if _DOT_DECIMAL.fullmatch(text):
        return _whole(float(text))
    return value


def _whole(number: float) -> int | float:
    return int(number) if number.is_integer() else number


def parse_date(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date) or not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if match := _DATE_DMY.fullmatch(text):
            day, month, year = (int(part) for part in match.groups())
            return date(year, month, day)
        if match := _DATE_ISO.fullmatch(text):
            year, month, day = (int(part) for part in match.groups())
            return date(year, month, day)
    except ValueError:
        pass
    raise PydanticCustomError("date", "Enter the date as day/month/year, e.g. 15/06/2026.")


def _alias(table: dict[str, Any]) -> Callable[[Any], Any]:
    seen: dict[str, Any] = {}  # a file repeats a handful of spellings thousands of times

    def lookup(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        found = seen.get(value)
        if found is None:
            found = table.get(fold(value), value)
            if len(seen) < 1000:
                seen[value] = found
        return found

    return lookup


def _text_cell(value: Any) -> Any:
    return as_text(value) if value is not None and not isinstance(value, str) else value


# The type of each cell, empty cells aside: which are required is checked before (and, for a new SKU, after the
# database is consulted).
CELL_TYPES: dict[str, Any] = {
    "household": Annotated[Line, BeforeValidator(_text_cell)],
    "sku": Annotated[Sku, BeforeValidator(_text_cell)],
    "name": Annotated[ProductName, BeforeValidator(_text_cell)],
    "variant_name": Annotated[VariantName, BeforeValidator(_text_cell)],
    "category": Annotated[CategoryField, BeforeValidator(_alias(CATEGORY_ALIASES))],
    "unit": Annotated[UnitField, BeforeValidator(_alias(UNIT_ALIASES))],
    "price_vnd": Annotated[Price, BeforeValidator(parse_number)],
    "on_hand": Annotated[OnHand, BeforeValidator(parse_number)],
    "weight_grams": Annotated[WeightGrams, BeforeValidator(parse_number)],
    "harvest_date": Annotated[date, BeforeValidator(parse_date)],
    "shelf_life_days": Annotated[ShelfLifeDays, BeforeValidator(parse_number)],
    "description": Annotated[Description, BeforeValidator(_text_cell)],
}
_REMEMBERED = 4096  # cells per column whose outcome is kept


class _CellCheck:
    """One column's validation, with the outcome of the first few thousand distinct cells kept: a file repeats its
    households, categories, units, sizes, dates and descriptions on row after row, and a cell's outcome depends on
    the cell alone. Kept per column for the process (bounded), so every file after the first starts warm."""

    def __init__(self, name: str, cell_type: Any) -> None:
        self.name = name
        self.text = name in TEXT_FIELDS  # a spreadsheet could run it as a formula
        self.validate = TypeAdapter(cell_type).validate_python
        # cell (with its type, unless text: 1, 1.0 and True are equal keys) → (value, [(message, code), …])
        self.outcomes: dict[Any, tuple[Any, list[tuple[str, str]]]] = {}

    def first(self, cell: Cell) -> tuple[Any, list[tuple[str, str]]]:
        """The outcome of a cell not met before (or no longer kept)."""
        try:
            outcome: tuple[Any, list[tuple[str, str]]] = (self.validate(cell), [])
        except ValidationError as exc:
            outcome = (None, [(_message(error), str(error["type"])) for error in exc.errors(include_url=False)])
        if len(self.outcomes) < _REMEMBERED:
            self.outcomes[cell if type(cell) is str else (type(cell), cell)] = outcome
        return outcome


_CHECKS = [_CellCheck(name, cell_type) for name, cell_type in CELL_TYPES.items()]


_REQUIRED = {
    "sku": "Enter the SKU, e.g. SR-RI6-1KG.",
    "name": "Enter the product name.",
    "price_vnd": "Enter the price in whole đồng, e.g. 120000.",
    "on_hand": "Enter the stock on hand, 0 or more.",
}


def check_row(line: int, cells: dict[str, Cell], headers: dict[str, str]) -> ValidRow | list[RowError]:
    """The row, or every problem with it (never only the first)."""
    errors: list[RowError] = []  # cells that would run as formulas, then required cells left empty, then the rest
    problems: list[RowError] = []
    row: dict[str, Any] = {}  # every cell given, refused ones too
    for check in _CHECKS:
        name = check.name
        cell = cells.get(name)
        if cell is None or cell == "" or (isinstance(cell, str) and not cell.strip()):
            continue
        if check.text and isinstance(cell, str) and cell[0] in _FORMULA_FIRST and is_formula(cell):
            errors.append(
                RowError(
                    line,
                    column_name(name, headers),
                    cell,
                    f"This starts with “{cell.lstrip(' ')[:1]!s}”, which a spreadsheet would run as a formula. "
                    "Remove the first character.",
                    "formula",
                )
            )
            continue
        value, refused = check.outcomes.get(cell if type(cell) is str else (type(cell), cell)) or check.first(cell)
        if refused:
            column = column_name(name, headers)
            problems.extend(RowError(line, column, as_text(cell), message, code) for message, code in refused)
        row[name] = value
    if errors or not _REQUIRED.keys() <= row.keys():
        formulas = {e.column for e in errors}
        for name, message in _REQUIRED.items():
            column = column_name(name, headers)
            if name not in row and column not in formulas:
                errors.append(RowError(line, column, "", f"This cannot be empty. {message}", "empty"))
    errors += problems
    if errors:
        return errors
    get = row.get
    return ValidRow(  # in field order: a tuple is made faster from positions
        line,
        get("household") or None,
        row["sku"],
        row["name"],
        get("variant_name"),
        get("category"),
        get("unit"),
        row["price_vnd"],
        row["on_hand"],
        get("weight_grams"),
        get("harvest_date"),
        get("shelf_life_days"),
        get("description"),
    )


def is_formula(text: str) -> bool:
    return text.startswith(FORMULA_STARTS) or text.lstrip(" ").startswith(FORMULA_STARTS)


def column_name(name: str, headers: dict[str, str]) -> str:
    if name in headers:
        return headers[name]
    column = BY_FIELD.get(name)
    return column.header if column else name


def _message(error: Any) -> str:
    message = str(error["msg"])
    kind = str(error["type"])
    if kind in ("string_type", "int_type", "date_type", "date_from_datetime_parsing"):
        return "This value has the wrong kind for this column."
    if kind in ("date_from_datetime_inexact",):
        return "Enter the date as day/month/year, e.g. 15/06/2026."
    # Pydantic prefixes custom messages with "Value error, " only for ValueError; ours are PydanticCustomError.
    return message
