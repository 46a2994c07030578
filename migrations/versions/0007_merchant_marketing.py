"""Merchants' marketing settings; Google targets learn whose card they are and what to take off.

- ``merchants.marketing``: the marketing settings that differ from the defaults (caps, quiet
  hours, default time zone), one JSON column (NULL: all defaults).
- ``google_targets.merchant_id``: push counts the channel's stats per merchant
  (``channel.counted``) without asking passes; filled from the cards for existing targets.
- ``google_targets.withdrawn_messages``: ids of messages to take off the card's object.

Revision ID: 0007_merchant_marketing
Revises: 0002
Create Date: 2026-12-01 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_merchant_marketing"
down_revision: str | None = "0005_links"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("marketing", sa.JSON(), nullable=True))
    with op.batch_alter_table("google_targets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merchant_id", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "withdrawn_messages", sa.JSON(), nullable=False, server_default=sa.text("'[]'")
            )
        )
    op.execute(
        "UPDATE google_targets SET merchant_id ="
        " (SELECT cards.merchant_id FROM cards WHERE cards.id = google_targets.card_id)"
    )
    with op.batch_alter_table("google_targets", schema=None) as batch_op:
        batch_op.alter_column("withdrawn_messages", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("google_targets", schema=None) as batch_op:
        batch_op.drop_column("withdrawn_messages")
        batch_op.drop_column("merchant_id")
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_column("marketing")
