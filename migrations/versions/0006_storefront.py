"""Direct sales: storefront checkouts paid through Stripe Checkout, and the stock each line holds until the session
completes, expires or is abandoned.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agrimarket.models.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "storefront_checkouts",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "creating",
                "open",
                "complete",
                "expired",
                "failed",
                name="checkout_state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "hold",
            sa.Enum(
                "held",
                "converted",
                "released",
                "preempted",
                name="checkout_hold",
                native_enum=False,
                create_constraint=True,
                length=17,
            ),
            nullable=False,
        ),
        sa.Column("session_id", sa.String(length=255), nullable=True),
        sa.Column("session_url", sa.Text(), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("total_vnd", sa.BigInteger(), nullable=False),
        sa.Column("locale", sa.String(length=5), nullable=False),
        sa.Column("expires_at", agrimarket.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("refund_id", sa.String(length=255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", agrimarket.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", agrimarket.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("total_vnd > 0", name=op.f("ck_storefront_checkouts_total_positive")),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["channel_connections.id"],
            name=op.f("fk_storefront_checkouts_connection_id_channel_connections"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_storefront_checkouts_order_id_orders"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_storefront_checkouts_organization_id_organizations"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storefront_checkouts")),
        sa.UniqueConstraint("session_id", name=op.f("uq_storefront_checkouts_session_id")),
    )
    with op.batch_alter_table("storefront_checkouts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_storefront_checkouts_payment_intent_id"), ["payment_intent_id"], unique=False
        )
        batch_op.create_index("ix_storefront_checkouts_state_expires", ["state", "expires_at"], unique=False)

    op.create_table(
        "storefront_checkout_lines",
        sa.Column("checkout_id", sa.Uuid(), nullable=False),
        sa.Column("variant_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_vnd", sa.BigInteger(), nullable=False),
        sa.Column("held_quantity", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "held_quantity >= 0 AND held_quantity <= quantity",
            name=op.f("ck_storefront_checkout_lines_held_within_quantity"),
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_storefront_checkout_lines_quantity_positive")),
        sa.CheckConstraint("unit_price_vnd > 0", name=op.f("ck_storefront_checkout_lines_unit_price_positive")),
        sa.ForeignKeyConstraint(
            ["checkout_id"],
            ["storefront_checkouts.id"],
            name=op.f("fk_storefront_checkout_lines_checkout_id_storefront_checkouts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_storefront_checkout_lines_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["variant_id"],
            ["variants.id"],
            name=op.f("fk_storefront_checkout_lines_variant_id_variants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storefront_checkout_lines")),
    )
    with op.batch_alter_table("storefront_checkout_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_storefront_checkout_lines_checkout_id"), ["checkout_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_storefront_checkout_lines_variant_id"), ["variant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("storefront_checkout_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_storefront_checkout_lines_variant_id"))
        batch_op.drop_index(batch_op.f("ix_storefront_checkout_lines_checkout_id"))

    op.drop_table("storefront_checkout_lines")
    with op.batch_alter_table("storefront_checkouts", schema=None) as batch_op:
        batch_op.drop_index("ix_storefront_checkouts_state_expires")
        batch_op.drop_index(batch_op.f("ix_storefront_checkouts_payment_intent_id"))

    op.drop_table("storefront_checkouts")
