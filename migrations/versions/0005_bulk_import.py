"""Bulk import: a job's preview figures (rows with errors, products the file leaves out, what was detected), when
it was applied, an error's code; indexes to list an organization's imports and find an earlier upload of a file.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agrimarket.models.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("import_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_rows", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("missing_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("zeroed_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("detected", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("applied_at", agrimarket.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_import_jobs_org_created", ["organization_id", "created_at", "id"], unique=False)
        batch_op.create_index("ix_import_jobs_org_content", ["organization_id", "content_hash"], unique=False)
    with op.batch_alter_table("import_jobs", schema=None) as batch_op:
        for column in ("error_rows", "missing_count", "zeroed_count", "detected"):
            batch_op.alter_column(column, server_default=None)
    with op.batch_alter_table("import_row_errors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code", sa.String(length=40), nullable=False, server_default=""))
        batch_op.create_index("ix_import_row_errors_job_line", ["import_job_id", "line", "id"], unique=False)
    with op.batch_alter_table("import_row_errors", schema=None) as batch_op:
        batch_op.alter_column("code", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("import_row_errors", schema=None) as batch_op:
        batch_op.drop_index("ix_import_row_errors_job_line")
        batch_op.drop_column("code")
    with op.batch_alter_table("import_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_import_jobs_org_content")
        batch_op.drop_index("ix_import_jobs_org_created")
        batch_op.drop_column("applied_at")
        batch_op.drop_column("detected")
        batch_op.drop_column("zeroed_count")
        batch_op.drop_column("missing_count")
        batch_op.drop_column("error_rows")
