"""Bulk uploads from cooperatives."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agrimarket.models.base import Base, IdMixin, str_enum, utcnow


class ImportStatus(StrEnum):
    uploaded = "uploaded"
    validating = "validating"
    previewed = "previewed"
    applying = "applying"
    applied = "applied"
    failed = "failed"
    cancelled = "cancelled"


class ImportJob(IdMixin, Base):
    __tablename__ = "import_jobs"

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(String(255))
    file_format: Mapped[str] = mapped_column(String(10))
    storage_key: Mapped[str] = mapped_column(String(300))
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[ImportStatus] = mapped_column(str_enum(ImportStatus, "import_status"), default=ImportStatus.uploaded)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    processed_rows: Mapped[int] = mapped_column(Integer, default=0)
    created_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_count: Mapped[int] = mapped_column(Integer, default=0)
    unchanged_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    # Rows with at least one error (a row may have several): what "only the valid rows" leaves out.
    error_rows: Mapped[int] = mapped_column(Integer, default=0)
    # Products on sale in the file's households that the file does not name, with stock to set to 0 if asked.
    missing_count: Mapped[int] = mapped_column(Integer, default=0)
    zeroed_count: Mapped[int] = mapped_column(Integer, default=0)
    # What was read: format, encoding, delimiter, sheet, which header feeds which column.
    detected: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    applied_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_import_jobs_org_created", "organization_id", "created_at", "id"),
        Index("ix_import_jobs_org_content", "organization_id", "content_hash"),
    )


class ImportRowError(IdMixin, Base):
    __tablename__ = "import_row_errors"

    import_job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("import_jobs.id", ondelete="CASCADE"), index=True)
    line: Mapped[int] = mapped_column(Integer)
    column: Mapped[str] = mapped_column(String(100))
    value: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[str] = mapped_column(Text)
    code: Mapped[str] = mapped_column(String(40), default="")

    __table_args__ = (Index("ix_import_row_errors_job_line", "import_job_id", "line", "id"),)
