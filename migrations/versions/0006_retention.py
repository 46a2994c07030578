"""Retention: the indexes each prune finds its expired rows by.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:10:00.000000

On a large PostgreSQL database, create these first with ``CREATE INDEX CONCURRENTLY`` (same
names, same definitions): the migration then skips them (``IF NOT EXISTS``) instead of holding
a write lock on the history tables while it builds them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROCESSED = "processed_at IS NOT NULL"
FAILED = "failed_at IS NOT NULL"
PLAIN = (
    ("ix_inbox_messages_processed_at", "inbox_messages", ["processed_at"]),
    ("ix_order_events_received_at", "order_events", ["received_at"]),
    ("ix_push_deliveries_created_at", "push_deliveries", ["created_at"]),
    ("ix_google_deliveries_created_at", "google_deliveries", ["created_at"]),
    ("ix_google_callback_nonces_received_at", "google_callback_nonces", ["received_at"]),
)


def upgrade() -> None:
    op.create_index(
        "ix_outbox_messages_processed_at",
        "outbox_messages",
        ["processed_at"],
        postgresql_where=sa.text(PROCESSED),
        sqlite_where=sa.text(PROCESSED),
        if_not_exists=True,
    )
    op.create_index(
        "ix_outbox_messages_failed",
        "outbox_messages",
        ["failed_at", "topic"],
        postgresql_where=sa.text(FAILED),
        sqlite_where=sa.text(FAILED),
        if_not_exists=True,
    )
    for name, table, columns in PLAIN:
        op.create_index(name, table, columns, if_not_exists=True)


def downgrade() -> None:
    for name, table, _ in reversed(PLAIN):
        op.drop_index(name, table_name=table)
    op.drop_index("ix_outbox_messages_failed", table_name="outbox_messages")
    op.drop_index("ix_outbox_messages_processed_at", table_name="outbox_messages")
