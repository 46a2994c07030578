"""Tables owned by the orders service: orders and every event received for them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models import Base, IdMixin, UTCDateTime, utcnow


class Order(IdMixin, Base):
    """An order as the shop last described it, merged over all its applied events."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("merchant_id", "external_id"),
        # A campaign's segment pages through a merchant's customers in this order.
        Index("ix_orders_merchant_id_customer_id", "merchant_id", "customer_id"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(200))
    number: Mapped[str | None] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(200))
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    """Rises with every applied event, so consumers can ignore a stale ``order.changed``."""
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    total_minor: Mapped[int | None] = mapped_column(BigInteger)
    """The order's total in hundredths of ``currency`` (exact on every backend), for segments."""
    currency: Mapped[str | None] = mapped_column(String(3))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When it was last delivered or picked up, for segments (``delivered_within_days``)."""


class OrderEvent(IdMixin, Base):
    """One event as received: the order's history and the idempotency record of its id."""

    __tablename__ = "order_events"
    __table_args__ = (UniqueConstraint("merchant_id", "event_id"),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(200))
    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    body_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    """What the shop was answered, to answer a replay the same."""
    connector: Mapped[str | None] = mapped_column(String(16))
    """The platform connector that made the event of a webhook (None: the orders API)."""
    delivery: Mapped[str | None] = mapped_column(String(200))
    """Which of the connector's deliveries made it (``connector_deliveries``)."""
