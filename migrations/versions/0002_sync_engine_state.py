"""Sync engine state: per-shop lease, rate limiter and circuit; credentials version; job dedupe scope.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 06:43:01.095232
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agrimarket.models.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    with op.batch_alter_table("channel_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("credentials_version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("sync_lease_owner", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column("sync_lease_expires_at", agrimarket.models.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("rate_next_at", agrimarket.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("circuit_failures", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("circuit_open_until", agrimarket.models.base.UTCDateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dedupe_while_running", sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("dedupe_while_running")

    with op.batch_alter_table("channel_connections", schema=None) as batch_op:
        batch_op.drop_column("circuit_open_until")
        batch_op.drop_column("circuit_failures")
        batch_op.drop_column("rate_next_at")
        batch_op.drop_column("sync_lease_expires_at")
        batch_op.drop_column("sync_lease_owner")
        batch_op.drop_column("credentials_version")
