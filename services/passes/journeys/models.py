"""Tables of the journeys: the steps due on each card, and the products customers watch."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models import Base, IdMixin, UTCDateTime, utcnow

WAITING = "waiting"
"""Due once something happens (the welcome: once the card is first on a device); no time."""
PENDING = "pending"
"""Due at ``due_at``: then the journey composes its message and the policy decides."""
DEFERRED = "deferred"
"""Held by the policy until ``due_at`` (the end of the quiet hours, the status gap)."""
SHOWN = "shown"
"""On the card until ``due_at`` (its ``valid_until``), then taken off quietly."""
DUE_STATES = (PENDING, DEFERRED, SHOWN)
"""The states the job looks at, through ``ix_journey_steps_due_at``."""
OPEN_STATES = (WAITING, PENDING, DEFERRED)
"""Not sent yet: what a cancelling event cancels."""
ENDED_STATES = ("skipped", "cancelled", "expired", "withdrawn")


class JourneyStep(IdMixin, Base):
    """One message of one journey on one card, at most once per (card, journey, key): a
    redelivered event, a restart or a second replica finds the row and sends nothing twice.

    ``key`` names the occasion within the journey (the cart id, the product and price, the
    order id); ``data`` is what the message is made of (the event's details), composed into
    words when it is due, so a change of the journey's texts meanwhile applies."""

    __tablename__ = "journey_steps"

    card_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"))
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    journey: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    message: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The message as composed (an ``OfferView`` as JSON, as the marketing slot keeps it)."""
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shown_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("card_id", "journey", "key"),
        Index(
            "ix_journey_steps_due_at",
            "due_at",
            postgresql_where=text("state IN ('pending', 'deferred', 'shown')"),
            sqlite_where=text("state IN ('pending', 'deferred', 'shown')"),
        ),
    )


class ProductWatch(Base):
    """A customer watches a product (``customer.watch``) until they unwatch it: a price drop
    of it reaches their card. Kept by customer, as their card may not exist yet."""

    __tablename__ = "product_watches"

    merchant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("merchants.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
