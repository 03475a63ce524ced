"""The order pipeline: the order numbers a push names, kept with it; an index to read one shop's unhandled inbox
oldest first.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("order_ids", sa.JSON(), nullable=True))
        batch_op.create_index("ix_inbound_events_inbox", ["connection_id", "handled_at", "received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("inbound_events", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_events_inbox")
        batch_op.drop_column("order_ids")
