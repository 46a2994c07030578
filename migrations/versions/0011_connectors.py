"""Platform connectors: each merchant's connection to Shopify, WooCommerce or Shoptet, every
webhook delivery (deduplication, outcome, Shoptet's pending fetches), and the source of an
order event in its history.

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-07 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = services.core.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "connectors",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("previous_secret", sa.String(length=200), nullable=True),
        sa.Column("api_token", sa.String(length=500), nullable=True),
        sa.Column("status_map", sa.JSON(), nullable=False),
        sa.Column("shop_statuses", sa.JSON(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_connectors_merchant_id_merchants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connectors")),
        sa.UniqueConstraint(
            "merchant_id", "platform", name=op.f("uq_connectors_merchant_id_platform")
        ),
    )
    op.create_table(
        "connector_deliveries",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("delivery", sa.String(length=200), nullable=True),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("order_ref", sa.String(length=200), nullable=True),
        sa.Column("occurred_at", UTC, nullable=True),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("fetch_due_at", UTC, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_connector_deliveries_merchant_id_merchants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connector_deliveries")),
        sa.UniqueConstraint(
            "merchant_id",
            "platform",
            "dedupe_key",
            name=op.f("uq_connector_deliveries_merchant_id_platform_dedupe_key"),
        ),
    )
    op.create_index(
        "ix_connector_deliveries_merchant_id_received_at",
        "connector_deliveries",
        ["merchant_id", "received_at"],
    )
    op.create_index(
        op.f("ix_connector_deliveries_fetch_due_at"), "connector_deliveries", ["fetch_due_at"]
    )
    op.create_index(
        op.f("ix_connector_deliveries_received_at"), "connector_deliveries", ["received_at"]
    )
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("connector", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("delivery", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.drop_column("delivery")
        batch_op.drop_column("connector")
    op.drop_index(op.f("ix_connector_deliveries_received_at"), table_name="connector_deliveries")
    op.drop_index(op.f("ix_connector_deliveries_fetch_due_at"), table_name="connector_deliveries")
    op.drop_index(
        "ix_connector_deliveries_merchant_id_received_at", table_name="connector_deliveries"
    )
    op.drop_table("connector_deliveries")
    op.drop_table("connectors")
