"""Marketing on the card: the offers on each card, consent, and the card's zone and wallets.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("google_saved", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column(
                "google_changed_at", services.core.models.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("marketing_notified", sa.JSON(), nullable=False, server_default="[]")
        )
    op.create_table(
        "card_offers",
        sa.Column("card_id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("offer_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("offer", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("valid_until", services.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("due_at", services.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("notified_at", services.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", services.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_card_offers_card_id_cards"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_card_offers_merchant_id_merchants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_offers")),
        sa.UniqueConstraint("card_id", "offer_id", name=op.f("uq_card_offers_card_id_offer_id")),
    )
    op.create_index(
        "ix_card_offers_merchant_id_offer_id",
        "card_offers",
        ["merchant_id", "offer_id", "card_id"],
        unique=False,
    )
    op.create_index(
        "ix_card_offers_shown_valid_until",
        "card_offers",
        ["valid_until"],
        unique=False,
        postgresql_where=sa.text("state = 'shown'"),
        sqlite_where=sa.text("state = 'shown'"),
    )
    op.create_index(
        "ix_card_offers_deferred_due_at",
        "card_offers",
        ["due_at"],
        unique=False,
        postgresql_where=sa.text("state = 'deferred'"),
        sqlite_where=sa.text("state = 'deferred'"),
    )
    op.create_table(
        "marketing_consents",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("consent", sa.Boolean(), nullable=False),
        sa.Column("at", services.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_marketing_consents_merchant_id_merchants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("merchant_id", "customer_id", name=op.f("pk_marketing_consents")),
    )


def downgrade() -> None:
    op.drop_table("marketing_consents")
    op.drop_index("ix_card_offers_deferred_due_at", table_name="card_offers")
    op.drop_index("ix_card_offers_shown_valid_until", table_name="card_offers")
    op.drop_index("ix_card_offers_merchant_id_offer_id", table_name="card_offers")
    op.drop_table("card_offers")
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.drop_column("marketing_notified")
        batch_op.drop_column("google_changed_at")
        batch_op.drop_column("google_saved")
        batch_op.drop_column("time_zone")
