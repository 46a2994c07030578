"""Cards: room for sealed link tokens (``contracts.cards.seal_customer``).

Revision ID: 0005_links
Revises: 0002
Create Date: 2026-12-01 22:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_links"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.alter_column(
            "link_token",
            existing_type=sa.String(length=64),
            type_=sa.String(length=1120),
            existing_nullable=False,
        )


def downgrade() -> None:
    """Refused while a card holds a sealed link (longer than 64 characters)."""
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.alter_column(
            "link_token",
            existing_type=sa.String(length=1120),
            type_=sa.String(length=64),
            existing_nullable=False,
        )
