"""The shop events received: one row per (merchant, event id), with the answer it was given."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models import Base, IdMixin, UTCDateTime


class ShopEvent(IdMixin, Base):
    """A shop event as accepted: a replay of its id is answered with ``response`` again, and
    another body under it is refused (``body_hash``)."""

    __tablename__ = "shop_events"
    __table_args__ = (
        UniqueConstraint("merchant_id", "event_id"),
        Index("ix_shop_events_received_at", "received_at"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    body_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
