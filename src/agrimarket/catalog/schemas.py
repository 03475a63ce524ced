"""Request and response bodies for products, variants and certifications."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from agrimarket.catalog.fields import (
    CategoryField,
    CertificateNumber,
    Description,
    Issuer,
    OcopStars,
    OnHand,
    Price,
    ProductName,
    ShelfLifeDays,
    Sku,
    UnitField,
    VariantName,
    WeightGrams,
    today_in_vietnam,
)
from agrimarket.media.schemas import PhotoOut
from agrimarket.models import Category, CertificationKind, ProductStatus, Unit


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_null(value: Any) -> Any:
    # Only reached for a value that was sent: an explicit null on a field that cannot be empty.
    if value is None:
        raise PydanticCustomError("required", "This cannot be empty; leave the field out to keep its value.")
    return value


# -- requests ---------------------------------------------------------------------------------------------------


class CertificationIn(Strict):
    """VietGAP, GlobalGAP and organic: certificate number and expiry date. OCOP: number and 3 to 5 stars."""

    kind: CertificationKind
    number: CertificateNumber
    issuer: Issuer | None = None
    stars: OcopStars | None = Field(default=None, validate_default=True)
    expires_on: date | None = Field(default=None, validate_default=True)

    @field_validator("stars")
    @classmethod
    def _stars_for_ocop_only(cls, stars: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        if kind is CertificationKind.ocop:
            if stars is None or not 3 <= stars <= 5:
                raise PydanticCustomError("ocop_stars", "An OCOP rating is 3, 4 or 5 stars.")
        elif stars is not None and kind is not None:
            raise PydanticCustomError("stars_not_ocop", "Only an OCOP certification has stars; leave stars out.")
        return stars

    @field_validator("expires_on")
    @classmethod
    def _current(cls, expires_on: date | None, info: ValidationInfo) -> date | None:
        kind = info.data.get("kind")
        if expires_on is None:
            if kind is not None and kind is not CertificationKind.ocop:
                raise PydanticCustomError(
                    "expiry_required", "Enter the expiry date printed on the certificate (YYYY-MM-DD)."
                )
            return None
        if expires_on < today_in_vietnam():
            raise PydanticCustomError(
                "expired",
                "This certificate expired on {expires_on}. Add the renewed certificate instead.",
                {"expires_on": expires_on.isoformat()},
            )
        return expires_on


class VariantIn(Strict):
    sku: Sku
    name: VariantName
    unit: UnitField
    price_vnd: Price
    weight_grams: WeightGrams
    initial_stock: OnHand = Field(default=0, description="Stock on hand now; recorded as the first movement.")


class ProductCreate(Strict):
    name: ProductName
    description: Description = ""
    category: CategoryField
    harvest_date: date | None = None
    shelf_life_days: ShelfLifeDays | None = None
    certifications: list[CertificationIn] = Field(default_factory=list, max_length=20)
    variants: list[VariantIn] = Field(min_length=1, max_length=100)


class ProductUpdate(Strict):
    """Only the fields sent change; send null to clear harvest date or shelf life."""

    name: ProductName | None = None
    description: Description | None = None
    category: CategoryField | None = None
    status: ProductStatus | None = Field(default=None, description="`archived` takes it off sale; `active` restores.")
    harvest_date: date | None = None
    shelf_life_days: ShelfLifeDays | None = None

    _required = field_validator("name", "description", "category", "status")(_not_null)


class VariantUpdate(Strict):
    """Only the fields sent change. Stock is changed through the stock endpoints."""

    sku: Sku | None = None
    name: VariantName | None = None
    unit: UnitField | None = None
    price_vnd: Price | None = None
    weight_grams: WeightGrams | None = None
    position: int | None = Field(default=None, ge=0, le=1000)

    _required = field_validator("sku", "name", "unit", "price_vnd", "weight_grams", "position")(_not_null)


# -- responses --------------------------------------------------------------------------------------------------


class StockSummary(BaseModel):
    on_hand: int
    reserved: int
    available: int


class VariantOut(BaseModel):
    id: uuid.UUID
    product_id: uuid.UUID
    sku: str
    name: str
    unit: Unit
    price_vnd: int
    weight_grams: int
    position: int
    version: int
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime
    stock: StockSummary


class CertificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    product_id: uuid.UUID
    kind: CertificationKind
    number: str
    issuer: str | None
    stars: int | None
    expires_on: date | None


class ProductOut(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    description: str
    category: Category
    status: ProductStatus
    harvest_date: date | None
    shelf_life_days: int | None
    best_before: date | None = Field(description="Harvest date plus shelf life, when both are known.")
    version: int
    created_at: datetime
    updated_at: datetime
    variants: list[VariantOut]
    certifications: list[CertificationOut]


class ProductWithPhotosOut(ProductOut):
    photos: list[PhotoOut] = Field(description="In display order; the first is the main image on every channel.")


def best_before(harvest_date: date | None, shelf_life_days: int | None) -> date | None:
    if harvest_date is None or shelf_life_days is None:
        return None
    return harvest_date + timedelta(days=shelf_life_days)
