"""Feedback on orders (offers), the review and survey links and the store locations of a design.

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-07 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.models

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.String(length=200), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=2000), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("rated_at", services.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", services.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_feedback_merchant_id_merchants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint(
            "merchant_id",
            "customer_id",
            "order_id",
            name=op.f("uq_feedback_merchant_id_customer_id_order_id"),
        ),
    )
    op.create_index(
        "ix_feedback_merchant_id_rated_at", "feedback", ["merchant_id", "rated_at", "id"]
    )
    with op.batch_alter_table("pass_designs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_url_template", sa.String(length=1024)))
        batch_op.add_column(sa.Column("survey_url_template", sa.String(length=1024)))
        batch_op.add_column(sa.Column("locations", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("pass_designs", schema=None) as batch_op:
        batch_op.drop_column("locations")
        batch_op.drop_column("survey_url_template")
        batch_op.drop_column("review_url_template")
    op.drop_index("ix_feedback_merchant_id_rated_at", table_name="feedback")
    op.drop_table("feedback")
