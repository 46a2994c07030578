"""Tables of the card's marketing: the offers on each card and each customer's consent."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models import Base, IdMixin, UTCDateTime, utcnow

SHOWN = "shown"
DEFERRED = "deferred"
SKIPPED = "skipped"
DUE_STATES = (SHOWN, DEFERRED)


class CardOffer(IdMixin, Base):
    """One offer's fate on one card, exactly once per (card, offer): a redelivered or
    republished audience part finds the row and changes nothing.

    ``state``: ``shown`` (on the card), ``deferred`` (held for the end of the quiet hours,
    ``due_at``), ``skipped`` (opted out, on no device, expired before it could go), then
    ``expired``, ``withdrawn`` (redeemed, cancelled, opted out) once it left the card."""

    __tablename__ = "card_offers"

    card_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"))
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id", ondelete="CASCADE"))
    offer_id: Mapped[str] = mapped_column(String(64))
    campaign_id: Mapped[uuid.UUID]
    offer: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The ``OfferView`` as the campaign delivered it."""
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("card_id", "offer_id"),
        Index("ix_card_offers_merchant_id_offer_id", "merchant_id", "offer_id", "card_id"),
        # The jobs' indexes: only the rows still waiting for something are in them.
        Index(
            "ix_card_offers_shown_valid_until",
            "valid_until",
            postgresql_where=text("state = 'shown'"),
            sqlite_where=text("state = 'shown'"),
        ),
        Index(
            "ix_card_offers_deferred_due_at",
            "due_at",
            postgresql_where=text("state = 'deferred'"),
            sqlite_where=text("state = 'deferred'"),
        ),
    )


class MarketingConsent(Base):
    """A customer's consent to marketing on the card, per merchant; it holds before their card
    exists. The latest ``at`` wins, whoever set it (the shop's records, the customer's page)."""

    __tablename__ = "marketing_consents"

    merchant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("merchants.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    consent: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))
    """``shop`` (``POST /v1/customers/{id}/marketing``) or ``customer`` (the card's page)."""
