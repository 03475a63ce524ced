"""Request and response bodies for bulk imports."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agrimarket.imports.service import Mode
from agrimarket.models import ImportStatus


class ApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Mode = Field(
        default=Mode.all_or_nothing,
        description="`all_or_nothing`: every row or none (refused while any row has an error). "
        "`valid_rows`: the rows without errors; the others are left out.",
    )
    zero_missing: bool = Field(
        default=False,
        description="Set the stock of products on sale in the file's households that the file does not name to 0 "
        "(what is held for orders stays). The preview's `missing_count` says how many.",
    )


class RowErrorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line: int = Field(description="The row number a spreadsheet shows; the header is line 1.")
    column: str = Field(description="The column's header as written in the file.")
    value: str
    message: str
    code: str = Field(description="e.g. `empty`, `invalid`, `duplicate_sku`, `unknown_household`, `formula`.")


class ProgressOut(BaseModel):
    phase: Literal["waiting", "validating", "applying", "done"]
    processed: int
    total: int = Field(description="Rows in the file; an estimate from the bytes read while validating.")
    percent: int


class EarlierUploadOut(BaseModel):
    id: uuid.UUID
    applied_at: datetime | None


class ImportOut(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    filename: str
    file_format: str
    status: ImportStatus
    options: dict[str, Any]
    progress: ProgressOut
    total_rows: int
    created_count: int = Field(description="Rows that add a new SKU.")
    updated_count: int = Field(description="Rows that change a product, its price or its stock.")
    unchanged_count: int = Field(description="Rows whose values are already there.")
    error_rows: int = Field(description="Rows with at least one error.")
    error_count: int
    missing_count: int = Field(description="Products on sale in the file's households that the file does not name.")
    zeroed_count: int = Field(description="Of those, how many had their stock set to 0 by the apply.")
    detected: dict[str, Any] = Field(description="Format, encoding, delimiter, sheet, columns read, households.")
    message: str | None
    earlier_upload: EarlierUploadOut | None = Field(
        description="The same file, applied before to this organization: applying it again changes only what "
        "changed since."
    )
    errors: list[RowErrorOut] = Field(description="The first errors, by line; the rest through `errors_url`.")
    errors_url: str
    error_report_url: str
    created_at: datetime
    applied_at: datetime | None
    finished_at: datetime | None


class ColumnOut(BaseModel):
    field: str
    header: str
    english: str
    required: bool
    aliases: list[str]
    help_vi: str
    help_en: str
    example: str
