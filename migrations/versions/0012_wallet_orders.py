"""Apple Wallet Orders: the merchant's switch and Order Type ID, the design's certificate, the
orders' versions, their packages and their devices.

Revision ID: 0012
Revises: 0007
Create Date: 2026-12-07 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.models

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = services.core.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "wallet_orders_enabled", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch_op.add_column(sa.Column("order_type_identifier", sa.String(length=255)))
    with op.batch_alter_table("pass_designs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("order_certificate_path", sa.String(length=1024)))
        batch_op.add_column(sa.Column("order_key_path", sa.String(length=1024)))
        batch_op.add_column(sa.Column("apple_merchant_identifier", sa.String(length=255)))
    op.create_table(
        "wallet_orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=False),
        sa.Column("card_id", sa.Uuid(), nullable=False),
        sa.Column("order_type_identifier", sa.String(length=255), nullable=False),
        sa.Column("order_identifier", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("changed_at", UTC, nullable=False),
        sa.Column("update_tag", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_wallet_orders_merchant_id_merchants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["card_id"],
            ["cards.id"],
            name=op.f("fk_wallet_orders_card_id_cards"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_orders")),
        sa.UniqueConstraint(
            "merchant_id", "order_id", name=op.f("uq_wallet_orders_merchant_id_order_id")
        ),
        sa.UniqueConstraint(
            "order_type_identifier",
            "order_identifier",
            name=op.f("uq_wallet_orders_order_type_identifier_order_identifier"),
        ),
    )
    op.create_index(op.f("ix_wallet_orders_card_id"), "wallet_orders", ["card_id"])
    op.create_index(
        "ix_wallet_orders_order_type_identifier_update_tag",
        "wallet_orders",
        ["order_type_identifier", "update_tag"],
    )
    op.create_table(
        "wallet_order_packages",
        sa.Column("wallet_order_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("built_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["wallet_order_id"],
            ["wallet_orders.id"],
            name=op.f("fk_wallet_order_packages_wallet_order_id_wallet_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("wallet_order_id", name=op.f("pk_wallet_order_packages")),
    )
    op.create_table(
        "wallet_order_registrations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("device_identifier", sa.String(length=128), nullable=False),
        sa.Column("wallet_order_id", sa.Uuid(), nullable=False),
        sa.Column("push_token", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["wallet_order_id"],
            ["wallet_orders.id"],
            name=op.f("fk_wallet_order_registrations_wallet_order_id_wallet_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_order_registrations")),
        sa.UniqueConstraint(
            "device_identifier",
            "wallet_order_id",
            name=op.f("uq_wallet_order_registrations_device_identifier_wallet_order_id"),
        ),
    )
    op.create_index(
        op.f("ix_wallet_order_registrations_wallet_order_id"),
        "wallet_order_registrations",
        ["wallet_order_id"],
    )


def downgrade() -> None:
    op.drop_table("wallet_order_registrations")
    op.drop_table("wallet_order_packages")
    op.drop_table("wallet_orders")
    with op.batch_alter_table("pass_designs", schema=None) as batch_op:
        batch_op.drop_column("apple_merchant_identifier")
        batch_op.drop_column("order_key_path")
        batch_op.drop_column("order_certificate_path")
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_column("order_type_identifier")
        batch_op.drop_column("wallet_orders_enabled")
