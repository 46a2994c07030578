"""The transactional outbox (messages waiting to be consumed) and the consumers' inbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Index, Integer, String, Table, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models import Base, BigIntPK, UTCDateTime, utcnow

_UNRELAYED = "relayed_at IS NULL AND processed_at IS NULL AND failed_at IS NULL"


class OutboxMessage(Base):
    """A message written in the same transaction as the change it announces."""

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    topic: Mapped[str] = mapped_column(String(100))
    key: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    relayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When the ``nats`` backend's relay published the row to JetStream (unused by ``db``)."""

    __table_args__ = (
        Index(
            "ix_outbox_messages_pending",
            "topic",
            "available_at",
            postgresql_where=text("processed_at IS NULL AND failed_at IS NULL"),
            sqlite_where=text("processed_at IS NULL AND failed_at IS NULL"),
        ),
        Index(
            "ix_outbox_messages_unrelayed",
            "id",
            postgresql_where=text(_UNRELAYED),
            sqlite_where=text(_UNRELAYED),
        ),
        # Retention finds applied and failed rows by age; the failed ones are also counted
        # per topic at every scrape (``passpost_outbox_failed``).
        Index(
            "ix_outbox_messages_processed_at",
            "processed_at",
            postgresql_where=text("processed_at IS NOT NULL"),
            sqlite_where=text("processed_at IS NOT NULL"),
        ),
        Index(
            "ix_outbox_messages_failed",
            "failed_at",
            "topic",
            postgresql_where=text("failed_at IS NOT NULL"),
            sqlite_where=text("failed_at IS NOT NULL"),
        ),
    )


outbox_table = cast(Table, OutboxMessage.__table__)
MESSAGE_COLUMNS = (
    outbox_table.c.id,
    outbox_table.c.message_id,
    outbox_table.c.topic,
    outbox_table.c.key,
    outbox_table.c.payload,
    outbox_table.c.created_at,
)
"""What a consumer reads of a row: the message, and its id (the order it was published in)."""


class InboxMessage(Base):
    """A message a consumer has applied; its row commits with the consumer's own change."""

    __tablename__ = "inbox_messages"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
