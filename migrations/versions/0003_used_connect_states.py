"""Connect-by-authorisation: the states that have connected a shop, so none connects twice.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 12:22:00.882370
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agrimarket.models.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "used_connect_states",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("used_at", agrimarket.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", agrimarket.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_used_connect_states_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_used_connect_states")),
    )
    with op.batch_alter_table("used_connect_states", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_used_connect_states_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("used_connect_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_used_connect_states_expires_at"))

    op.drop_table("used_connect_states")
