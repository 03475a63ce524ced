"""Field types for catalog and stock requests: each refusal says what to type instead.

The API, the web forms and bulk import all validate with these, so a farmer reads the same message everywhere.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StrictInt, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError

from agrimarket.kit.money import MAX_PRICE_VND, PriceVND
from agrimarket.kit.text import Line, Text, nfc
from agrimarket.models import Category, Unit

MAX_SKU_LENGTH = 64
MAX_WEIGHT_GRAMS = 100_000  # 100 kg: what a parcel carrier takes
MAX_SHELF_LIFE_DAYS = 3650
# Well above any farm's stock in any unit, and well inside a 32-bit column.
MAX_ON_HAND = 100_000_000

_SKU = re.compile(r"[A-Za-z0-9._-]+")
VIETNAM = timezone(timedelta(hours=7), "ICT")  # no daylight saving


def today_in_vietnam() -> date:
    return datetime.now(UTC).astimezone(VIETNAM).date()


def bounded(max_length: int, *, min_length: int = 1) -> AfterValidator:
    """Length counted after NFC and white-space folding: what the farmer sees, not how the phone encoded it."""

    def check(value: str) -> str:
        if len(value) < min_length:
            raise PydanticCustomError("empty", "This cannot be empty.")
        if len(value) > max_length:
            raise PydanticCustomError(
                "too_long",
                "Use at most {max_length} characters; this has {length}.",
                {"max_length": max_length, "length": len(value)},
            )
        return value

    return AfterValidator(check)


def explained(message: str) -> WrapValidator:
    """Replace pydantic's wording ("Input should be a valid integer") with one message that says what to enter."""

    def wrap(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("invalid", message) from None

    return WrapValidator(wrap)


def clean_sku(value: str) -> str:
    """SKUs are stored in upper case, so ``durian-1kg`` and ``DURIAN-1KG`` are one SKU, as on the marketplaces."""
    value = nfc(value).strip()
    if not value:
        raise PydanticCustomError("empty", "Enter a SKU, e.g. DURIAN-1KG.")
    if len(value) > MAX_SKU_LENGTH:
        raise PydanticCustomError(
            "too_long", "A SKU has at most {max_length} characters.", {"max_length": MAX_SKU_LENGTH}
        )
    if not _SKU.fullmatch(value):
        raise PydanticCustomError(
            "sku_characters",
            "A SKU may use only letters A-Z, digits and - _ . (no spaces or accents), e.g. DURIAN-1KG.",
        )
    return value.upper()


ProductName = Annotated[Line, bounded(200), Field(max_length=200, examples=["Sầu riêng Ri6 Bình Phước"])]
Description = Annotated[Text, bounded(5000, min_length=0), Field(max_length=5000)]
VariantName = Annotated[Line, bounded(120), Field(max_length=120, examples=["Hộp 1 kg"])]
CertificateNumber = Annotated[Line, bounded(100), Field(max_length=100)]
Issuer = Annotated[Line, bounded(200), Field(max_length=200)]
Reason = Annotated[Line, bounded(300), Field(max_length=300, examples=["Kiểm kho cuối tuần"])]
IdempotencyKey = Annotated[Line, bounded(100), Field(max_length=100)]
Search = Annotated[Line, bounded(200, min_length=0), Field(max_length=200)]
Sku = Annotated[
    str,
    AfterValidator(clean_sku),
    Field(
        max_length=MAX_SKU_LENGTH,
        examples=["DURIAN-1KG"],
        description="Letters, digits, - _ . only; stored in upper case; unique within the organization.",
    ),
]
Price = Annotated[
    PriceVND, explained(f"Enter the price in whole đồng, from 1 to {MAX_PRICE_VND:,}, e.g. 120000 (no decimals).")
]
WeightGrams = Annotated[
    StrictInt,
    Field(gt=0, le=MAX_WEIGHT_GRAMS, description="Shipping weight with packaging, in grams."),
    explained(f"Enter the shipping weight in whole grams, from 1 to {MAX_WEIGHT_GRAMS:,} (100 kg)."),
]
ShelfLifeDays = Annotated[
    StrictInt,
    Field(gt=0, le=MAX_SHELF_LIFE_DAYS),
    explained(f"Enter the shelf life in whole days, from 1 to {MAX_SHELF_LIFE_DAYS}."),
]
OnHand = Annotated[
    StrictInt,
    Field(ge=0, le=MAX_ON_HAND),
    explained(f"Enter the stock as a whole number from 0 to {MAX_ON_HAND:,}."),
]
Delta = Annotated[
    StrictInt,
    Field(ge=-MAX_ON_HAND, le=MAX_ON_HAND, description="Positive adds stock, negative removes it."),
    explained("Enter the change as a whole number, e.g. 10 to add or -3 to remove."),
]
OcopStars = Annotated[StrictInt, explained("An OCOP rating is 3, 4 or 5 stars.")]
UnitField = Annotated[Unit, explained(f"Choose a unit from: {', '.join(u.value for u in Unit)}.")]
CategoryField = Annotated[Category, explained(f"Choose a category from: {', '.join(c.value for c in Category)}.")]
