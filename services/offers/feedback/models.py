"""The offers service's feedback table: one rating per merchant, customer and order."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models import Base, IdMixin, UTCDateTime


class Feedback(IdMixin, Base):
    """A customer's rating of one order; a later rating of the same order replaces it (the
    customer changed their mind), so NPS counts each order once."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("merchant_id", "customer_id", "order_id"),
        # The list (newest first, a period) and NPS over a period read through this.
        Index("ix_feedback_merchant_id_rated_at", "merchant_id", "rated_at", "id"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    customer_id: Mapped[str] = mapped_column(String(200))
    order_id: Mapped[str] = mapped_column(String(200))
    score: Mapped[int] = mapped_column(Integer)
    text: Mapped[str | None] = mapped_column(String(2000))
    source: Mapped[str] = mapped_column(String(8))
    """``api`` (the shop's ``POST /v1/customers/{id}/feedback``) or ``card`` (the card's page)."""
    rated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """When the rating that holds was given: the latest wins, whichever path it came by."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """When the order was first rated."""
