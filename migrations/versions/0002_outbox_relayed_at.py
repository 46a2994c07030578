"""Outbox: when the ``nats`` backend's relay moved a row to JetStream.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNRELAYED = "relayed_at IS NULL AND processed_at IS NULL AND failed_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("relayed_at", services.core.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_outbox_messages_unrelayed",
            ["id"],
            unique=False,
            postgresql_where=sa.text(UNRELAYED),
            sqlite_where=sa.text(UNRELAYED),
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_messages_unrelayed")
        batch_op.drop_column("relayed_at")
