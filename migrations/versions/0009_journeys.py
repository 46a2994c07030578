"""Journeys: the merchants' journey settings, shop events, journey steps and product watches.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-07 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.models

revision: str = "0009"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = "state IN ('pending', 'deferred', 'shown')"


def _at(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, services.core.models.UTCDateTime(timezone=True), nullable=nullable)


def _merchant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["merchant_id"],
        ["merchants.id"],
        name=op.f(f"fk_{table}_merchant_id_merchants"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("journeys", sa.JSON(), nullable=True))
    op.create_table(
        "shop_events",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        _at("occurred_at"),
        _at("received_at"),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        _merchant_fk("shop_events"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shop_events")),
        sa.UniqueConstraint(
            "merchant_id", "event_id", name=op.f("uq_shop_events_merchant_id_event_id")
        ),
    )
    op.create_index("ix_shop_events_received_at", "shop_events", ["received_at"], unique=False)
    op.create_table(
        "journey_steps",
        sa.Column("card_id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("journey", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("message", sa.JSON(), nullable=True),
        _at("due_at", nullable=True),
        _at("shown_at", nullable=True),
        _at("notified_at", nullable=True),
        _at("created_at"),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"],
            ["cards.id"],
            name=op.f("fk_journey_steps_card_id_cards"),
            ondelete="CASCADE",
        ),
        _merchant_fk("journey_steps"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey_steps")),
        sa.UniqueConstraint(
            "card_id", "journey", "key", name=op.f("uq_journey_steps_card_id_journey_key")
        ),
    )
    op.create_index(
        "ix_journey_steps_due_at",
        "journey_steps",
        ["due_at"],
        unique=False,
        postgresql_where=sa.text(DUE),
        sqlite_where=sa.text(DUE),
    )
    op.create_table(
        "product_watches",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        _at("created_at"),
        _merchant_fk("product_watches"),
        sa.PrimaryKeyConstraint(
            "merchant_id", "product_id", "customer_id", name=op.f("pk_product_watches")
        ),
    )


def downgrade() -> None:
    op.drop_table("product_watches")
    op.drop_index("ix_journey_steps_due_at", table_name="journey_steps")
    op.drop_table("journey_steps")
    op.drop_index("ix_shop_events_received_at", table_name="shop_events")
    op.drop_table("shop_events")
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_column("journeys")
