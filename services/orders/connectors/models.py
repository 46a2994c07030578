"""Tables of the connectors: each merchant's connection to a platform, and every delivery."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models import Base, IdMixin, TimestampMixin, UTCDateTime, utcnow


class Connector(IdMixin, TimestampMixin, Base):
    """A merchant's shop on one platform: how its webhooks are verified and mapped.

    The secrets are kept as the merchant's signing secret is (``merchants.signing_secret``):
    they are what the platform signs with, so they must be readable to verify, and they are
    never shown or logged once set.
    """

    __tablename__ = "connectors"
    __table_args__ = (UniqueConstraint("merchant_id", "platform"),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(16))
    secret: Mapped[str] = mapped_column(String(200))
    previous_secret: Mapped[str | None] = mapped_column(String(200))
    """Still accepted during a rotation, until ``--revoke-old``."""
    api_token: Mapped[str | None] = mapped_column(String(500))
    """Shoptet: the shop's API access token, to fetch the orders its webhooks name."""
    status_map: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    """The merchant's overrides of the platform's mapping table: platform status -> ours."""
    shop_statuses: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Shoptet: the shop's own statuses (id -> name, system, markAsPaid), read once."""


class ConnectorDelivery(IdMixin, Base):
    """One webhook delivery as received: its deduplication record and what became of it.

    A Shoptet delivery names an order to fetch: ``fetch_due_at`` is when to try (next), found
    through its index by the fetch job; it is cleared once the delivery is done.
    """

    __tablename__ = "connector_deliveries"
    __table_args__ = (
        UniqueConstraint("merchant_id", "platform", "dedupe_key"),
        Index("ix_connector_deliveries_merchant_id_received_at", "merchant_id", "received_at"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(16))
    dedupe_key: Mapped[str] = mapped_column(String(64))
    """SHA-256 of what makes a delivery the same one again (per platform)."""
    delivery: Mapped[str | None] = mapped_column(String(200))
    """The platform's id of the delivery (Shopify's webhook id, WooCommerce's delivery id)."""
    topic: Mapped[str] = mapped_column(String(64))
    order_ref: Mapped[str | None] = mapped_column(String(200))
    """The platform's order id (our order's id), when the delivery names one."""
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    """Retention prunes by it (``orders/retention.py``)."""
    payload: Mapped[Any] = mapped_column(JSON, nullable=True)
    """The body as the platform sent it (None: not JSON)."""
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    event_id: Mapped[str | None] = mapped_column(String(200))
    fetch_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
