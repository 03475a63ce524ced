"""What is sold: products, their variants (the SKUs) and certifications."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from agrimarket.models.base import Base, IdMixin, TimestampMixin, str_enum


class Unit(StrEnum):
    kg = "kg"
    g = "g"
    hop = "hop"  # hộp, box
    thung = "thung"  # thùng, carton
    tui = "tui"  # túi, bag
    chai = "chai"  # bottle
    hu = "hu"  # hũ, jar
    qua = "qua"  # quả/trái, piece of fruit
    bo = "bo"  # bó, bunch
    lit = "lit"  # litre
    cai = "cai"  # cái, item


class Category(StrEnum):
    fruit = "fruit"
    nuts = "nuts"
    spices = "spices"
    coffee = "coffee"
    tea = "tea"
    honey = "honey"
    vegetables = "vegetables"
    rice = "rice"
    dried = "dried"
    other = "other"


class ProductStatus(StrEnum):
    active = "active"
    archived = "archived"


class CertificationKind(StrEnum):
    vietgap = "vietgap"
    globalgap = "globalgap"
    ocop = "ocop"
    organic = "organic"


class Product(IdMixin, TimestampMixin, Base):
    __tablename__ = "products"

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[Category] = mapped_column(str_enum(Category, "product_category"))
    status: Mapped[ProductStatus] = mapped_column(
        str_enum(ProductStatus, "product_status"), default=ProductStatus.active
    )
    harvest_date: Mapped[date | None]
    shelf_life_days: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Folded (lower case, no accents) name, variant names and SKUs: "sau rieng" finds "Sầu riêng".
    search_key: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        CheckConstraint("shelf_life_days IS NULL OR shelf_life_days > 0", name="shelf_life_positive"),
        Index("ix_products_org_created", "organization_id", "created_at", "id"),
    )


class Variant(IdMixin, TimestampMixin, Base):
    """The SKU: what is priced, stocked and listed."""

    __tablename__ = "variants"

    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    # Denormalised from the product so the SKU can be unique per organization by a plain constraint.
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"))
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(120))
    unit: Mapped[Unit] = mapped_column(str_enum(Unit, "variant_unit"))
    price_vnd: Mapped[int] = mapped_column(BigInteger)
    weight_grams: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Set instead of deleting: stock movements, orders and listings keep pointing at it; the SKU stays taken.
    archived_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("organization_id", "sku"),
        CheckConstraint("price_vnd > 0", name="price_positive"),
        CheckConstraint("weight_grams > 0", name="weight_positive"),
    )


class Certification(IdMixin, TimestampMixin, Base):
    __tablename__ = "certifications"

    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    kind: Mapped[CertificationKind] = mapped_column(str_enum(CertificationKind, "certification_kind"))
    number: Mapped[str] = mapped_column(String(100))
    issuer: Mapped[str | None] = mapped_column(String(200))
    stars: Mapped[int | None] = mapped_column(Integer)  # OCOP: 3 to 5 stars
    expires_on: Mapped[date | None]

    __table_args__ = (CheckConstraint("stars IS NULL OR (stars BETWEEN 1 AND 5)", name="stars_range"),)
